"""Post-job and final-status rules (pure; no database), spec §3.7.

After a job's autoserv process ends: whether to collect crash information,
which host tasks follow the job, and the status each entry ends in.
"""
from __future__ import annotations

import os

from afe.models import HostQueueEntry, RebootAfter

Status = HostQueueEntry.Status


def postjob_tasks(
    *, aborted: bool, reboot_after: int, run_reset: bool, final_success: bool, tests_failed: int
) -> tuple[bool, bool]:
    """Which host tasks follow a job on each of its hosts (spec §3.7, Gathering steps 3-6).

    Returns ``(cleanup, reset)``: whether to queue a Cleanup and whether to
    queue a Reset (neither linked to an entry). ``(False, False)`` means the
    host goes straight back to Ready.

    ``final_success`` is true when the autoserv process is known and the entry
    would end Completed (not aborted, exit 0). ``tests_failed`` is the pidfile's
    failed-test count: 0 when there was no process, -1 when unknown.

    * A reset follows a failure (job failed or some test failed) only for jobs
      that did not reset before running (``run_reset`` false).
    * A cleanup (reboot) follows an abort, ``reboot_after`` Always, ``reboot_after``
      If-all-tests-passed when everything passed, or failed tests that are not
      already answered by that reset.
    """
    reset_after_failure = not run_reset and (not final_success or tests_failed > 0)
    cleanup = (
        aborted
        or reboot_after == RebootAfter.ALWAYS
        or (reboot_after == RebootAfter.IF_ALL_TESTS_PASSED and final_success and tests_failed == 0)
        or (tests_failed > 0 and not reset_after_failure)
    )
    return cleanup, reset_after_failure


def final_status(*, aborted: bool, exit_status: int | None) -> str:
    """The entry's final :class:`HostQueueEntry.Status` after parsing (spec §3.7).

    Aborted when the entry was aborted (whatever the exit), Completed when
    autoserv's wait status is 0, and Failed otherwise, including when the exit
    status is unknown (``None``: the process was lost or never ran).
    """
    if aborted:
        return Status.ABORTED
    if exit_status == 0:
        return Status.COMPLETED
    return Status.FAILED


def needs_crashinfo(exit_status: int | None) -> bool:
    """Whether to collect crash information after a job (spec §3.7, §5.2).

    ``exit_status`` is the wait() status from the autoserv pidfile. True when
    it is unknown (``None``) or says the process was killed by a signal
    (e.g. 271 = exit 1 + SIGTERM); False for a normal exit (0, or 256 = exit 1).
    """
    return exit_status is None or os.WIFSIGNALED(exit_status)
