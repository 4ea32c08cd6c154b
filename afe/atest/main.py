"""``atest <topic> <action> [options] [items]``: dispatch to the topic's action and set the exit status.

Exit status: 0 when everything asked for was done; 1 when anything failed
(an RPC error, an unknown item, a server that cannot be reached, a prompt
not confirmed); 2 for a bad command line.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType

from . import acl, host, job, label, user
from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError, ServerUnreachable, UsageError, print_unexpected

TOPICS: dict[str, ModuleType] = {"acl": acl, "host": host, "job": job, "label": label, "user": user}
MAIN_USAGE = "atest [acl|host|job|label|user] [action] [options]"
HELP_WORDS = ("-h", "--help", "help")


def _usage_error(message: str, usage: str) -> int:
    print(f"\n{message}\n\nusage:\n{usage}\n", file=sys.stderr)
    return EXIT_USAGE


def _topic_help(module: ModuleType) -> str:
    lines = [f"usage: {module.TOPIC_USAGE}", "", "actions:"]
    for name, action in module.ACTIONS.items():
        summary = (action.__doc__ or "").strip().splitlines()[0] if action.__doc__ else ""
        lines.append(f"  {name:8s} {summary}")
    lines.append("")
    lines.append(f"'atest {module.__name__.rsplit('.', 1)[-1]} <action> --help' lists the options of an action.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        return _usage_error("No topic argument", MAIN_USAGE)
    topic = args.pop(0)
    if topic in HELP_WORDS:
        print(f"usage: {MAIN_USAGE}\n\ntopics: {', '.join(TOPICS)}\n"
              "'atest <topic> help' lists the actions of a topic.")
        return EXIT_OK
    module = TOPICS.get(topic)
    if module is None:
        return _usage_error(f"Invalid topic {topic}", MAIN_USAGE)
    if not args:
        return _usage_error("No action argument", module.TOPIC_USAGE)
    action = args.pop(0)
    if action in HELP_WORDS:
        print(_topic_help(module))
        return EXIT_OK
    if hasattr(module, "backward_compatibility"):
        action = module.backward_compatibility(action, args)
    action_class = module.ACTIONS.get(action)
    if action_class is None:
        return _usage_error(f"Invalid action {action}", module.TOPIC_USAGE)

    command = action_class()
    try:
        command.parse(args)
    except UsageError as err:
        return _usage_error(str(err), command.usage())
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else EXIT_OK

    try:
        try:
            results = command.execute()
        except CliError:
            pass  # recorded by failure(), printed below
        else:
            command.output(results)
    except UsageError as err:
        return _usage_error(str(err), command.usage())
    except ServerUnreachable as err:
        command.show_all_failures()
        print(err, file=sys.stderr)
        return EXIT_FAILURE
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_FAILURE
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as err:  # noqa: BLE001 - anything else is a bug or a surprising answer
        print_unexpected(err, sys.stderr)
        command.show_all_failures()
        return EXIT_FAILURE
    return command.show_all_failures()
