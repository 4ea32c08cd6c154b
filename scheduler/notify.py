"""E-mail: per-status job mail, the job-complete summary and the operator digest."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from .config import SchedulerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntryOutcome:
    """What a mail says about one entry that reached a status."""

    job_id: int
    job_name: str
    hostname: str | None
    status: str
    email_list: tuple[str, ...]


@dataclass
class Notifier:
    """Collects the tick's mail and sends it in one go at the end of the tick."""

    config: SchedulerConfig
    messages: list[EmailMessage] = field(default_factory=list)
    operator_notes: list[tuple[str, str]] = field(default_factory=list)

    def job_link(self, job_id: int) -> str:
        return f"{self.config.base_url}#tab_id=view_job&object_id={job_id}"

    def entry_reached(self, outcome: EntryOutcome) -> None:
        """Queue the per-status mail to the job's e-mail list, if that status is wanted."""
        if not outcome.email_list or not self.config.wants_email_for(outcome.status):
            return
        host = outcome.hostname or "no host"
        subject = (
            f'Autotest | Job ID: {outcome.job_id} "{outcome.job_name}" | '
            f"Status: {outcome.status} | Hostname: {host}"
        )
        body = (
            f"Job ID: {outcome.job_id}\nJob name: {outcome.job_name}\nHost: {host}\n"
            f"Status: {outcome.status}\n{self.job_link(outcome.job_id)}\n"
        )
        self._queue(subject, body, outcome.email_list)

    def job_completed(self, job_id: int, job_name: str, statuses: dict[str, int], email_list: tuple[str, ...]) -> None:
        """Queue the summary mail sent once every entry of a job is complete."""
        if not email_list:
            return
        counts = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
        subject = f'Autotest | Job ID: {job_id} "{job_name}" | Job complete'
        body = f"Job {job_id} ({job_name}) is complete.\n{counts}\n{self.job_link(job_id)}\n"
        self._queue(subject, body, email_list)

    def operator(self, subject: str, body: str) -> None:
        """Add a note to the operator digest (sent only when SCHEDULER_NOTIFY_EMAIL is set)."""
        log.warning("%s: %s", subject, body)
        self.operator_notes.append((subject, body))

    def _queue(self, subject: str, body: str, to: tuple[str, ...]) -> None:
        self.messages.append(EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, list(to)))

    def flush(self) -> int:
        """Send everything queued this tick; returns how many mails went out. Never raises."""
        if self.operator_notes and self.config.notify_email:
            body = "\n\n".join(f"{subject}\n{text}" for subject, text in self.operator_notes)
            subject = f"Scheduler notifications ({len(self.operator_notes)})"
            self._queue(subject, body, self.config.notify_email)
        self.operator_notes.clear()
        messages, self.messages = self.messages, []
        if not messages:
            return 0
        try:
            return get_connection(fail_silently=False).send_messages(messages) or 0
        except Exception:  # a broken mail server must not stop scheduling
            log.exception("could not send %d scheduler mail(s)", len(messages))
            return 0
