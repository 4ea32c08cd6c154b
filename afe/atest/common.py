"""What every atest action shares: option parsing, RPC calls, failure reporting and printing.

Output formats are atest's own (``cli/topic_common.py``): justified tables,
``--parse`` lines of ``Key=value`` fields joined by ``|`` (``--parse-delim``),
wrapped result lists (``Added hosts: \\n\\th1, h2``) and the failures gathered
on stderr at the end (``Operation add_host failed:\\n    <name>: <message>``).
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import sys
import textwrap
import traceback
import urllib.error
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

from . import rpc

# Maps the AFE keys to printable names.
KEYS_TO_NAMES_EN = {
    "hostname": "Host",
    "platform": "Platform",
    "status": "Status",
    "locked": "Locked",
    "locked_by": "Locked by",
    "lock_time": "Locked time",
    "lock_reason": "Lock Reason",
    "labels": "Labels",
    "description": "Description",
    "hosts": "Hosts",
    "users": "Users",
    "id": "Id",
    "name": "Name",
    "invalid": "Valid",
    "login": "Login",
    "access_level": "Access Level",
    "job_id": "Job Id",
    "job_owner": "Job Owner",
    "job_name": "Job Name",
    "test_type": "Test Type",
    "test_class": "Test Class",
    "path": "Path",
    "owner": "Owner",
    "status_counts": "Status Counts",
    "hosts_status": "Host Status",
    "hosts_selected_status": "Hosts filtered by Status",
    "priority": "Priority",
    "control_type": "Control Type",
    "created_on": "Created On",
    "control_file": "Control File",
    "only_if_needed": "Use only if needed",
    "protection": "Protection",
    "run_verify": "Run verify",
    "reboot_before": "Pre-job reboot",
    "reboot_after": "Post-job reboot",
    "experimental": "Experimental",
    "synch_count": "Sync Count",
    "max_number_of_machines": "Max. hosts to use",
    "parse_failed_repair": "Include failed repair results",
    "shard": "Shard",
}

# In a failure message, the tag that replaces the item it was about.
FAIL_TAG = "<XYZ>"

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _convert_platform(field: Any) -> str:
    if field is None:
        return ""
    if isinstance(field, int):  # 0/1 (or a bool) for False/True
        return str(bool(field))
    return str(field)  # a platform name


KEYS_CONVERT: dict[str, Callable[[Any], str]] = {
    "locked": lambda value: str(bool(value)),
    "invalid": lambda flag: str(not flag),
    "only_if_needed": lambda value: str(bool(value)),
    "platform": _convert_platform,
    "labels": lambda labels: ", ".join(labels or ()),
}


def convert_value(key: str, value: Any) -> str:
    return KEYS_CONVERT.get(key, str)(value)


def get_item_key(item: dict[str, Any], key: str) -> Any:
    """``item[key]``; ``a.b`` looks into nested dicts; a missing key reads as None."""
    if key in item:
        return item[key]
    nested: Any = item
    for subkey in key.split("."):
        if not isinstance(nested, dict) or subkey not in nested:
            return None
        nested = nested[subkey]
    return nested


class CliError(Exception):
    """An action cannot go on; the reason was already recorded by ``failure()``."""


class UsageError(Exception):
    """The command line is wrong: printed with the usage, exit status 2."""


class ServerUnreachable(Exception):
    """The server name or address does not answer (exit status 1)."""


def split_items(text: str, split_spaces: bool = True) -> list[str]:
    """``'a, b\\,c d'`` -> ``['a', 'b,c', 'd']``: commas (and blanks) separate, ``\\,`` escapes a comma."""
    text = text.replace("\\\\", "\0")
    pattern = r"(?<!\\),|\s" if split_spaces else r"(?<!\\),"
    return [item.strip().replace("\0", "\\").replace("\\,", ",")
            for item in re.split(pattern, text) if item.strip()]


@dataclass(frozen=True)
class ItemSource:
    """Where one list attribute's items come from (atest's ``item_parse_info``).

    ``inline``: an option holding comma/blank separated items (``-m h1,h2``);
    ``filename``: an option naming a file of items (``-M hosts.txt``);
    ``leftover``: the positional arguments (comma separated, blanks kept).
    """

    attribute: str
    inline: str = ""
    filename: str = ""
    leftover: bool = False

    def values(self, options: argparse.Namespace, leftover: list[str]) -> tuple[list[str], list[str]]:
        result: dict[str, None] = {}  # ordered set: the original's order was a set's
        if self.leftover:
            for arg in leftover:
                result.update(dict.fromkeys(split_items(arg, split_spaces=False)))
            leftover = []
        inline = getattr(options, self.inline, None) if self.inline else None
        if isinstance(inline, str):
            result.update(dict.fromkeys(split_items(inline)))
        filename = getattr(options, self.filename, None) if self.filename else None
        if filename:
            try:
                with open(filename) as handle:
                    content = [item for line in handle for item in split_items(line)]
            except OSError:
                raise UsageError(f"Could not open file {filename}") from None
            if not content:
                raise UsageError(f"Empty file {filename}")
            result.update(dict.fromkeys(content))
        return list(result), leftover


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class Command:
    """One ``atest <topic> <action>``: ``parse(argv)``, ``execute()``, ``output(results)``.

    Subclasses add options in ``add_options`` and read them in ``parse``.
    """

    topic: ClassVar[str] = ""        # RPC topic: host, label, acl_group, job, user
    msg_topic: ClassVar[str] = ""    # printable topic: host, label, ACL, job, user
    usage_action: ClassVar[str] = ""
    msg_items: ClassVar[str] = ""

    def __init__(self) -> None:
        self.afe: rpc.AfeComm | None = None
        self.failed: dict[str, dict[str, list[str | None]]] = {}
        self.data: dict[str, Any] = {}
        self.debug = False
        self.kill_on_failure = False
        self.parse_output = False
        self.parse_delim = "|"
        self.verbose = False
        self.no_confirmation = False
        self.web_server: str | None = None
        self.topic_source = ItemSource("not_used")
        self.stdout = sys.stdout
        self.stderr = sys.stderr
        self.parser = ArgumentParser(prog="atest", usage=self.usage(), add_help=True)
        self.add_global_options(self.parser)
        self.add_options(self.parser)
        self.parser.add_argument("leftover", nargs="*", help=argparse.SUPPRESS)

    # -- command line --------------------------------------------------------------

    def usage(self) -> str:
        return f"atest {self.msg_topic.lower()} {self.usage_action} [options] {self.msg_items}".rstrip()

    @staticmethod
    def add_global_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-g", "--debug", action="store_true", default=False,
                            help="Print debugging information")
        parser.add_argument("--kill-on-failure", action="store_true", default=False,
                            help="Stop at the first failure")
        parser.add_argument("--parse", action="store_true", default=False,
                            help="Print the output using | separated key=value fields")
        parser.add_argument("--parse-delim", default="|",
                            help="Delimiter to use to separate the key=value fields")
        parser.add_argument("--no-confirmation", action="store_true", default=False,
                            help="Skip all confirmation prompts")
        parser.add_argument("-v", "--verbose", action="store_true", default=False)
        parser.add_argument("-w", "--web", dest="web_server", default=None,
                            help="Specify the autotest server to talk to "
                                 "(default: $AUTOTEST_WEB, else localhost:8000)")
        parser.add_argument("--log-level", dest="log_level", choices=LOG_LEVELS, default="ERROR",
                            help="Accepted for compatibility; atest logs nothing")

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        """Topic and action options (override, calling super)."""

    def parse(self, argv: Sequence[str], sources: Iterable[ItemSource] = (),
              req_items: str | None = None) -> argparse.Namespace:
        options = self.parser.parse_intermixed_args(list(argv))
        self.options = options
        self.debug = options.debug
        self.kill_on_failure = options.kill_on_failure
        self.parse_output = options.parse
        self.parse_delim = options.parse_delim
        self.verbose = options.verbose
        self.no_confirmation = options.no_confirmation
        self.web_server = options.web_server
        leftover = list(options.leftover)
        for source in [*sources, self.topic_source]:
            values, leftover = source.values(options, leftover)
            setattr(self, source.attribute, values)
        if leftover:
            raise UsageError(f"unrecognized arguments: {' '.join(leftover)}")
        if req_items and not getattr(self, req_items, None):
            raise UsageError(f"{self.msg_topic} {self.usage_action} requires at least one {self.msg_topic}")
        self.afe = rpc.AfeComm(self.web_server)
        return options

    def execute(self) -> Any:
        raise NotImplementedError

    def output(self, results: Any) -> None:
        pass

    def get_items(self) -> list[str]:
        return []

    # -- talking to the server -------------------------------------------------------

    def execute_rpc(self, op: str, item: str = "", **data: Any) -> Any:
        """Call ``op``; a failure is recorded (or fatal with --kill-on-failure) and raises CliError."""
        assert self.afe is not None, "parse() first"
        attempts = 2  # a time-out is retried once
        while True:
            try:
                return self.afe.run(op, **data)
            except urllib.error.HTTPError as err:
                parts = [str(err)]
                if self.debug:
                    parts.append(err.read().decode("utf-8", "replace"))
                self.failure("\n\n".join(parts), item=item, what_failed="Error received from web server")
                raise CliError("Error from web server") from None
            except (urllib.error.URLError, TimeoutError) as err:
                reason = getattr(err, "reason", err)
                if "timed out" not in str(reason):
                    raise ServerUnreachable(f"Invalid server name {self.afe.web_server}: {err}") from None
                attempts -= 1
                if self.debug:
                    print(f"retrying: {data!r} {attempts}", file=self.stderr)
                if attempts == 0:
                    message = f"{op} timed out for {item}" if item else f"{op} timed out"
                    self.failure(message, item=item, what_failed="Timed-out contacting the Autotest server")
                    raise CliError("Timed-out contacting the Autotest server") from None
            except OSError as err:  # refused, reset, unreachable...
                raise ServerUnreachable(f"Invalid server name {self.afe.web_server}: {err}") from None
            except (rpc.JSONRPCException, http.client.HTTPException) as err:
                self.failure(err, item=item, what_failed=f"Operation {op} failed")
                raise CliError(str(err)) from None

    def check_and_create_items(self, op_get: str, op_create: str, items: Iterable[str],
                               **data_create: Any) -> None:
        """Create the items that do not exist yet (``get_labels(name=)`` then ``add_label(name=)``)."""
        for item in items:
            if len(self.execute_rpc(op_get, name=item)) == 0:
                try:
                    self.execute_rpc(op_create, **{**data_create, "name": item})
                except CliError:
                    continue

    @staticmethod
    def parse_json_exception(full_error: Any) -> list[str]:
        """The bad items of an ``Name: text: a, b`` error (exactly two colons), else []."""
        errmsg = str(full_error).split("Traceback")[0].rstrip("\n")
        parts = errmsg.split(":")
        if len(parts) != 3:
            return []
        return [item.strip() for item in parts[2].split(",") if item.strip()]

    # -- failures ----------------------------------------------------------------------

    def failure(self, full_error: Any, item: str | None = None, what_failed: str = "",
                fatal: bool = False) -> None:
        """Record a failure; the same message for several items is printed once, at the end."""
        errmsg = str(full_error) if self.debug else str(full_error).split("Traceback")[0].rstrip("\n")
        if self.kill_on_failure or fatal:
            print(f"{what_failed}\n    {errmsg}", file=self.stderr)
            raise SystemExit(EXIT_FAILURE)
        if item and item in errmsg:
            errmsg = errmsg.replace(item, FAIL_TAG)
        self.failed.setdefault(what_failed, {}).setdefault(errmsg, [])
        if item not in self.failed[what_failed][errmsg]:
            self.failed[what_failed][errmsg].append(item)

    def generic_error(self, message: str) -> NoReturn:
        """Print the message on stderr and stop with exit status 1."""
        print(message, file=self.stderr)
        raise SystemExit(EXIT_FAILURE)

    def invalid_arg(self, header: str, follow_up: str = "") -> None:
        """A bad item on the command line (``Unknown host(s)``): stderr, and the exit status is 1."""
        twrap = textwrap.TextWrapper(initial_indent="        ", subsequent_indent="       ")
        message = header + twrap.fill(follow_up)
        if self.kill_on_failure:
            self.generic_error(message)
        print(message, file=self.stderr)
        self.failed.setdefault("", {})  # counted as a failure, nothing more to print

    def show_all_failures(self) -> int:
        if not self.failed:
            return EXIT_OK
        for what_failed, errors in self.failed.items():
            if not errors:
                continue
            print(what_failed + ":", file=self.stderr)
            for errmsg, items in errors.items():
                if not items:
                    print(errmsg, file=self.stderr)
                elif items == [""] or items == [None]:
                    print("    " + errmsg, file=self.stderr)
                elif len(items) == 1:
                    if FAIL_TAG in errmsg:
                        errmsg = errmsg.replace(FAIL_TAG, str(items[0]))
                    else:
                        errmsg = f"{errmsg} ({items[0]})"
                    print("    " + errmsg, file=self.stderr)
                else:
                    print("    " + errmsg + " with <XYZ> in:", file=self.stderr)
                    twrap = textwrap.TextWrapper(initial_indent="        ", subsequent_indent="        ")
                    print(twrap.fill(", ".join(sorted(str(i) for i in items))), file=self.stderr)
        return EXIT_FAILURE

    # -- confirmation ------------------------------------------------------------------

    def prompt_confirmation(self, message: str | None = None) -> bool:
        if message:
            self.print(message)
        self.stdout.write("Continue? [y/N] ")
        self.stdout.flush()
        try:
            answer = input().strip().lower()
        except EOFError:
            answer = ""
        if answer == "y":
            return True
        self.print("User did not confirm. Aborting...")
        self.failed.setdefault("", {})  # nothing was done: exit status 1
        return False

    # -- printing ----------------------------------------------------------------------

    def print(self, *args: Any) -> None:
        print(*args, file=self.stdout)

    def print_wrapped(self, msg: str, values: list[str]) -> None:
        """``Added hosts: `` then the sorted values, comma separated and wrapped, tab indented."""
        if not values:
            return
        if len(values) == 1 or msg.endswith("s"):
            self.print(msg + ": ")
        else:
            self.print(msg + "s: ")
        values = sorted(values)
        if "AUTOTEST_CLI_NO_WRAP" in os.environ:
            self.print("\n".join(values))
            return
        twrap = textwrap.TextWrapper(initial_indent="\t", subsequent_indent="\t")
        self.print(twrap.fill(", ".join(values)))

    def _fields(self, item: dict[str, Any], keys: Iterable[str]) -> list[str]:
        """``Key=value`` for each key whose printed value is not empty."""
        fields = []
        for key in keys:
            value = convert_value(key, get_item_key(item, key))
            if value != "":
                fields.append(f"{KEYS_TO_NAMES_EN[key]}={value}")
        return fields

    def print_fields(self, items: list[dict[str, Any]], keys: Sequence[str], title: str | None = None) -> None:
        """One ``Key: value`` line per key (``--parse``: one ``Key=value|...`` line per item)."""
        if self.parse_output:
            for item in items:
                self.print(self.parse_delim.join(self._fields(item, keys)))
            return
        if not items:
            return
        if title:
            self.print(title)
        for item in items:
            for key in keys:
                self.print(f"{KEYS_TO_NAMES_EN[key]}: {convert_value(key, get_item_key(item, key))}")

    @staticmethod
    def _justified_format(items: list[dict[str, Any]], keys: Sequence[str]) -> str:
        widths = {}
        for key in keys[:-1]:  # the last column is not padded
            widths[key] = max(len(KEYS_TO_NAMES_EN[key]),
                              *(len(convert_value(key, get_item_key(item, key))) for item in items))
        widths[keys[-1]] = 0
        return "  ".join(f"%-{widths[key]}s" for key in keys)

    def print_table(self, items: list[dict[str, Any]], keys: Sequence[str],
                    sublist_keys: Sequence[str] = ()) -> None:
        """A justified table; each row's ``sublist_keys`` lists follow it, wrapped."""
        if self.parse_output:
            for item in items:
                fields = self._fields(item, keys)
                for key in sublist_keys:
                    values = get_item_key(item, key) or []
                    if values:
                        fields.append(f"{KEYS_TO_NAMES_EN[key]}={','.join(values)}")
                self.print(self.parse_delim.join(fields))
            return
        if not items:
            return
        fmt = self._justified_format(items, keys)
        self.print(fmt % tuple(KEYS_TO_NAMES_EN[key] for key in keys))
        for item in items:
            self.print(fmt % tuple(convert_value(key, get_item_key(item, key)) for key in keys))
            if sublist_keys:
                for key in sublist_keys:
                    self.print_wrapped(KEYS_TO_NAMES_EN[key], list(get_item_key(item, key) or []))
                self.print("\n")

    def print_by_ids(self, items: list[dict[str, Any]], title: str | None = None,
                     line_before: bool = False) -> None:
        """``title:`` and an Id/Name table (``--parse``: ``title= Id=1|Name=a|Id=2|Name=b``)."""
        if not items:
            return
        if line_before:
            self.print()
        if self.parse_output:
            fields = [field for item in items for field in self._fields(item, ("id", "name"))]
            line = self.parse_delim.join(fields)
            self.print(f"{title}= {line}" if title else line)
            return
        if title:
            self.print(title + ":")
        self.print_table(items, ("id", "name"))

    def print_list(self, items: list[dict[str, Any]], key: str) -> None:
        """The values of ``key``, blank separated (``--parse``: ``Key=a,b``)."""
        if not items:
            return
        values = [str(get_item_key(item, key)) for item in items]
        if self.parse_output:
            self.print(f"{KEYS_TO_NAMES_EN[key]}={','.join(values)}")
        else:
            self.print(" ".join(values))

    def print_dict(self, items: dict[str, Any], title: str | None = None, line_before: bool = False) -> None:
        if not items:
            return
        if line_before:
            self.print()
        self.print(title)
        for key, value in items.items():
            self.print(f"{key} : {value}")


class ListAction(Command):
    """``atest <topic> list``: one ``get_*`` call with Django filters; ``*`` suffixes become __startswith."""

    usage_action = "list"

    def check_for_wildcard(self, filters: dict[str, Any], check_results: dict[str, str | None]) -> None:
        for key, values in list(filters.items()):
            if isinstance(values, str):
                if values.endswith("*"):
                    self._convert_wildcard(key, key + "__startswith", values, filters, check_results)
            elif isinstance(values, list):
                if len(values) == 1:
                    value = values[0]
                    if isinstance(value, str) and value.endswith("*") and key.endswith("__in"):
                        new_key = key.replace("__in", "__startswith", 1)
                        self._convert_wildcard(key, new_key, value, filters, check_results)
                elif any(isinstance(v, str) and v.endswith("*") for v in values):
                    raise UsageError("Cannot mix wilcards and items")

    @staticmethod
    def _convert_wildcard(old_key: str, new_key: str, value: str, filters: dict[str, Any],
                          check_results: dict[str, str | None]) -> None:
        del filters[old_key]
        check_results.pop(old_key, None)
        filters[new_key] = value.rstrip("*")
        check_results[new_key] = None

    def list_items(self, op: str, filters: dict[str, Any] | None = None,
                   check_results: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
        """``op(**filters)``; names asked for but missing are reported as ``Unknown <topic>(s)``."""
        filters = dict(filters or {})
        check_results = dict(check_results or {})
        self.check_for_wildcard(filters, check_results)
        results = self.execute_rpc(op, **filters)
        for dbkey, wanted in filters.items():
            field = check_results.get(dbkey)
            if not field or len(results) >= len(wanted):
                continue
            good = {str(result.get(field)) for result in results}
            missing = [name for name in wanted if name not in good]
            self.invalid_arg(f"Unknown {self.msg_topic}(s): \n", ", ".join(missing))
        return results


class CreateOrDeleteAction(Command):
    """``atest <topic> create|delete <items>``: ``add_<topic>(name=)`` / ``delete_<topic>(id=)`` per item."""

    op_action: ClassVar[str] = ""
    msg_done: ClassVar[str] = ""
    data_item_key = "name"

    def parse(self, argv: Sequence[str], sources: Iterable[ItemSource] = (),
              req_items: str | None = None) -> argparse.Namespace:
        return super().parse(argv, sources, req_items or self.topic_source.attribute)

    def execute(self) -> list[str] | None:
        if self.op_action == "delete" and not self.no_confirmation and not self.prompt_confirmation():
            return None
        op = f"{self.op_action}_{self.topic}"
        handled = []
        for item in self.get_items():
            try:
                self.execute_rpc(op, item=item, **{**self.data, self.data_item_key: item})
                handled.append(item)
            except CliError:
                pass
        return handled

    def output(self, results: list[str] | None) -> None:
        if results:
            self.print_wrapped(f"{self.msg_done} {self.msg_topic}", [f"'{r}'" for r in results])


class CreateAction(CreateOrDeleteAction):
    usage_action = "create"
    op_action = "add"
    msg_done = "Created"


class DeleteAction(CreateOrDeleteAction):
    usage_action = "delete"
    op_action = "delete"
    msg_done = "Deleted"
    data_item_key = "id"


class AddOrRemoveAction(Command):
    """``atest <topic> add|remove <item> -u users -m hosts``: ``<topic>_<add|remove>_<users|hosts>``.

    When the server names bad items (``Name: text: a, b``) the call is retried
    with the others; the first error still counts as a failure.
    """

    op_action: ClassVar[str] = ""
    msg_done: ClassVar[str] = ""
    usage_words: ClassVar[tuple[str, str]] = ("", "")
    add_remove_things: ClassVar[dict[str, str]] = {"users": "user", "hosts": "host"}

    def _add_remove(self, item: str, what: str) -> bool:
        """Add/remove ``self.<what>`` to/from ``item``; False when there is nothing to do."""
        things = list(getattr(self, what, None) or [])
        if not things:
            return False
        op = f"{self.topic}_{self.op_action}_{what}"
        try:
            self.execute_rpc(op, **{"id": item, what: things})
            setattr(self, f"good_{what}", things)
        except CliError as full_error:
            bad = self.parse_json_exception(full_error)
            good = [thing for thing in things if thing not in bad]
            if bad and good:
                self.execute_rpc(op, **{"id": item, what: good})
                setattr(self, f"good_{what}", good)
            else:
                raise
        return True

    def execute(self) -> dict[str, list[str]]:
        oks: dict[str, list[str]] = {}
        for item in self.get_items():
            for what in sorted(self.add_remove_things, reverse=True):  # users before hosts
                try:
                    if self._add_remove(item, what):
                        oks.setdefault(item, []).append(what)
                except CliError:
                    pass
        return {thing: [item for item, whats in oks.items() if thing in whats]
                for thing in self.add_remove_things}

    def output(self, results: dict[str, list[str]]) -> None:
        for thing, single_thing in self.add_remove_things.items():
            things_ok = [f"'{t}'" for t in results.get(thing, [])]
            if things_ok:
                self.print_wrapped(f"{self.msg_done} {self.msg_topic} {', '.join(things_ok)} {single_thing}",
                                   list(getattr(self, f"good_{thing}", [])))


class AddAction(AddOrRemoveAction):
    usage_action = op_action = "add"
    msg_done = "Added to"
    usage_words = ("Add", "to")


class RemoveAction(AddOrRemoveAction):
    usage_action = op_action = "remove"
    msg_done = "Removed from"
    usage_words = ("Remove", "from")


def print_unexpected(err: BaseException, stream: Any) -> None:
    traceback.print_exception(err, file=stream)
    print(f"Unexpected exception: {err}", file=stream)
