"""The hosts list and a host's page, with lock, unlock, reverify and repair actions."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from afe.models import Host, HostAttribute, HostQueueEntry, Label, SpecialTask
from afe.permissions import AccessDenied, check_hosts

from . import queries
from .common import acting_user, back, paginate, plural, refuse, results_link, selected_ids
from .forms import LOCK_REASONS, HostFilterForm, LockForm

#: How many entries and how many special tasks a host's history shows (the newest).
HISTORY_LENGTH = 50
ACTIONS = ("lock", "unlock", "reverify", "repair")


def _host_filters(request: HttpRequest) -> tuple[HostFilterForm, QuerySet[Host]]:
    form = HostFilterForm(request.GET)
    form.is_valid()
    hosts = Host.valid_objects.all()
    if hostname := form.value("hostname"):
        hosts = hosts.filter(hostname__icontains=hostname.strip())
    if status := form.value("status"):
        hosts = hosts.filter(status=status)
    if label := form.value("label"):
        hosts = hosts.filter(labels__name=label.strip())
    if (locked := form.value("locked")) in ("yes", "no"):
        hosts = hosts.filter(locked=locked == "yes")
    if form.value("mine"):
        user = acting_user(request)
        if not user.is_superuser():
            hosts = hosts.filter(aclgroup__users=user)
    return form, hosts.distinct().order_by("hostname")


def host_row(host: Host) -> dict[str, Any]:
    """What the list and the page show of a host prefetched by ``queries.hosts_with_details``."""
    platform = queries.platform_of(host)
    return {
        "host": host,
        "platform": platform,
        "labels": [label for label in host.labels.all() if label is not platform],
        "entry": host.active_entries[0] if host.active_entries else None,
        "task": host.active_tasks[0] if host.active_tasks else None,
    }


@login_required
@require_GET
def host_list(request: HttpRequest) -> HttpResponse:
    """Paged hosts; ``?partial=rows`` renders only the table rows (the poller's)."""
    form, hosts = _host_filters(request)
    page = paginate(request, queries.hosts_with_details(hosts))
    context = {
        "nav": "hosts", "form": form, "page": page, "rows": [host_row(h) for h in page],
        "lock_reasons": LOCK_REASONS, "labels": Label.valid_objects.values_list("name", flat=True),
    }
    if request.GET.get("partial") == "rows":
        return render(request, "afe/pages/_host_rows.html", context)
    return render(request, "afe/pages/host_list.html", context)


def _apply(request: HttpRequest, hosts: list[Host], action: str) -> None:
    """Run ``action`` on ``hosts`` if the acting user may change them all, else say why."""
    user = acting_user(request)
    if action not in ACTIONS:
        messages.error(request, f"Unknown action {action[:40]!r}.")
        return
    if not hosts:
        messages.warning(request, "Select one or more hosts first.")
        return
    try:
        check_hosts(user, hosts)
    except AccessDenied as refusal:
        refuse(request, f"Nothing was done ({action})", refusal)
        return
    chosen = Host.valid_objects.filter(pk__in=[h.pk for h in hosts])
    if action == "lock":
        form = LockForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Nothing was locked: please give a lock reason.")
            return
        try:
            count = chosen.lock(user, form.cleaned_data["lock_reason"])
        except ValidationError as exc:
            messages.error(request, f"Nothing was locked: {'; '.join(exc.messages)}")
            return
        messages.success(request, f"Locked {plural(count, 'host')}.")
    elif action == "unlock":
        messages.success(request, f"Unlocked {plural(chosen.unlock(), 'host')}.")
    else:
        task = SpecialTask.Task.VERIFY if action == "reverify" else SpecialTask.Task.REPAIR
        created = SpecialTask.schedule_for_hosts(hosts, task, user)
        messages.success(request, f"Queued {task} on {plural(created, 'host')}; "
                                  f"{len(hosts) - created} already had one queued.")


@login_required
@require_POST
def hosts_action(request: HttpRequest) -> HttpResponse:
    """A bulk action (``action``) on the selected hosts."""
    hosts = list(Host.valid_objects.filter(pk__in=selected_ids(request)).only("pk", "invalid", "hostname"))
    _apply(request, hosts, request.POST.get("action", ""))
    return back(request, reverse("afe-pages:host-list"))


@login_required
@require_POST
def host_action(request: HttpRequest, host_id: int) -> HttpResponse:
    """An action (``action``) on one host."""
    host = get_object_or_404(Host.valid_objects.only("pk", "invalid", "hostname"), pk=host_id)
    _apply(request, [host], request.POST.get("action", ""))
    return back(request, reverse("afe-pages:host-detail", args=[host.pk]))


def history(host: Host) -> list[dict[str, Any]]:
    """The host's newest entries and special tasks, interleaved newest first, with log links."""
    entries = (HostQueueEntry.objects.filter(host=host).select_related("job").order_by("-id")[:HISTORY_LENGTH])
    tasks = SpecialTask.objects.filter(host=host).select_related("requested_by").order_by("-id")[:HISTORY_LENGTH]
    rows = [{
        "kind": "Job", "entry": e, "when": e.started_on, "status": e.full_status(),
        "owner": e.job.owner, "name": e.job.name,
        "link": reverse("afe-pages:job-detail", args=[e.job_id]),
        "log": results_link(e.job.tag(), e.execution_subdir) if e.execution_subdir else "",
    } for e in entries]
    rows += [{
        "kind": t.task, "task": t, "when": t.time_started or t.time_requested, "status": t.status,
        "owner": t.requested_by.login, "name": t.task,
        "log": results_link(f"hosts/{host.hostname}/{t.pk}-{t.task.lower()}"),
        "follow": reverse("afe-pages:follow", args=[
            f"hosts/{host.hostname}/{t.pk}-{t.task.lower()}/debug/autoserv.DEBUG"]) if t.is_active else "",
    } for t in tasks]
    return sorted(rows, key=lambda r: (r["when"] is None, r["when"].isoformat() if r["when"] else ""),
                  reverse=True)


@login_required
@require_GET
def host_detail(request: HttpRequest, host_id: int) -> HttpResponse:
    """A host's labels, ACLs, attributes, status, lock and history; ``?partial=status`` for the poller."""
    host = get_object_or_404(queries.hosts_with_details(Host.valid_objects.all()), pk=host_id)
    row = host_row(host)
    task = row["task"]
    if task is not None:
        row["task_log"] = reverse("afe-pages:follow", args=[
            f"hosts/{host.hostname}/{task.pk}-{task.task.lower()}/debug/autoserv.DEBUG"])
    context = {"nav": "hosts", "row": row, "host": host, "lock_reasons": LOCK_REASONS}
    if request.GET.get("partial") == "status":
        return render(request, "afe/pages/_host_status.html", context)
    context.update({
        "attributes": HostAttribute.objects.filter(host=host).order_by("attribute"),
        "history": history(host),
        "history_length": HISTORY_LENGTH,
    })
    return render(request, "afe/pages/host_detail.html", context)
