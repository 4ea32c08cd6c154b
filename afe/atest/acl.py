"""``atest acl [create|delete|list|add|remove]``: ACL groups, their users and hosts."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .common import AddAction, Command, CreateAction, DeleteAction, ItemSource, ListAction, RemoveAction, UsageError


class AclCommand(Command):
    topic = "acl_group"
    msg_topic = "ACL"
    msg_items = "<acls>"
    acls: list[str]
    has_alist = True

    def __init__(self) -> None:
        super().__init__()
        self.topic_source = ItemSource("acls", filename="alist" if self.has_alist else "", leftover=True)

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        if self.has_alist:
            parser.add_argument("-A", "--alist", metavar="ACL_FLIST", default=None, help="File listing the ACLs")

    def get_items(self) -> list[str]:
        return self.acls


class AclList(ListAction, AclCommand):
    """atest acl list [--verbose] [--user <users>|--mach <machine>|--alist <file>] [<acls>]"""

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-u", "--user", metavar="USER", help="List ACLs containing USER")
        parser.add_argument("-m", "--machine", metavar="MACHINE", help="List ACLs containing MACHINE")

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv, [ItemSource("users", inline="user"), ItemSource("hosts", inline="machine")])
        users, hosts, acls = self.users, self.hosts, self.acls
        if (users and (hosts or acls)) or (hosts and acls):
            raise UsageError("Only specify one of --user,--machine or ACL")
        if len(users) > 1:
            raise UsageError("Only specify one <user>")
        if len(hosts) > 1:
            raise UsageError("Only specify one <machine>")
        self.user = users[0] if users else None
        self.host = hosts[0] if hosts else None
        return options

    def execute(self) -> list[dict[str, Any]]:
        filters: dict[str, Any] = {}
        check_results: dict[str, str | None] = {}
        if self.acls:
            filters["name__in"] = self.acls
            check_results["name__in"] = "name"
        if self.user:
            filters["users__login"] = self.user
        if self.host:
            filters["hosts__hostname"] = self.host
        return self.list_items("get_acl_groups", filters, check_results)

    def output(self, results: list[dict[str, Any]]) -> None:
        # An ACL asked for by name always shows its members.
        sublist_keys = ("hosts", "users") if (self.acls or self.verbose) else ()
        self.print_table(results, ("name", "description"), sublist_keys)


class AclCreate(CreateAction, AclCommand):
    """atest acl create <acl> --desc <description>"""

    has_alist = False

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-d", "--desc", help="Creates the ACL with the DESCRIPTION")

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv)
        if not options.desc:
            raise UsageError("Must specify a description to create an ACL.")
        self.data["description"] = options.desc
        if len(self.acls) > 1:
            raise UsageError("Can only create one ACL at a time")
        return options


class AclDelete(DeleteAction, AclCommand):
    """atest acl delete [<acls> | --alist <file>]"""


class AclAddOrRemove(AclCommand):
    usage_words: tuple[str, str]

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        words = self.usage_words
        lower = tuple(word.lower() for word in words)
        parser.add_argument("-u", "--user", metavar="USER", help="%s USER(s) %s the ACL" % words)
        parser.add_argument("-U", "--ulist", metavar="USER_FLIST", help="File containing users to %s %s the ACL" % lower)
        parser.add_argument("-m", "--machine", metavar="MACHINE", help="%s MACHINE(s) %s the ACL" % words)
        parser.add_argument("-M", "--mlist", metavar="MACHINE_FLIST",
                            help="File containing machines to %s %s the ACL" % lower)

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv, [ItemSource("users", inline="user", filename="ulist"),
                                       ItemSource("hosts", inline="machine", filename="mlist")],
                                req_items="acls")
        if not self.users and not self.hosts:
            raise UsageError("Specify at least one USER or MACHINE")
        return options


class AclAdd(AddAction, AclAddOrRemove):
    """atest acl add <acl> --user <user>|--machine <machine>|--mlist <FILE>"""


class AclRemove(RemoveAction, AclAddOrRemove):
    """atest acl remove <acls> --user <user>|--machine <machine>|--mlist <FILE>"""


TOPIC_USAGE = "atest acl [create|delete|list|add|remove] [options] <acls>"
ACTIONS: dict[str, type[Command]] = {
    "list": AclList, "create": AclCreate, "delete": AclDelete, "add": AclAdd, "remove": AclRemove,
}
