"""The create-job page: a form over ``Job.create``, prefilled when cloning a job."""
from __future__ import annotations

from collections import Counter
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from afe.models import Job

from .common import acting_user, to_int
from .forms import JobCreateForm


def clone_initial(job: Job, reuse: str, entry_ids: set[int] | None = None) -> dict[str, Any]:
    """The create form's initial data copying ``job``.

    ``reuse="same"`` names every host the job ran on (metahost entries that got
    a host included); ``"similar"`` keeps metahost entries as ``N*label``.
    ``entry_ids`` limits the hosts to those entries.
    """
    hosts: list[str] = []
    metahosts: Counter[str] = Counter()
    one_time: list[str] = []
    for entry in job.hostqueueentry_set.select_related("host", "meta_host").order_by("id"):
        if entry_ids is not None and entry.pk not in entry_ids:
            continue
        if entry.meta_host_id is not None and (reuse != "same" or entry.host_id is None):
            metahosts[entry.meta_host.name] += 1
        elif entry.host_id is not None:
            (one_time if entry.host.invalid else hosts).append(entry.host.hostname)
    hostless = not (hosts or metahosts or one_time) and job.hostqueueentry_set.filter(
        host__isnull=True, meta_host__isnull=True).exists()
    return {
        "name": job.name,
        "priority": str(job.priority),
        "control_type": str(job.control_type),
        "control_file": job.control_file or "",
        "hosts": hosts,
        "meta_hosts": ", ".join(f"{n}*{label}" if n > 1 else label for label, n in metahosts.items()),
        "one_time_hosts": " ".join(one_time),
        "hostless": hostless,
        "dependencies": " ".join(job.dependency_labels.order_by("name").values_list("name", flat=True)),
        "synch_count": job.synch_count or None,
        "reboot_before": str(job.reboot_before),
        "reboot_after": str(job.reboot_after),
        "run_verify": job.run_verify,
        "run_reset": job.run_reset,
        "parse_failed_repair": job.parse_failed_repair,
        "timeout_mins": job.timeout_mins,
        "max_runtime_mins": job.max_runtime_mins,
        "email_list": job.email_list,
        "drone_set": job.drone_set.name if job.drone_set_id else "",
    }


@login_required
def job_create(request: HttpRequest) -> HttpResponse:
    """GET: the form (``?clone=<id>&reuse=same|similar[&entry=<id>...]`` prefills it); POST: create the job."""
    clone_of = None
    if request.method == "POST":
        form = JobCreateForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                job = Job.create(owner=acting_user(request), **form.job_arguments())
            except ValidationError as exc:
                form.add_model_errors(exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages})
            else:
                messages.success(request, f"Created job {job.pk} ({job.name}).")
                return HttpResponseRedirect(reverse("afe-pages:job-detail", args=[job.pk]))
    else:
        initial: dict[str, Any] = {}
        clone_id = to_int(request.GET.get("clone"))
        if clone_id is not None:
            clone_of = Job.objects.filter(pk=clone_id).first()
            if clone_of is None:
                messages.error(request, f"There is no job {clone_id} to clone.")
            else:
                ids = {i for i in (to_int(v) for v in request.GET.getlist("entry")) if i is not None} or None
                initial = clone_initial(clone_of, request.GET.get("reuse", "similar"), ids)
        form = JobCreateForm(initial=initial)
    return render(request, "afe/pages/job_create.html", {"form": form, "clone_of": clone_of, "nav": "create"})
