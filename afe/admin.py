"""Django admin for the lab: hosts, special tasks, jobs and their entries.

Every action works on the whole selection with a fixed number of queries.
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .models import (
    AclGroup,
    Drone,
    DroneSet,
    Host,
    HostAttribute,
    HostQueueEntry,
    Job,
    JobKeyval,
    Label,
    SpecialTask,
    User,
)


def acting_user(request: HttpRequest) -> User:
    return User.for_django_user(request.user)


class LockReasonForm(forms.Form):
    lock_reason = forms.CharField(
        max_length=255, strip=True, help_text="Why these hosts are locked (required)."
    )


class HostAttributeInline(admin.TabularInline):
    model = HostAttribute
    extra = 1


class HostAdminForm(forms.ModelForm):
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


class SoftDeleteAdmin(admin.ModelAdmin):
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
        hosts = list(queryset.only("pk"))
        created = SpecialTask.schedule_for_hosts(hosts, task, acting_user(request))
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


@admin.register(SpecialTask)
class SpecialTaskAdmin(admin.ModelAdmin):
    list_display = [
        "id", "host", "task", "state", "success", "requested_by",
        "time_requested", "time_started", "time_finished", "queue_entry_id", "is_aborted",
    ]
    list_filter = ["task", SpecialTaskStateFilter, "is_aborted"]
    search_fields = ["host__hostname"]
    list_select_related = ["host", "requested_by"]
    raw_id_fields = ["host", "queue_entry", "requested_by"]
    readonly_fields = ["time_requested"]
    actions = ["abort_tasks"]

    @admin.display(description="State")
    def state(self, task: SpecialTask) -> str:
        return task.status

    @admin.action(description="Abort selected active tasks")
    def abort_tasks(self, request: HttpRequest, queryset: QuerySet[SpecialTask]) -> None:
        count = queryset.abort()
        self.message_user(request, f"Abort requested for {count} active task(s).", messages.SUCCESS)


def _abort_entries(model_admin: admin.ModelAdmin, request: HttpRequest, entries: QuerySet) -> None:
    aborted = entries.abort(acting_user(request))
    model_admin.message_user(
        request, f"Abort requested for {len(aborted)} entr{'y' if len(aborted) == 1 else 'ies'}.",
        messages.SUCCESS,
    )


class HostQueueEntryInline(admin.TabularInline):
    model = HostQueueEntry
    fields = ["host", "meta_host", "status", "aborted", "execution_subdir", "started_on", "finished_on"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class JobKeyvalInline(admin.TabularInline):
    model = JobKeyval
    extra = 0


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "name", "priority", "control_type", "created_on", "parent_job_id"]
    list_filter = ["priority", "control_type"]
    search_fields = ["name", "owner"]
    filter_horizontal = ["dependency_labels"]
    raw_id_fields = ["parent_job"]
    inlines = [HostQueueEntryInline, JobKeyvalInline]
    actions = ["abort_jobs"]

    @admin.action(description="Abort selected jobs (and their child jobs)")
    def abort_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        _abort_entries(self, request, HostQueueEntry.objects.filter(job__in=queryset))


@admin.register(HostQueueEntry)
class HostQueueEntryAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "host", "meta_host", "status", "aborted", "active", "complete", "started_on", "finished_on"]
    list_filter = ["status", "aborted", "complete"]
    search_fields = ["host__hostname", "job__name"]
    list_select_related = ["job", "host", "meta_host"]
    raw_id_fields = ["job", "host"]
    readonly_fields = ["active", "complete"]
    actions = ["abort_entries"]

    @admin.action(description="Abort selected entries")
    def abort_entries(self, request: HttpRequest, queryset: QuerySet[HostQueueEntry]) -> None:
        _abort_entries(self, request, queryset)


@admin.register(Label)
class LabelAdmin(SoftDeleteAdmin):
    list_display = ["name", "platform", "only_if_needed", "kernel_config"]
    list_filter = ["platform", "only_if_needed"]
    search_fields = ["name"]
    exclude = ["atomic_group", "invalid"]


@admin.register(AclGroup)
class AclGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "description"]
    search_fields = ["name"]
    filter_horizontal = ["users", "hosts"]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        AclGroup.rebalance_everyone()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AclGroup]) -> None:
        queryset.exclude(name="Everyone").delete()
        AclGroup.rebalance_everyone()


@admin.register(User)
class AfeUserAdmin(admin.ModelAdmin):
    list_display = ["login", "access_level", "reboot_before", "reboot_after", "drone_set"]
    search_fields = ["login"]


@admin.register(Drone)
class DroneAdmin(admin.ModelAdmin):
    list_display = ["hostname"]
    search_fields = ["hostname"]


@admin.register(DroneSet)
class DroneSetAdmin(admin.ModelAdmin):
    list_display = ["name"]
    filter_horizontal = ["drones"]
