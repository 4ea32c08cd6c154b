"""``atest label [create|delete|list|add|remove]``."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .common import AddAction, Command, CreateAction, DeleteAction, ItemSource, ListAction, RemoveAction, UsageError


class LabelCommand(Command):
    topic = msg_topic = "label"
    msg_items = "<labels>"
    labels: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.topic_source = ItemSource("labels", filename="blist", leftover=True)

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-B", "--blist", metavar="LABEL_FLIST", default=None,
                            help="File listing the labels")

    def get_items(self) -> list[str]:
        return self.labels


class LabelList(ListAction, LabelCommand):
    """atest label list [--platform] [--all] [--valid-only] [--machine <machine>] [--blist <file>] [<labels>]"""

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-t", "--platform-only", action="store_true", help="Display only platform labels")
        parser.add_argument("-d", "--valid-only", action="store_true", help="Display only valid labels")
        parser.add_argument("-a", "--all", action="store_true", help="Display both normal & platform labels")
        parser.add_argument("-m", "--machine", metavar="MACHINE", help="List LABELs of MACHINE")

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv, [ItemSource("hosts", inline="machine")])
        if options.all and options.platform_only:
            raise UsageError("Only specify one of --all,--platform")
        if len(self.hosts) > 1:
            raise UsageError(f"Only one machine name allowed. Use 'atest host list {','.join(self.hosts)}' instead.")
        self.all = options.all
        self.platform_only = options.platform_only
        self.valid_only = options.valid_only
        return options

    def execute(self) -> list[dict[str, Any]]:
        filters: dict[str, Any] = {}
        check_results: dict[str, str | None] = {}
        if self.hosts:
            filters["host__hostname__in"] = self.hosts
        if self.labels:
            filters["name__in"] = self.labels
            check_results["name__in"] = "name"
        return self.list_items("get_labels", filters, check_results)

    def output(self, results: list[dict[str, Any]]) -> None:
        if self.valid_only:
            results = [label for label in results if not label.get("invalid")]
        if self.platform_only:
            results = [label for label in results if label.get("platform")]
            keys = ["name", "invalid"]
        elif not self.all:
            results = [label for label in results if not label.get("platform")]
            keys = ["name", "only_if_needed", "invalid"]
        else:
            keys = ["name", "platform", "only_if_needed", "invalid"]
        self.print_table(results, keys)


class LabelCreate(CreateAction, LabelCommand):
    """atest label create <labels>|--blist <file> [--platform] [--only_if_needed]"""

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-t", "--platform", action="store_true", default=False,
                            help="To create this label as a platform")
        parser.add_argument("-o", "--only_if_needed", action="store_true", default=False,
                            help='To mark the label as "only use if needed"')

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv)
        self.data["platform"] = options.platform
        self.data["only_if_needed"] = options.only_if_needed
        return options


class LabelDelete(DeleteAction, LabelCommand):
    """atest label delete <labels>|--blist <file>"""


class LabelAddOrRemove(LabelCommand):
    add_remove_things = {"hosts": "host"}
    usage_words: tuple[str, str]

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        words = self.usage_words
        lower = tuple(word.lower() for word in words)
        parser.add_argument("-m", "--machine", metavar="MACHINE", help="%s MACHINE(s) %s the LABEL" % words)
        parser.add_argument("-M", "--mlist", metavar="MACHINE_FLIST",
                            help="File containing machines to %s %s the LABEL" % lower)

    def parse(self, argv: Sequence[str], *args: Any, **kwargs: Any) -> argparse.Namespace:
        options = super().parse(argv, [ItemSource("hosts", inline="machine", filename="mlist")],
                                req_items="labels")
        if not self.hosts:
            raise UsageError(f"{self.msg_topic} {self.usage_action} requires at least one host")
        return options


class LabelAdd(AddAction, LabelAddOrRemove):
    """atest label add <labels>|--blist <file> --machine <machine>|--mlist <file>"""


class LabelRemove(RemoveAction, LabelAddOrRemove):
    """atest label remove <labels>|--blist <file> --machine <machine>|--mlist <file>"""


TOPIC_USAGE = "atest label [create|delete|list|add|remove] [options] <labels>"
ACTIONS: dict[str, type[Command]] = {
    "list": LabelList, "create": LabelCreate, "delete": LabelDelete, "add": LabelAdd, "remove": LabelRemove,
}
