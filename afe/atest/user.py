"""``atest user list``."""
from __future__ import annotations

import argparse
from typing import Any

from .common import Command, ItemSource, ListAction


class UserList(ListAction):
    """atest user list <user>|--ulist <file> [--acl <ACL>|--access_level <n>]"""

    topic = msg_topic = "user"
    msg_items = "<users>"
    users: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.topic_source = ItemSource("users", filename="ulist", leftover=True)

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-U", "--ulist", metavar="USER_FLIST", default=None, help="File listing the users")
        parser.add_argument("-a", "--acl", help="Only list users within this ACL")
        parser.add_argument("-l", "--access_level", help="Only list users at this access level")

    def execute(self) -> list[dict[str, Any]]:
        options = self.options
        filters: dict[str, Any] = {}
        check_results: dict[str, str | None] = {}
        if options.acl:
            filters["aclgroup__name__in"] = [options.acl]
        if options.access_level:
            filters["access_level__in"] = [options.access_level]
        if self.users:
            filters["login__in"] = self.users
            check_results["login__in"] = "login"
        return self.list_items("get_users", filters, check_results)

    def output(self, results: list[dict[str, Any]]) -> None:
        self.print_table(results, ["id", "login", "access_level"] if self.verbose else ["login"])


TOPIC_USAGE = "atest user list [options] <users>"
ACTIONS: dict[str, type[Command]] = {"list": UserList}
