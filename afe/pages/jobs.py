"""The jobs list and a job's page, with their abort actions."""
from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from afe.models import HostQueueEntry, Job, JobKeyval, Label, TkoJob, TkoTest, TkoTestAttribute
from afe.permissions import AccessDenied, check_abort

from . import queries
from .common import acting_user, back, paginate, plural, refuse, results_link, selected_ids
from .forms import JobFilterForm


def _job_filters(request: HttpRequest) -> tuple[JobFilterForm, QuerySet[Job]]:
    """The filter form (owner defaults to the user) and the jobs it selects, newest first."""
    data = request.GET.copy()
    if "owner" not in data:
        data["owner"] = acting_user(request).login
    form = JobFilterForm(data)
    form.is_valid()
    jobs = Job.objects.order_by("-created_on", "-id")
    if owner := form.value("owner"):
        jobs = jobs.filter(owner=owner.strip())
    if name := form.value("name"):
        jobs = jobs.filter(name__icontains=name.strip())
    if after := form.value("created_after"):
        jobs = jobs.filter(created_on__gte=after)
    if before := form.value("created_before"):
        if len(data.get("created_before", "").strip()) <= len("YYYY-MM-DD"):
            jobs = jobs.filter(created_on__lt=before + timedelta(days=1))  # a bare date: the whole day
        else:
            jobs = jobs.filter(created_on__lte=before)
    jobs = queries.filter_jobs(jobs, form.value("state"), form.value("kind"))
    return form, jobs


@login_required
@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    """Paged jobs with status counts; ``?partial=rows`` renders only the table rows (the poller's)."""
    form, jobs = _job_filters(request)
    page = paginate(request, jobs.select_related("parent_job"))
    counts = queries.status_counts(job.pk for job in page)
    pending = queries.pending_by_job(job.pk for job in page)
    rows = [{"job": job, "counts": sorted(counts.get(job.pk, {}).items()), "pending": pending.get(job.pk)}
            for job in page]
    context = {"form": form, "page": page, "rows": rows, "nav": "jobs"}
    if request.GET.get("partial") == "rows":
        return render(request, "afe/pages/_job_rows.html", context)
    return render(request, "afe/pages/job_list.html", context)


def _abort(request: HttpRequest, entries: QuerySet[HostQueueEntry]) -> None:
    """Abort ``entries`` if the acting user may (the RPC's rules), else say which rule refused."""
    user = acting_user(request)
    try:
        check_abort(user, list(entries.filter(complete=False, aborted=False).select_related("job")))
    except AccessDenied as refusal:
        refuse(request, "Nothing was aborted", refusal)
        return
    aborted = entries.abort(user)
    if aborted:
        messages.success(request, f"Abort requested for {plural(len(aborted), 'entry', 'entries')}.")
    else:
        messages.info(request, "Nothing to abort: the selected work is already complete or aborted.")


@login_required
@require_POST
def jobs_abort(request: HttpRequest) -> HttpResponse:
    """Abort the selected jobs (and their child jobs)."""
    ids = selected_ids(request)
    if not ids:
        messages.warning(request, "Select one or more jobs first.")
    else:
        _abort(request, HostQueueEntry.objects.filter(job_id__in=ids))
    return back(request, reverse("afe-pages:job-list"))


@login_required
@require_POST
def job_abort(request: HttpRequest, job_id: int) -> HttpResponse:
    """Abort every entry of a job, or with ``scope=selected`` only the posted ``entry`` ids.

    With ``do=clone`` the selected entries are cloned instead: a redirect to
    the create form prefilled with their hosts.
    """
    job = get_object_or_404(Job, pk=job_id)
    if request.POST.get("do") == "clone":
        query = urlencode([("clone", job.pk), ("reuse", "same")] + [("entry", i) for i in selected_ids(request, "entry")])
        return HttpResponseRedirect(f"{reverse('afe-pages:job-create')}?{query}")
    entries = job.hostqueueentry_set.all()
    if request.POST.get("scope") == "selected":
        ids = selected_ids(request, "entry")
        if not ids:
            messages.warning(request, "Select one or more entries first.")
            return back(request, reverse("afe-pages:job-detail", args=[job.pk]))
        entries = entries.filter(pk__in=ids)
    _abort(request, entries)
    return back(request, reverse("afe-pages:job-detail", args=[job.pk]))


def _entry_rows(job: Job) -> list[dict[str, Any]]:
    """The job's entries with host, status, timing and links; a fixed number of queries."""
    entries = job.hostqueueentry_set.select_related("host", "meta_host", "pending_reason").order_by("id")
    rows = []
    for entry in entries:
        subdir = entry.execution_subdir
        running = entry.status in HostQueueEntry.ACTIVE_STATUSES and bool(subdir)
        debug_log = "/".join(p for p in (job.tag(), subdir, "debug", "autoserv.DEBUG") if p)
        rows.append({
            "entry": entry,
            "name": entry.host.hostname if entry.host_id else (
                f"{entry.meta_host.name} (label)" if entry.meta_host_id else "(hostless)"),
            "duration": (entry.finished_on - entry.started_on) if entry.started_on and entry.finished_on else None,
            "results": results_link(job.tag(), subdir) if subdir or entry.complete else "",
            "follow": reverse("afe-pages:follow", args=[debug_log]) if running else "",
            "pending": queries.pending_of(entry),
        })
    return rows


def _tko_rows(job: Job) -> list[TkoTest]:
    """The parsed tests of the job's results (TKO), with status and attributes (keyvals)."""
    return list(
        TkoTest.objects.filter(job__in=TkoJob.objects.filter(afe_job_id=job.pk))
        .select_related("status", "job")
        .prefetch_related(Prefetch("attributes", queryset=TkoTestAttribute.objects.order_by("attribute")))
        .order_by("job__tag", "test_idx")
    )


@login_required
@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    """A job's fields, control file, relations, entries and parsed results; ``?partial=entries`` for the poller."""
    job = get_object_or_404(
        Job.objects.select_related("parent_job", "drone_set").prefetch_related(
            Prefetch("dependency_labels", queryset=Label.objects.order_by("name"))),
        pk=job_id)
    entries = _entry_rows(job)
    counts = queries.status_counts([job.pk]).get(job.pk, {})
    context: dict[str, Any] = {
        "nav": "jobs",
        "job": job,
        "entries": entries,
        "counts": sorted(counts.items()),
        "abortable": any(not e["entry"].complete and not e["entry"].aborted for e in entries),
        "waiting": any(e["pending"] for e in entries),
        "results": results_link(job.tag()),
    }
    if request.GET.get("partial") == "entries":
        return render(request, "afe/pages/_job_entries.html", context)
    children = list(job.child_jobs.order_by("id"))
    child_counts = queries.status_counts(c.pk for c in children)
    context.update({
        "children": [{"job": c, "counts": sorted(child_counts.get(c.pk, {}).items())} for c in children],
        "keyvals": list(JobKeyval.objects.filter(job=job).order_by("key")),
        "tests": _tko_rows(job),
    })
    return render(request, "afe/pages/job_detail.html", context)
