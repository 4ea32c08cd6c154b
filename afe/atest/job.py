"""``atest job [create|clone|list|stat|abort]``."""
from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any

from . import rpc
from .common import Command, CreateAction, ItemSource, ListAction, UsageError

DEFAULT_PRIORITY = 40


class JobCommand(Command):
    topic = msg_topic = "job"
    msg_items = "<job_ids>"

    @staticmethod
    def convert_status(results: list[dict[str, Any]]) -> None:
        """``status_counts`` {"Queued": 1, "Running": 3} -> ``Queued=1(25.0%), Running=3(75.0%)``."""
        for result in results:
            counts = result.get("status_counts") or {}
            total = sum(counts.values())
            status = sorted(f"{key}={value}({100.0 * value / total:.1f}%)" for key, value in counts.items()) \
                if total else []
            result["status_counts"] = ", ".join(status)


class JobListStat(ListAction, JobCommand):
    jobs: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.topic_source = ItemSource("jobs", leftover=True)

    def execute_on_ids_and_names(self, op: str, filters: dict[str, Any] | None = None,
                                 check: bool = True, tag_id: str = "id__in",
                                 tag_name: str = "name__in") -> list[dict[str, Any]]:
        """``op`` for the jobs asked for: their ids and their names go in separate calls."""
        filters = filters or {}
        if not self.jobs:
            return self.list_items(op, filters)
        job_ids = [job for job in self.jobs if job.isdigit()]
        job_names = [job for job in self.jobs if not job.isdigit()]
        all_jobs: list[dict[str, Any]] = []
        for items, tag, field in ((job_ids, tag_id, "id"), (job_names, tag_name, "name")):
            if items:
                all_jobs.extend(self.list_items(op, {**filters, tag: items}, {tag: field} if check else {}))
        return all_jobs


class JobList(JobListStat):
    """atest job list [<jobs>] [--all] [--running] [--user <username>]"""

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-a", "--all", action="store_true", default=False, help="List jobs for all users.")
        parser.add_argument("-r", "--running", action="store_true", default=None, help="List only running jobs")
        parser.add_argument("-u", "--user", help="List jobs for given user")

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv)
        self.data["running"] = options.running
        if options.user:
            if options.all:
                raise UsageError("Only specify --all or --user, not both.")
            self.data["owner"] = options.user
        elif not options.all and not self.jobs:
            # The login the calls are made as (atest used the Unix login even with $AUTOTEST_USER set).
            self.data["owner"] = rpc.get_login()
        return options

    def execute(self) -> list[dict[str, Any]]:
        return self.execute_on_ids_and_names("get_jobs_summary", self.data)

    def output(self, results: list[dict[str, Any]]) -> None:
        keys = ["id", "owner", "name", "status_counts"]
        if self.verbose:
            keys += ["priority", "control_type", "created_on"]
        self.convert_status(results)
        self.print_table(results, keys)


class JobStat(JobListStat):
    """atest job stat <job>"""

    usage_action = "stat"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-f", "--control-file", action="store_true", default=False,
                            help="Display the control file")
        parser.add_argument("-N", "--list-hosts", action="store_true", help="Display only a list of hosts")
        parser.add_argument("-s", "--list-hosts-status",
                            help="Display only the hosts in these statuses for a job.")

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv, [ItemSource("status_list", inline="list_hosts_status")], req_items="jobs")
        self.show_control_file = options.control_file
        self.list_hosts = options.list_hosts
        if self.list_hosts and self.status_list:
            raise UsageError("--list-hosts is implicit when using --list-hosts-status.")
        if len(self.jobs) > 1 and (self.list_hosts or self.status_list):
            raise UsageError("--list-hosts and --list-hosts-status should only be used on a single job.")
        return options

    def merge_results(self, summary: list[dict[str, Any]], entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        hosts_status: dict[Any, dict[str, list[str]]] = {}
        for entry in entries:
            if entry.get("host"):
                hosts_status.setdefault(entry["job"]["id"], {}).setdefault(entry["status"], []).append(
                    entry["host"]["hostname"])
        for job in summary:
            this_job = hosts_status.get(job["id"])
            if this_job:
                job["hosts"] = " ".join(" ".join(hosts) for hosts in this_job.values())
                per_status = [f'{status}="{" ".join(hosts)}"' for status, hosts in this_job.items()]
                job["hosts_status"] = ", ".join(per_status)
                if self.status_list:
                    wanted = {status.lower() for status in self.status_list}
                    job["hosts_selected_status"] = "\n".join(
                        s for s in per_status if s.split("=", 1)[0].lower() in wanted)
            else:
                job["hosts_status"] = ""
            if not job.get("hosts"):
                self.generic_error("Job has unassigned meta-hosts, try again shortly.")
        return summary

    def execute(self) -> list[dict[str, Any]]:
        summary = self.execute_on_ids_and_names("get_jobs_summary")
        entries = self.execute_on_ids_and_names("get_host_queue_entries", check=False,
                                                tag_id="job__in", tag_name="job__name__in")
        self.convert_status(summary)
        return self.merge_results(summary, entries)

    def output(self, results: list[dict[str, Any]]) -> None:
        if self.list_hosts:
            keys = ["hosts"]
        elif self.status_list:
            keys = ["hosts_selected_status"]
        elif not self.verbose:
            keys = ["id", "name", "priority", "status_counts", "hosts_status"]
        else:
            keys = ["id", "name", "priority", "status_counts", "hosts_status", "owner", "control_type",
                    "synch_count", "created_on", "run_verify", "reboot_before", "reboot_after",
                    "parse_failed_repair"]
        if self.show_control_file:
            keys.append("control_file")
        self.print_table(results, keys)


class JobCreateOrClone(CreateAction, JobCommand):
    """What job create and job clone share: the name, the hosts and the priority."""

    msg_items = "job_name"
    hosts: list[str]
    one_time_hosts: list[str]
    labels: list[str]
    jobname: Any

    def __init__(self) -> None:
        super().__init__()
        self.topic_source = ItemSource("jobname", leftover=True)

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-p", "--priority", type=int, default=DEFAULT_PRIORITY, help="Job priority (int)")
        parser.add_argument("-b", "--labels", default="",
                            help="Comma separated list of labels to get machine list from.")
        parser.add_argument("-m", "--machine", help="List of machines to run on")
        parser.add_argument("-M", "--mlist", metavar="MACHINE_FLIST", help="File listing machines to use")
        parser.add_argument("--one-time-hosts", help="List of one time hosts")
        parser.add_argument("-e", "--email", default="",
                            help="A comma seperated list of email addresses to notify of job completion")

    @staticmethod
    def parse_hosts(args: list[str]) -> tuple[list[str], list[str]]:
        """Hosts and meta-hosts: ``N*label`` is N meta-hosts on label, ``*label`` one."""
        hosts: list[str] = []
        meta_hosts: list[str] = []
        for arg in args:
            for host in arg.split(","):
                if re.match(r"^[0-9]+[*]", host):
                    num, label = host.split("*", 1)
                    meta_hosts += int(num) * [label]
                elif host.startswith("*"):
                    meta_hosts.append(host[1:])
                elif host and host not in hosts:
                    hosts.append(host)
        return hosts, meta_hosts

    def parse(self, argv: Sequence[str], sources: Sequence[ItemSource] = (), *args: Any,
              **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv, [ItemSource("hosts", inline="machine", filename="mlist"),
                                       ItemSource("one_time_hosts", inline="one_time_hosts"),
                                       ItemSource("labels", inline="labels"), *sources],
                                req_items="jobname")
        self.data = {"priority": options.priority}
        if len(self.jobname) > 1:
            raise UsageError(f"Too many arguments specified, only expected to receive job name: {self.jobname}")
        self.jobname = self.jobname[0]
        if self.one_time_hosts:
            self.data["one_time_hosts"] = self.one_time_hosts
        self.data["name"] = self.jobname
        self.data["email_list"] = options.email
        return options

    def resolve_hosts(self) -> None:
        """``-b`` labels become the hosts carrying all of them; then hosts and meta-hosts."""
        if self.labels:
            for host in self.execute_rpc("get_hosts", multiple_labels=self.labels):
                self.hosts.append(host["hostname"])
        self.data["hosts"], self.data["meta_hosts"] = self.parse_hosts(self.hosts)

    def create_job(self) -> list[str]:
        job_id = self.execute_rpc("create_job", **self.data)
        return [f"{self.jobname} (id {job_id})"]

    def get_items(self) -> list[str]:
        return [self.jobname]


class JobCreate(JobCreateOrClone):
    """atest job create [--priority <int>] [--synch_count] [--control-file </path/to/cfile>]
    [--on-server] [--test <test1,test2>] [--mlist </path/to/machinelist>] [--machine <host1 host2 host3>]
    [--labels <labels of machines to run on>] [--reboot_before <option>] [--reboot_after <option>]
    [--noverify] [--timeout_mins <timeout>] [--max_runtime <max runtime>] [--one-time-hosts <hosts>]
    [--email <email>] [--dependencies <labels this job is dependent on>]
    [--parse-failed-repair <option>] [--image <http://path/to/image>] [--require-ssp] job_name"""

    op_action = "create"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-y", "--synch_count", type=int, help="Number of machines to use per autoserv execution")
        parser.add_argument("-f", "--control-file", metavar="FILE", help="use this control file")
        parser.add_argument("-s", "--server", action="store_true", default=False, help="This is server-side job")
        parser.add_argument("-t", "--test", help="List of tests to run")
        parser.add_argument("-d", "--dependencies", default="",
                            help="Comma separated list of labels this job is dependent on.")
        parser.add_argument("-B", "--reboot_before", choices=("never", "if dirty", "always"),
                            help="Whether or not to reboot the machine before the job (never/if dirty/always)")
        parser.add_argument("-a", "--reboot_after", choices=("never", "if all tests passed", "always"),
                            help="Whether or not to reboot the machine after the job "
                                 "(never/if all tests passed/always)")
        parser.add_argument("--parse-failed-repair", choices=("true", "false"),
                            help="Whether or not to parse failed repair results as part of the job")
        parser.add_argument("-n", "--noverify", action="store_true", default=False, help="Do not run verify for job")
        parser.add_argument("-o", "--timeout_mins", metavar="TIMEOUT", help="Job timeout in minutes.")
        parser.add_argument("--max_runtime", help="Job maximum runtime in minutes")
        parser.add_argument("-i", "--image", help="OS image to install before running the test.")
        parser.add_argument("--require-ssp", action="store_true", default=False,
                            help="Require server-side packaging")

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv, [ItemSource("dependencies", inline="dependencies")])
        self.ctrl_file_data: dict[str, Any] = {}
        if not self.hosts and not self.one_time_hosts and not options.labels:
            raise UsageError("Must specify at least one machine.(-m, -M, -b or --one-time-hosts).")
        if not options.control_file and not options.test:
            raise UsageError("Must specify either --test or --control-file to create a job.")
        if options.control_file and options.test:
            raise UsageError("Can only specify one of --control-file or --test, not both.")
        if options.control_file:
            try:
                with open(options.control_file) as handle:
                    self.data["control_file"] = handle.read()
            except OSError:
                raise UsageError(f"Unable to read from specified control-file: {options.control_file}") from None
        if options.test:
            if options.server:
                raise UsageError("If you specify tests, then the client/server setting is implicit "
                                 "and cannot be overriden.")
            self.ctrl_file_data["tests"] = [t.strip() for t in options.test.split(",") if t.strip()]
        if options.image:
            self.data["image"] = options.image
        if options.reboot_before:
            self.data["reboot_before"] = options.reboot_before.capitalize()
        if options.reboot_after:
            self.data["reboot_after"] = options.reboot_after.capitalize()
        if options.parse_failed_repair:
            self.data["parse_failed_repair"] = options.parse_failed_repair == "true"
        if options.noverify:
            self.data["run_verify"] = False
        if options.timeout_mins:
            self.data["timeout_mins"] = options.timeout_mins  # a string, as atest sent it
        if options.max_runtime:
            self.data["max_runtime_mins"] = options.max_runtime
        self.data["dependencies"] = self.dependencies
        if options.synch_count:
            self.data["synch_count"] = options.synch_count
        self.data["control_type"] = "Server" if options.server else "Client"
        self.data["require_ssp"] = options.require_ssp
        return options

    def execute(self) -> list[str]:
        self.resolve_hosts()
        if self.ctrl_file_data:
            cf_info = self.execute_rpc("generate_control_file", item=self.jobname, **self.ctrl_file_data)
            self.data["control_file"] = cf_info["control_file"]
            self.data.setdefault("synch_count", cf_info["synch_count"])
            self.data["control_type"] = "Server" if cf_info["is_server"] else "Client"
            self.data["dependencies"] = sorted(set(self.data["dependencies"]) | set(cf_info["dependencies"]))
        self.data.setdefault("synch_count", 1)
        return self.create_job()


class JobClone(JobCreateOrClone):
    """atest job clone --id <job_id> [--reuse-hosts] [--priority <int>] [--mlist </path/to/machinelist>]
    [--machine <host1 host2 host3>] [--labels <labels>] [--one-time-hosts <hosts>] [--email <email>] job_name"""

    op_action = "clone"
    usage_action = "clone"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-i", "--id", metavar="JOB_ID", help="Job id to clone")
        parser.add_argument("-r", "--reuse-hosts", action="store_true", default=False,
                            help="Use the exact same hosts as the cloned job.")

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv)
        if not options.id:
            raise UsageError("Must specify the job to clone (--id).")
        self.clone_id = options.id
        self.reuse_hosts = options.reuse_hosts
        host_specified = self.hosts or self.one_time_hosts or options.labels
        if self.reuse_hosts and host_specified:
            raise UsageError("Cannot specify hosts and reuse the same ones as the cloned job.")
        if not (self.reuse_hosts or host_specified):
            raise UsageError("Must reuse or specify at least one machine (-r, -m, -M, -b or --one-time-hosts).")
        return options

    def execute(self) -> list[str]:
        self.resolve_hosts()
        clone_info = self.execute_rpc("get_info_for_clone", id=self.clone_id, preserve_metahosts=self.reuse_hosts)
        job = dict(clone_info["job"])
        # Fields create_job cannot take back.
        for field in ("name", "created_on", "id", "owner", "parameterized_job"):
            job.pop(field, None)
        self.data.update(job)
        if self.reuse_hosts:
            for label, count in (clone_info.get("meta_host_counts") or {}).items():
                self.data["meta_hosts"].extend([label] * count)
            self.data["hosts"].extend(host["hostname"] for host in clone_info.get("hosts") or [])
        return self.create_job()


class JobAbort(JobCommand):
    """atest job abort <job(s)>"""

    usage_action = "abort"
    jobids: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.topic_source = ItemSource("jobids", leftover=True)

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        return super().parse(argv, req_items="jobids")

    def execute(self) -> None:
        self.execute_rpc("abort_host_queue_entries", job__id__in=self.jobids)
        self.print(f"Aborting jobs: {', '.join(self.jobids)}")

    def get_items(self) -> list[str]:
        return self.jobids


def backward_compatibility(action: str, argv: list[str]) -> str:
    """``job create --clone N`` (or ``-l N``) became ``job clone --id N``."""
    if action == "create":
        for option in ("-l", "--clone"):
            if option in argv:
                argv[argv.index(option)] = "--id"
                action = "clone"
    return action


TOPIC_USAGE = "atest job [create|clone|list|stat|abort] [options] <job_ids>"
ACTIONS: dict[str, type[Command]] = {
    "list": JobList, "stat": JobStat, "create": JobCreate, "clone": JobClone, "abort": JobAbort,
}
