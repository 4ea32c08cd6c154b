"""``atest host [create|delete|list|stat|mod|jobs]``: the machines of the lab."""
from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any

from .common import (
    CliError, Command, DeleteAction, ItemSource, ListAction, UsageError,
)

PROTECTIONS = ("No protection", "Repair software only", "Repair filesystem only",
               "Do not repair", "Do not verify")


class HostCommand(Command):
    """Options every host action has: ``-M/--mlist`` and the hosts as arguments."""

    topic = msg_topic = "host"
    msg_items = "<hosts>"
    hosts: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.topic_source = ItemSource("hosts", filename="mlist", leftover=True)

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-M", "--mlist", metavar="MACHINE_FLIST", default=None,
                            help="File listing the machines")

    def get_items(self) -> list[str]:
        return self.hosts

    @staticmethod
    def cleanup_labels(labels: list[Any], platform: str | None = None) -> list[Any]:
        """The labels without the platform (given by name, or labels given as dicts)."""
        if platform:
            return [label for label in labels if label != platform]
        return [label for label in labels if not (isinstance(label, dict) and label.get("platform"))]


class HostList(ListAction, HostCommand):
    """atest host list [--mlist <file>|<hosts>] [--label <label>]
    [--status <status1,status2>] [--acl <ACL>] [--user <user>]"""

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-b", "--label", default="",
                            help="Only list hosts with all these labels (comma separated)")
        parser.add_argument("-s", "--status", default="",
                            help="Only list hosts with any of these statuses (comma separated)")
        parser.add_argument("-a", "--acl", default="", help="Only list hosts within this ACL")
        parser.add_argument("-u", "--user", default="", help="Only list hosts available to this user")
        parser.add_argument("-N", "--hostnames-only", action="store_true",
                            help="Only return hostnames for the machines queried.")
        parser.add_argument("--locked", action="store_true", default=False, help="Only list locked hosts")
        parser.add_argument("--unlocked", action="store_true", default=False, help="Only list unlocked hosts")

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv, [ItemSource("labels", inline="label")])
        self.status = options.status
        self.acl = options.acl
        self.user = options.user
        self.hostnames_only = options.hostnames_only
        if options.locked and options.unlocked:
            raise UsageError("--locked and --unlocked are mutually exclusive")
        self.locked = options.locked
        self.unlocked = options.unlocked
        return options

    def execute(self) -> list[dict[str, Any]]:
        filters: dict[str, Any] = {}
        check_results: dict[str, str | None] = {}
        if self.hosts:
            filters["hostname__in"] = self.hosts
            check_results["hostname__in"] = "hostname"
        if self.labels:
            if len(self.labels) == 1:
                # labels__name__in, so that a wildcard (x86*) works
                filters["labels__name__in"] = self.labels
            else:
                filters["multiple_labels"] = self.labels
        if self.status:
            filters["status__in"] = [status.strip() for status in self.status.split(",") if status.strip()]
        if self.acl:
            filters["aclgroup__name"] = self.acl
        if self.user:
            filters["aclgroup__users__login"] = self.user
        if self.locked or self.unlocked:
            filters["locked"] = self.locked
        return self.list_items("get_hosts", filters, check_results)

    def output(self, results: list[dict[str, Any]]) -> None:
        for result in results:
            result["labels"] = self.cleanup_labels(result.get("labels") or [], result.get("platform"))
        if self.hostnames_only:
            self.print_list(results, "hostname")
        else:
            self.print_table(results, ["hostname", "status", "shard", "locked", "lock_reason",
                                       "locked_by", "platform", "labels"])


class HostStat(HostCommand):
    """atest host stat --mlist <file>|<hosts>"""

    usage_action = "stat"

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        return super().parse(argv, req_items="hosts")

    def execute(self) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]],
                                    dict[str, Any]]]:
        existing: list[dict[str, Any]] = []
        for host in self.hosts:
            if host.endswith("*"):
                stats = self.execute_rpc("get_hosts", hostname__startswith=host.rstrip("*"))
                if not stats:
                    self.failure(f"No hosts matching {host}", item=host, what_failed="Failed to stat")
                    continue
            else:
                stats = self.execute_rpc("get_hosts", hostname=host)
                if not stats:
                    self.failure(f"Unknown host {host}", item=host, what_failed="Failed to stat")
                    continue
            existing.extend(stats)
        results = []
        for stat in existing:
            hostname = stat["hostname"]
            acls = self.execute_rpc("get_acl_groups", hosts__hostname=hostname)
            labels = self.execute_rpc("get_labels", host__hostname=hostname)
            results.append(([stat], acls, labels, stat.get("attributes") or {}))
        return results

    def output(self, results: list[Any]) -> None:
        for stats, acls, labels, attributes in results:
            self.print("-" * 5)
            self.print_fields(stats, ["hostname", "id", "platform", "status", "locked", "locked_by",
                                      "lock_time", "lock_reason", "protection"])
            self.print_by_ids(acls, "ACLs", line_before=True)
            self.print_by_ids(self.cleanup_labels(labels), "Labels", line_before=True)
            self.print_dict(attributes, "Host Attributes", line_before=True)


class HostJobs(HostCommand):
    """atest host jobs [--max-query] --mlist <file>|<hosts>"""

    usage_action = "jobs"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-q", "--max-query", type=int, default=20,
                            help="Limits the number of results (20 by default)")

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv, req_items="hosts")
        self.max_queries = options.max_query
        return options

    def execute(self) -> list[tuple[str, list[dict[str, Any]]]]:
        real_hosts: list[str] = []
        for host in self.hosts:
            if host.endswith("*"):
                stats = self.execute_rpc("get_hosts", hostname__startswith=host.rstrip("*"))
                if not stats:
                    self.failure(f"No host matching {host}", item=host, what_failed="Failed to stat")
                real_hosts.extend(stat["hostname"] for stat in stats)
            else:
                real_hosts.append(host)
        results = []
        for host in real_hosts:
            entries = self.execute_rpc("get_host_queue_entries", host__hostname=host,
                                       query_limit=self.max_queries, sort_by=["-job__id"])
            jobs = [{"job_id": entry["job"]["id"], "job_owner": entry["job"]["owner"],
                     "job_name": entry["job"]["name"], "status": entry["status"]} for entry in entries]
            results.append((host, jobs))
        return results

    def output(self, results: list[tuple[str, list[dict[str, Any]]]]) -> None:
        for host, jobs in results:
            self.print("-" * 5)
            self.print(f"Hostname: {host}")
            self.print_table(jobs, ["job_id", "job_owner", "job_name", "status"])


class HostModCreate(HostCommand):
    """What host mod and host create share: locking, protection, labels, platform, ACLs, attributes."""

    attribute_regex = r"(?P<attribute>\w+)=(?P<value>.+)?"

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.host_ids: dict[str, int] = {}
        super().__init__()

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-l", "--lock", action="store_true", help="Lock hosts.")
        parser.add_argument("-r", "--lock_reason", default="", help="Reason for locking hosts.")
        parser.add_argument("-u", "--unlock", action="store_true", help="Unlock hosts.")
        parser.add_argument("-p", "--protection", choices=PROTECTIONS, metavar="PROTECTION",
                            help="Set the protection level on a host. Must be one of: "
                                 + ", ".join(f'"{p}"' for p in PROTECTIONS) + ".")
        parser.add_argument("--attribute", "-i", action="append",
                            help="Host attribute to add or change. Format is <attribute>=<value>. "
                                 "Multiple attributes can be set by passing the argument multiple "
                                 "times. Attributes can be unset by providing an empty value.")
        parser.add_argument("-b", "--labels", help="Comma separated list of labels.")
        parser.add_argument("-B", "--blist", metavar="LABEL_FLIST", help="File listing the labels")
        parser.add_argument("-a", "--acls", help="Comma separated list of ACLs.")
        parser.add_argument("-A", "--alist", metavar="ACL_FLIST", help="File listing the acls.")
        parser.add_argument("-t", "--platform", help="Sets the platform label.")

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv, [ItemSource("labels", inline="labels", filename="blist"),
                                       ItemSource("acls", inline="acls", filename="alist")],
                                req_items="hosts")
        if options.lock and options.unlock:
            raise UsageError("Only specify one of --lock and --unlock.")
        self.lock = options.lock
        self.unlock = options.unlock
        self.lock_reason = options.lock_reason
        if options.lock:
            self.data["locked"] = True
            self.messages.append("Locked host")
        elif options.unlock:
            self.data["locked"] = False
            self.data["lock_reason"] = ""
            self.messages.append("Unlocked host")
        if options.lock and options.lock_reason:
            self.data["lock_reason"] = options.lock_reason
        if options.protection:
            self.data["protection"] = options.protection
            self.messages.append(f'Protection set to "{options.protection}"')
        self.attributes: dict[str, str | None] = {}
        for pair in options.attribute or ():
            match = re.match(self.attribute_regex, pair)
            if not match:
                raise UsageError("Attribute must be in key=value syntax.")
            if match.group("attribute") in self.attributes:
                raise UsageError(f"Multiple values provided for attribute {match.group('attribute')}.")
            self.attributes[match.group("attribute")] = match.group("value")
        self.platform = options.platform
        return options

    def set_acls(self, hosts: list[str], acls: list[str]) -> None:
        """Put the hosts in these ACLs, out of all others except Everyone (id 1)."""
        for host in hosts:
            if host not in self.host_ids:
                continue
            for acl in self.execute_rpc("get_acl_groups", hosts=self.host_ids[host]):
                if acl["name"] not in self.acls and acl["id"] != 1:
                    self.execute_rpc("acl_group_remove_hosts", id=acl["id"], hosts=self.hosts)
        self.check_and_create_items("get_acl_groups", "add_acl_group", self.acls)
        for acl_name in acls:
            self.execute_rpc("acl_group_add_hosts", id=acl_name, hosts=hosts)

    def remove_labels(self, host: str, condition: Any) -> None:
        if host in self.host_ids:
            host_id = self.host_ids[host]
            doomed = [label["id"] for label in self.execute_rpc("get_labels", host=host_id) if condition(label)]
            if doomed:
                self.execute_rpc("host_remove_labels", id=host_id, labels=doomed)

    def set_labels(self, host: str, labels: list[str]) -> None:
        """Give the host exactly these labels (the platform label stays)."""
        self.remove_labels(host, lambda label: label["name"] not in labels and not label["platform"])
        self.check_and_create_items("get_labels", "add_label", labels)
        self.execute_rpc("host_add_labels", id=host, labels=labels)

    def set_platform_label(self, host: str, platform: str) -> None:
        self.remove_labels(host, lambda label: label["platform"])
        self.check_and_create_items("get_labels", "add_label", [platform], platform=True)
        self.execute_rpc("host_add_labels", id=host, labels=[platform])

    def set_attributes(self, host: str) -> None:
        for attribute, value in self.attributes.items():
            self.execute_rpc("set_host_attribute", attribute=attribute, value=value, hostname=host)


class HostMod(HostModCreate):
    """atest host mod [--lock|--unlock --force_modify_locking --platform <arch>
    --labels <labels>|--blist <label_file> --acls <acls>|--alist <acl_file>
    --protection <protection_type> --attribute <attr>=<value> --mlist <mach_file>] <hosts>"""

    usage_action = "mod"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-f", "--force_modify_locking", action="store_true",
                            help="Forcefully lock\\unlock a host")
        parser.add_argument("--remove_acls", action="store_true", help="Remove all active acls.")
        parser.add_argument("--remove_labels", action="store_true", help="Remove all labels.")

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv)
        if options.force_modify_locking:
            self.data["force_modify_locking"] = True
        self.remove_acls = options.remove_acls
        self.remove_all_labels = options.remove_labels
        return options

    def execute(self) -> list[str]:
        for host in self.execute_rpc("get_hosts", hostname__in=self.hosts):
            self.host_ids[host["hostname"]] = host["id"]
        successes = []
        for host in self.hosts:
            if host not in self.host_ids:
                self.failure(f"Cannot modify non-existant host {host}.", item=host,
                             what_failed="Failed to modify")
                continue
            try:
                if self.data:
                    self.execute_rpc("modify_host", item=host, id=host, **self.data)
                if self.attributes:
                    self.set_attributes(host)
                if self.labels or self.remove_all_labels:
                    self.set_labels(host, self.labels)
                if self.platform:
                    self.set_platform_label(host, self.platform)
                successes.append(host)
            except CliError:
                pass  # already recorded
        if self.acls or self.remove_acls:
            try:
                self.set_acls(self.hosts, self.acls)
            except CliError:
                pass
        return successes

    def output(self, hosts: list[str]) -> None:
        for message in self.messages:
            self.print_wrapped(message, hosts)


class HostCreate(HostModCreate):
    """atest host create [--lock|--unlock --platform <arch>
    --labels <labels>|--blist <label_file> --acls <acls>|--alist <acl_file>
    --protection <protection_type> --attribute <attr>=<value> --mlist <mach_file>] <hosts>"""

    usage_action = "create"

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv)
        self.locked = options.lock
        if "serials" in self.attributes and len(self.hosts) > 1:
            raise UsageError("Can not specify serials with multiple hosts.")
        return options

    def add_one_host(self, host: str) -> None:
        # Always add the hosts locked, so the scheduler does not pick one up before it is ACL'ed.
        self.data["locked"] = True
        if not self.locked:
            self.data["lock_reason"] = "Forced lock on device creation"
        self.execute_rpc("add_host", hostname=host, status="Ready", **self.data)
        if self.labels:
            self.set_labels(host, list(self.labels))
        if self.platform:
            self.set_platform_label(host, self.platform)
        if self.attributes:
            self.set_attributes(host)

    def execute(self) -> list[str]:
        successful = []
        for host in self.hosts:
            try:
                self.add_one_host(host)
                successful.append(host)
            except CliError:
                pass
        if successful:
            try:
                self.set_acls(successful, self.acls)
            except CliError:
                pass
            if not self.locked:
                for host in list(successful):
                    try:
                        self.execute_rpc("modify_host", id=host, locked=False, lock_reason="")
                    except CliError:
                        pass
        return successful

    def output(self, hosts: list[str]) -> None:
        self.print_wrapped("Added host", hosts)


class HostDelete(DeleteAction, HostCommand):
    """atest host delete [--mlist <mach_file>] <hosts>"""


TOPIC_USAGE = "atest host [create|delete|list|stat|mod|jobs] [options] <hosts>"
ACTIONS: dict[str, type[Command]] = {
    "list": HostList, "stat": HostStat, "jobs": HostJobs,
    "create": HostCreate, "mod": HostMod, "delete": HostDelete,
}
