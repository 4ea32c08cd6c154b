"""Django admin for the lab: hosts, special tasks, jobs and their entries, ACLs, API tokens.

Every action works on the whole selection with a fixed number of queries.
Every admin is a ``GuardedAdmin`` (see ``guards``): garbage gets a message,
never a 500, and work that is still active cannot be deleted (aborting it is
the way: a deleted running job would strand its host).
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from afe.models import (
    EVERYONE,
    AclGroup,
    ApiToken,
    EntryReason,
    Drone,
    DroneSet,
    Host,
    HostAttribute,
    HostQueueEntry,
    Job,
    JobKeyval,
    Label,
    SpecialTask,
    SpecialTaskReason,
    User,
)
from afe.permissions import AccessDenied, check_abort, check_hosts

from .guards import NAMED_IN_MESSAGE, GuardedAdmin, SafeModelForm, SafeTabularInline, name_objects

ABORT_INSTEAD = "Work that is still active cannot be deleted; abort it instead (the “Abort selected” action)."


def acting_user(request: HttpRequest) -> User:
    return User.for_django_user(request.user)


class LockReasonForm(forms.Form):
    lock_reason = forms.CharField(
        max_length=255, strip=True, help_text="Why these hosts are locked (required)."
    )


class HostAttributeInline(SafeTabularInline):
    model = HostAttribute
    extra = 1


class HostAdminForm(SafeModelForm):
    class Meta:
        model = Host
        fields = ["hostname", "locked", "lock_reason", "protection", "dirty", "labels", "leased"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("locked") and not (data.get("lock_reason") or "").strip():
            raise ValidationError({"lock_reason": "Please provide a lock reason"})
        return data

    def validate_unique(self) -> None:
        # A deleted (invalid) host of the same name is resurrected, not a clash.
        hostname = self.cleaned_data.get("hostname")
        clash = Host.valid_objects.filter(hostname=hostname)
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if hostname and clash.exists():
            self.add_error("hostname", f"Host {hostname} already exists.")


class SoftDeleteAdmin(GuardedAdmin):
    """Admin for soft-deleted models: only valid rows, and deleting keeps history."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.model.valid_objects.all()

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[list, dict, set, list]:
        # A soft delete removes no row, so rows that point here (jobs, special
        # tasks) neither cascade nor protect anything.
        objs = list(objs)
        return [str(obj) for obj in objs], {self.model._meta.verbose_name_plural: len(objs)}, set(), []

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        queryset.delete()  # soft delete, in bulk


@admin.register(Host)
class HostAdmin(SoftDeleteAdmin):
    form = HostAdminForm
    list_display = [
        "hostname", "status", "locked", "lock_reason", "protection", "dirty",
        "label_names", "acl_names",
    ]
    list_filter = ["status", "locked", "protection", ("labels", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["hostname"]
    filter_horizontal = ["labels"]
    readonly_fields = ["status", "locked_by", "lock_time"]
    inlines = [HostAttributeInline]
    actions = ["lock_hosts", "unlock_hosts", "reverify_hosts", "repair_hosts"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Host]:
        return super().get_queryset(request).prefetch_related(
            Prefetch("labels", queryset=Label.objects.order_by("name")),
            Prefetch("aclgroup_set", queryset=AclGroup.objects.order_by("name")),
        )

    @admin.display(description="Labels")
    def label_names(self, host: Host) -> str:
        return ", ".join(label.name for label in host.labels.all())

    @admin.display(description="ACL groups")
    def acl_names(self, host: Host) -> str:
        return ", ".join(group.name for group in host.aclgroup_set.all())

    def save_model(self, request: HttpRequest, obj: Host, form: Any, change: bool) -> None:
        if obj.locked and obj.locked_by_id is None:
            obj.locked_by = acting_user(request)
        super().save_model(request, obj, form, change)

    @admin.action(description="Lock selected hosts (asks for a reason)")
    def lock_hosts(self, request: HttpRequest, queryset: QuerySet[Host]) -> HttpResponse | None:
        if "apply" in request.POST:
            form = LockReasonForm(request.POST)
            if form.is_valid():
                count = queryset.lock(acting_user(request), form.cleaned_data["lock_reason"])
                self.message_user(request, f"Locked {count} host(s).", messages.SUCCESS)
                return None
        else:
            form = LockReasonForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Lock hosts",
            "form": form,
            "hosts": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/afe/host/lock_hosts.html", context)

    @admin.action(description="Unlock selected hosts")
    def unlock_hosts(self, request: HttpRequest, queryset: QuerySet[Host]) -> None:
        count = queryset.unlock()
        self.message_user(request, f"Unlocked {count} host(s).", messages.SUCCESS)

    @admin.action(description="Reverify selected hosts")
    def reverify_hosts(self, request: HttpRequest, queryset: QuerySet[Host]) -> None:
        self._schedule(request, queryset, SpecialTask.Task.VERIFY)

    @admin.action(description="Repair selected hosts")
    def repair_hosts(self, request: HttpRequest, queryset: QuerySet[Host]) -> None:
        self._schedule(request, queryset, SpecialTask.Task.REPAIR)

    def _schedule(self, request: HttpRequest, queryset: QuerySet[Host], task: str) -> None:
        hosts = list(queryset.only("pk", "invalid", "hostname"))
        user = acting_user(request)
        try:
            check_hosts(user, hosts)
        except AccessDenied as refusal:
            self.message_user(request, f"Nothing was queued: {refusal}", messages.ERROR)
            return
        created = SpecialTask.schedule_for_hosts(hosts, task, user)
        self.message_user(
            request,
            f"Queued {task} on {created} host(s); {len(hosts) - created} already had one queued.",
            messages.SUCCESS,
        )


class SpecialTaskStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"
    STATES = {
        "Queued": {"is_active": False, "is_complete": False},
        "Running": {"is_active": True, "is_complete": False},
        "Completed": {"is_complete": True, "success": True},
        "Failed": {"is_complete": True, "success": False},
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(state, state) for state in self.STATES]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in self.STATES:
            return queryset.filter(**self.STATES[self.value()])
        return queryset


def _reason_of(obj: HostQueueEntry | SpecialTask) -> str:
    """The scheduler's stored reason for failing or holding back ``obj`` ("" if it gave none)."""
    try:
        return obj.scheduler_reason.reason
    except (EntryReason.DoesNotExist, SpecialTaskReason.DoesNotExist):
        return ""


def _refusal(model_admin: GuardedAdmin, still_active: QuerySet) -> str | None:
    """The message refusing a bulk delete when ``still_active`` (part of the selection) is not empty."""
    refused = list(still_active[:NAMED_IN_MESSAGE + 1])
    if not refused:
        return None
    total = still_active.count() if len(refused) > NAMED_IN_MESSAGE else len(refused)
    return (f"Nothing was deleted: {model_admin.model._meta.verbose_name_plural} "
            f"{name_objects(refused, total)} {'is' if total == 1 else 'are'} still active. {ABORT_INSTEAD}")


@admin.register(SpecialTask)
class SpecialTaskAdmin(GuardedAdmin):
    list_display = [
        "id", "host", "task", "state", "success", "requested_by",
        "time_requested", "time_started", "time_finished", "queue_entry_id", "is_aborted",
    ]
    list_filter = ["task", SpecialTaskStateFilter, "is_aborted"]
    search_fields = ["host__hostname"]
    list_select_related = ["host", "requested_by", "scheduler_reason"]
    raw_id_fields = ["host", "queue_entry", "requested_by"]
    readonly_fields = ["time_requested", "scheduler_reason"]
    actions = ["abort_tasks"]

    @admin.display(description="State")
    def state(self, task: SpecialTask) -> str:
        return task.status

    @admin.display(description="Scheduler's reason")
    def scheduler_reason(self, task: SpecialTask) -> str:
        return _reason_of(task)

    def delete_refusal(self, obj: SpecialTask) -> str | None:
        return None if obj.is_complete else ABORT_INSTEAD

    def bulk_delete_refusal(self, request: HttpRequest, queryset: QuerySet[SpecialTask]) -> str | None:
        return _refusal(self, queryset.filter(is_complete=False))

    @admin.action(description="Abort selected active tasks")
    def abort_tasks(self, request: HttpRequest, queryset: QuerySet[SpecialTask]) -> None:
        count = queryset.abort()
        self.message_user(request, f"Abort requested for {count} active task(s).", messages.SUCCESS)


def _abort_entries(model_admin: admin.ModelAdmin, request: HttpRequest, entries: QuerySet) -> None:
    """Abort ``entries`` if the acting user may (the same rules as the RPC), else say why."""
    user = acting_user(request)
    try:
        check_abort(user, list(entries.filter(complete=False, aborted=False).select_related("job")))
    except AccessDenied as refusal:
        model_admin.message_user(request, f"Nothing was aborted: {refusal}", messages.ERROR)
        return
    aborted = entries.abort(user)
    model_admin.message_user(
        request, f"Abort requested for {len(aborted)} entr{'y' if len(aborted) == 1 else 'ies'}.",
        messages.SUCCESS,
    )


class HostQueueEntryInline(SafeTabularInline):
    model = HostQueueEntry
    fields = ["host", "meta_host", "status", "aborted", "execution_subdir", "started_on", "finished_on",
              "scheduler_reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[HostQueueEntry]:
        return super().get_queryset(request).select_related("host", "meta_host", "scheduler_reason")

    @admin.display(description="Scheduler's reason")
    def scheduler_reason(self, entry: HostQueueEntry) -> str:
        return _reason_of(entry)


class JobKeyvalInline(SafeTabularInline):
    model = JobKeyval
    extra = 0


@admin.register(Job)
class JobAdmin(GuardedAdmin):
    list_display = ["id", "owner", "name", "priority", "control_type", "created_on", "parent_job_id"]
    list_filter = ["priority", "control_type"]
    search_fields = ["name", "owner"]
    filter_horizontal = ["dependency_labels"]
    raw_id_fields = ["parent_job"]
    inlines = [HostQueueEntryInline, JobKeyvalInline]
    actions = ["abort_jobs"]

    def delete_refusal(self, obj: Job) -> str | None:
        still_active = obj.hostqueueentry_set.filter(complete=False).exists()
        return ABORT_INSTEAD if still_active else None

    def bulk_delete_refusal(self, request: HttpRequest, queryset: QuerySet[Job]) -> str | None:
        return _refusal(self, queryset.filter(hostqueueentry__complete=False).distinct())

    @admin.action(description="Abort selected jobs (and their child jobs)")
    def abort_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        _abort_entries(self, request, HostQueueEntry.objects.filter(job__in=queryset))


@admin.register(HostQueueEntry)
class HostQueueEntryAdmin(GuardedAdmin):
    list_display = ["id", "job", "host", "meta_host", "status", "aborted", "active", "complete", "started_on", "finished_on"]
    list_filter = ["status", "aborted", "complete"]
    search_fields = ["host__hostname", "job__name"]
    list_select_related = ["job", "host", "meta_host", "scheduler_reason"]
    raw_id_fields = ["job", "host"]
    readonly_fields = ["active", "complete", "scheduler_reason"]
    actions = ["abort_entries"]

    @admin.display(description="Scheduler's reason")
    def scheduler_reason(self, entry: HostQueueEntry) -> str:
        return _reason_of(entry)

    def delete_refusal(self, obj: HostQueueEntry) -> str | None:
        return None if obj.complete else ABORT_INSTEAD

    def bulk_delete_refusal(self, request: HttpRequest, queryset: QuerySet[HostQueueEntry]) -> str | None:
        return _refusal(self, queryset.filter(complete=False))

    @admin.action(description="Abort selected entries")
    def abort_entries(self, request: HttpRequest, queryset: QuerySet[HostQueueEntry]) -> None:
        _abort_entries(self, request, queryset)


@admin.register(Label)
class LabelAdmin(SoftDeleteAdmin):
    list_display = ["name", "platform", "only_if_needed", "kernel_config"]
    list_filter = ["platform", "only_if_needed"]
    search_fields = ["name"]
    exclude = ["atomic_group", "invalid"]


class AclGroupAdminForm(SafeModelForm):
    class Meta:
        model = AclGroup
        fields = ["name", "description", "users", "hosts"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if self.instance.pk and self.instance.name == EVERYONE and name != EVERYONE:
            raise ValidationError("The Everyone ACL group cannot be renamed.")
        return name


@admin.register(AclGroup)
class AclGroupAdmin(GuardedAdmin):
    form = AclGroupAdminForm
    list_display = ["name", "description"]
    search_fields = ["name"]
    filter_horizontal = ["users", "hosts"]

    def delete_refusal(self, obj: AclGroup) -> str | None:
        return "The Everyone ACL group cannot be deleted." if obj.name == EVERYONE else None

    def bulk_delete_refusal(self, request: HttpRequest, queryset: QuerySet[AclGroup]) -> str | None:
        if queryset.filter(name=EVERYONE).exists():
            return "Nothing was deleted: the Everyone ACL group cannot be deleted; leave it out of the selection."
        return None

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        AclGroup.rebalance_everyone()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AclGroup]) -> None:
        queryset.exclude(name=EVERYONE).delete()
        AclGroup.rebalance_everyone()


@admin.register(User)
class AfeUserAdmin(GuardedAdmin):
    list_display = ["login", "access_level", "reboot_before", "reboot_after", "drone_set"]
    search_fields = ["login"]


@admin.register(Drone)
class DroneAdmin(GuardedAdmin):
    """Each drone's state (one query for the list): alive, last heartbeat, capacity, processes running.

    Unticking *enabled* gives the drone no new work (its running work goes on
    and is watched); *max processes limit* lowers its capacity.
    """

    list_display = ["hostname", "alive", "heartbeat_at", "max_processes", "max_processes_limit", "running",
                    "enabled", "worker_machine", "worker_pid"]
    list_editable = ["enabled", "max_processes_limit"]
    list_filter = ["enabled"]
    search_fields = ["hostname"]
    fields = ["hostname", "enabled", "max_processes_limit", "max_processes", "heartbeat_at", "worker_machine",
              "worker_pid", "worker_instance"]
    readonly_fields = ["max_processes", "heartbeat_at", "worker_machine", "worker_pid", "worker_instance"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Drone]:
        from datetime import timedelta

        from django.db.models import BooleanField, Case, DateTimeField, ExpressionWrapper, IntegerField, OuterRef
        from django.db.models import Q, Subquery, Sum, Value, When
        from django.db.models.functions import Coalesce, Now

        from drones.config import DroneConfig
        from drones.models import Process

        dead_after = timedelta(seconds=DroneConfig.from_settings().dead_after_seconds)
        running = (Process.objects.active().filter(drone=OuterRef("hostname")).order_by()
                   .values("drone").annotate(n=Sum("num_processes")).values("n"))
        cutoff = ExpressionWrapper(Now() - dead_after, output_field=DateTimeField())
        return super().get_queryset(request).annotate(
            running_processes=Coalesce(Subquery(running, output_field=IntegerField()), Value(0)),
            is_alive=Case(When(Q(heartbeat_at__gte=cutoff), then=Value(True)), default=Value(False),
                          output_field=BooleanField()),
        )

    @admin.display(boolean=True, description="alive", ordering="is_alive")
    def alive(self, drone: Drone) -> bool:
        return drone.is_alive

    @admin.display(description="processes running", ordering="running_processes")
    def running(self, drone: Drone) -> int:
        return drone.running_processes


@admin.register(DroneSet)
class DroneSetAdmin(GuardedAdmin):
    list_display = ["name"]
    filter_horizontal = ["drones"]


@admin.register(ApiToken)
class ApiTokenAdmin(GuardedAdmin):
    """API tokens: issued here (the key is shown once) and revoked by an action; never edited."""

    list_display = ["user", "name", "key_prefix", "created_on", "last_used_on", "revoked_on"]
    list_filter = [("revoked_on", admin.EmptyFieldListFilter)]
    search_fields = ["user__login", "name", "key_prefix"]
    list_select_related = ["user"]
    fields = ["user", "name"]
    raw_id_fields = ["user"]
    actions = ["revoke_tokens"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return []
        return ["user", "name", "key_prefix", "created_on", "last_used_on", "revoked_on"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        return self.get_readonly_fields(request, obj) or self.fields

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        key = obj.new_key()
        super().save_model(request, obj, form, change)
        self.message_user(
            request,
            f"The key of token “{obj.name}” for {obj.user.login} is {key} — copy it now: it is not "
            f"stored and cannot be shown again. Send it as the header “Authorization: Token {key}”.",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = queryset.revoke()
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)
