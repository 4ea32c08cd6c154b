"""The scheduler's knobs, read once from settings into one typed object."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SchedulerConfig:
    """Everything the scheduler may be tuned with (global_config ``[SCHEDULER]``).

    Defaults are the shipped defaults of the original scheduler.
    """

    results_dir: Path = Path("var/results")
    autoserv_path: str = "autoserv"
    parser_path: str = "parse"
    tick_seconds: float = 0.5
    max_processes_per_drone: int = 1000
    max_parse_processes: int = 100
    pidfile_timeout_minutes: int = 300
    clean_interval_minutes: int = 5
    reverify_period_minutes: int = 30
    reverify_max_hosts_at_once: int = 30
    max_repair_limit: int = 2
    max_provision_retries: int = 0
    notify_email: tuple[str, ...] = ()
    notify_email_statuses: frozenset[str] = field(
        default_factory=lambda: frozenset({"completed", "failed", "aborted"})
    )
    base_url: str = "http://localhost:8000/afe/"
    default_drone_set: str = ""
    metrics_port: int | None = None
    metrics_address: str = "0.0.0.0"
    summary_minutes: float = 5.0
    wake_seconds: float = 0.05

    @classmethod
    def from_settings(cls, settings: Any = None) -> SchedulerConfig:
        if settings is None:
            from django.conf import settings
        knobs = dict(settings.SCHEDULER)
        knobs["notify_email"] = tuple(knobs.get("notify_email") or ())
        knobs["notify_email_statuses"] = parse_statuses(knobs.get("notify_email_statuses", ""))
        return cls(
            results_dir=Path(settings.RESULTS_DIR),
            autoserv_path=str(settings.AUTOSERV_PATH),
            parser_path=str(settings.PARSER_PATH),
            **knobs,
        )

    def wants_email_for(self, status: str) -> bool:
        """Whether an entry reaching ``status`` sends the per-status job mail."""
        return "all" in self.notify_email_statuses or status.lower() in self.notify_email_statuses


def parse_statuses(text: str) -> frozenset[str]:
    """``"Completed, Failed;Aborted"`` → ``{"completed", "failed", "aborted"}``."""
    return frozenset(s.lower() for s in re.split(r"[\s,;:]+", text or "") if s)
