"""The autoserv and parser command lines of the spec (§5.1), built from plain values."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from afe.models import ControlType, Protection, SpecialTask

NICE = ["nice", "-n", "10"]
AUTOSERV_PIDFILE = ".autoserv_execute"
CRASHINFO_PIDFILE = ".collect_crashinfo_execute"
PARSER_PIDFILE = ".parser_execute"
CRASHINFO_LOG = ".collect_crashinfo.log"
PARSE_LOG = ".parse.log"

TASK_FLAGS = {
    SpecialTask.Task.VERIFY: ["-v"],
    SpecialTask.Task.CLEANUP: ["--cleanup"],
    SpecialTask.Task.RESET: ["--reset"],
    SpecialTask.Task.REPAIR: ["-R"],
    SpecialTask.Task.PROVISION: ["--provision"],
}


@dataclass(frozen=True)
class JobIdentity:
    """What autoserv's ``-u -l -c|-s`` flags say about a job."""

    owner: str
    name: str
    control_type: int

    def flags(self) -> list[str]:
        return ["-u", self.owner, "-l", self.name, "-s" if self.control_type == ControlType.SERVER else "-c"]


def autoserv_base(
    autoserv: str,
    working_dir: str,
    machines: Iterable[str] = (),
    job: JobIdentity | None = None,
    verbose: bool = True,
) -> list[str]:
    """``<A> -p -r <WD> [-m <machines>] [-u -l -c|-s] [--verbose] --lab True``."""
    command = [*NICE, autoserv, "-p", "-r", working_dir]
    machines = ",".join(machines)
    if machines:
        command += ["-m", machines]
    if job is not None:
        command += job.flags()
    if verbose:
        command.append("--verbose")
    return command + ["--lab", "True"]


def job_command(
    autoserv: str,
    working_dir: str,
    hostnames: list[str],
    job: JobIdentity,
    execution_tag: str,
    control_path: str,
    parent_job_id: int | None,
) -> list[str]:
    """The command that runs a job on its group of hosts (or hostless when ``hostnames`` is empty)."""
    command = autoserv_base(autoserv, working_dir, hostnames, job, verbose=False)
    command += ["-P", execution_tag, "-n", control_path]
    if hostnames:
        if parent_job_id:
            command += ["--parent_job_id", str(parent_job_id)]
        command.append("--verify_job_repo_url")
    return command


def special_task_command(
    autoserv: str,
    working_dir: str,
    hostname: str,
    task: str,
    job: JobIdentity | None,
    job_labels: Iterable[str],
    protection: int = Protection.NO_PROTECTION,
) -> list[str]:
    """The host action of a special task: verify, cleanup, reset, repair or provision."""
    labels = ",".join(sorted(job_labels))
    if task == SpecialTask.Task.PROVISION:
        return autoserv_base(autoserv, working_dir, [hostname]) + ["--provision", "--job-labels", labels]
    command = autoserv_base(autoserv, working_dir, [hostname], job) + TASK_FLAGS[task]
    if task == SpecialTask.Task.REPAIR:
        command += ["--host-protection", Protection(protection).name]
    if labels:
        command += ["--job-labels", labels]
    return command


def crashinfo_command(autoserv: str, results_path: str, hostnames: list[str]) -> list[str]:
    return [
        *NICE, autoserv, "-p", "--pidfile-label=collect_crashinfo", "--use-existing-results",
        "--collect-crashinfo", "-m", ",".join(hostnames), "-r", results_path,
    ]


def parse_command(parser: str, results_path: str) -> list[str]:
    return [
        *NICE, parser, "--detach", "--write-pidfile", "--record-duration", "--suite-report",
        "-l", "2", "-r", "-o", results_path,
    ]
