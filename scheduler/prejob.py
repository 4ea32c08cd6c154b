"""Pre-job decisions (pure; no database): which tasks run before a job, and what a failed one means.

The post-job and final-status rules are in :mod:`scheduler.postjob_rules`.

Each function takes the few facts a decision depends on and returns what to
do; the caller creates the special tasks and writes the statuses.
"""
from __future__ import annotations

from dataclasses import dataclass

from afe.models import PROVISION_PREFIXES, Protection, RebootBefore, SpecialTask

SKIP_PROVISION_LABEL = "skip_provision"

Task = SpecialTask.Task


def provision_labels(job_label_names: frozenset[str], host_label_names: frozenset[str]) -> list[str]:
    """The provision-actionable job labels the host does not carry, sorted.

    A label is provision-actionable when its name starts with one of
    :data:`afe.models.PROVISION_PREFIXES` (``cros-version:`` …). An empty list
    means the host already has every build the job asks for. The
    ``skip_provision`` label is not considered here (see :func:`prejob_tasks`).
    """
    return sorted(name for name in job_label_names - host_label_names if name.startswith(PROVISION_PREFIXES))


def prejob_tasks(
    *,
    reboot_before: int,
    run_verify: bool,
    run_reset: bool,
    host_dirty: bool,
    host_protection: int,
    job_label_names: frozenset[str],
    host_label_names: frozenset[str],
) -> list[str]:
    """The special tasks to queue, in order, when a host is assigned to an entry (spec §3.3).

    Returns a list of :class:`SpecialTask.Task` values:

    * ``[Provision]`` when the job needs a provision-actionable label the host
      lacks and the job does not carry ``skip_provision``; provisioning
      replaces reset, verify and cleanup;
    * otherwise ``[Reset]`` when a reset is due;
    * otherwise ``[Cleanup]``, ``[Verify]`` or ``[]`` (never both: if cleanup
      and verify were both due, a reset would be).

    ``[]`` means nothing is needed and the entry goes to Pending at once.
    ``job_label_names`` are the metahost label plus the dependency labels;
    ``host_label_names`` exclude the platform label.
    """
    if SKIP_PROVISION_LABEL not in job_label_names and provision_labels(job_label_names, host_label_names):
        return [Task.PROVISION]
    do_not_verify = host_protection == Protection.DO_NOT_VERIFY
    cleanup = reboot_before == RebootBefore.ALWAYS or (reboot_before == RebootBefore.IF_DIRTY and host_dirty)
    # With reboot_before Never, run_reset is weakened to a verify.
    verify = not do_not_verify and (run_verify or (run_reset and reboot_before == RebootBefore.NEVER))
    reset = reboot_before != RebootBefore.NEVER and not do_not_verify and (run_reset or (cleanup and verify))
    if reset:
        return [Task.RESET]
    return [task for task, due in ((Task.CLEANUP, cleanup), (Task.VERIFY, verify)) if due]


@dataclass(frozen=True)
class PrejobFailure:
    """What to do after a pre-job task (Verify, Cleanup, Reset, Provision) linked
    to an entry failed on a host.

    ``fail_entry``: the entry goes to Parsing and then Failed.
    ``requeue``: the entry goes back to Queued (a metahost entry also loses its
    host and block row). Exactly one of ``fail_entry`` and ``requeue`` is true.
    ``repair``: queue a Repair special task for the host, linked to the entry.
    ``host_repair_failed``: the host's status becomes Repair Failed (it is given
    up on; no repair is queued). Exactly one of ``repair`` and
    ``host_repair_failed`` is true.
    """

    fail_entry: bool
    requeue: bool
    repair: bool
    host_repair_failed: bool


def prejob_failure(
    *,
    provision_attempts: int,
    max_provision_retries: int,
    repairs_for_entry_on_host: int,
    max_repair_limit: int,
    is_metahost: bool,
) -> PrejobFailure:
    """Decide the fate of an entry and its host after a failed pre-job task (spec §3.4 step 3).

    ``provision_attempts`` is the number of Provision tasks ever created for the
    entry, on any host, including the one that just failed.
    ``repairs_for_entry_on_host`` is the number of Repair tasks already linked
    to the entry on this host, counted before the entry is requeued (this fixes
    §6.1 #4: the original counted after a metahost entry had lost its host, so
    the limit never triggered for metahost entries).

    Branches:

    * Provision retries exceeded (``provision_attempts > max_provision_retries``):
      the entry fails, whatever the repair count; the host is still repaired
      (or given up on, if its repair limit is reached).
    * Repair limit reached (``repairs_for_entry_on_host >= max_repair_limit``):
      the host becomes Repair Failed and is not repaired. A metahost entry is
      requeued to look for another host; any other entry fails.
    * Otherwise: the entry is requeued and the host repaired; the entry is
      tried again once the host is Ready (a metahost entry may get another host).

    A failure on a Do-not-verify host counts as success and never gets here.
    """
    provision_exhausted = provision_attempts > max_provision_retries
    repair_exhausted = repairs_for_entry_on_host >= max_repair_limit
    fail_entry = provision_exhausted or (repair_exhausted and not is_metahost)
    return PrejobFailure(
        fail_entry=fail_entry,
        requeue=not fail_entry,
        repair=not repair_exhausted,
        host_repair_failed=repair_exhausted,
    )
