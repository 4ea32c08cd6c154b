"""Process records in the admin: for looking, not for editing (the scheduler owns them)."""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from afe.admin.guards import GuardedAdmin

from .models import Process


@admin.register(Process)
class ProcessAdmin(GuardedAdmin):
    list_display = [
        "id", "kind", "state", "drone", "pid", "exit_status", "tests_failed", "handled",
        "kill_requested", "job", "special_task", "created_at", "finished_at",
    ]
    list_filter = ["state", "kind", "handled", "drone"]
    search_fields = ["id", "execution_subdir", "owner", "working_dir"]
    list_select_related = ["job", "special_task__host"]
    raw_id_fields = ["job", "special_task", "paired_with"]
    actions = ["kill_processes"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Kill the selected processes")
    def kill_processes(self, request: HttpRequest, queryset: QuerySet[Process]) -> None:
        killed = sum(1 for process in queryset.active() if process.request_kill())
        self.message_user(request, f"Kill requested for {killed} process(es).", messages.SUCCESS)
