"""autoserv's command line (spec §5.1) → ``Options``.

Flags the scheduler passes but this autoserv does not implement
(``--verify_job_repo_url``, ``--parent_job_id N``, ``--require-ssp``,
``--test_source_build X``, …) are accepted and listed in ``Options.ignored``;
so are options nobody declared (``--anything`` or ``--anything=value``). A
command line that cannot be understood raises ``UsageError`` (exit status 2).

The control file is the argument of ``-n`` (in Autotest ``-n`` was a flag and
the control file the trailing positional argument — both spellings work).

As with Autotest's optparse, the word after an option that takes a value is
its value even when it starts with ``-`` (``-l -smoke`` is the job name
``-smoke``): ``normalize_argv`` rewrites such pairs as ``--option=value``
before argparse sees them. For ``-n``, whose value is optional, that is done
only when the next word is not one of autoserv's options.
"""
from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

#: Host protection levels, by value (mirrors ``afe.models.Protection``).
PROTECTION_LEVELS = (
    "NO_PROTECTION",
    "REPAIR_SOFTWARE_ONLY",
    "REPAIR_FILESYSTEM_ONLY",
    "DO_NOT_REPAIR",
    "DO_NOT_VERIFY",
)

#: Host actions (one per run) and the flags that ask for them.
ACTIONS = {
    "verify": ("-v", "--verify"),
    "cleanup": ("--cleanup",),
    "reset": ("--reset",),
    "repair": ("-R", "--repair"),
    "provision": ("--provision",),
    "collect_crashinfo": ("--collect-crashinfo",),
}

#: Accepted for compatibility, not implemented: flag → takes a value.
IGNORED_FLAGS = {
    "--verify_job_repo_url": False,
    "--parent_job_id": True,
    "--require-ssp": False,
    "--test_source_build": True,
    "--ssp_base_image_name": True,
    "--no_collect_crashinfo": False,
    "--disable_sysinfo": False,
    "--ssh-user": True,
    "--ssh-port": True,
    "--ssh-pass": True,
    "--ssh-verbosity": True,
    "--ssh-options": True,
    "--install-in-tmpdir": False,
    "--host_attributes": True,
    "--image": True,
    "--control-filename": True,
    "--no_use_packaging": False,
    "--warn-no-ssh": False,
}


class UsageError(Exception):
    """The command line is malformed; the message says how."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@dataclass(frozen=True)
class Options:
    """One autoserv run, as the command line asks for it.

    ``action`` is ``None`` for a job (run ``control_path``) or one of ``ACTIONS``.
    ``control_type`` is ``"server"`` or ``"client"``. ``ignored`` lists the
    flags accepted but not implemented, for the debug log.
    """

    results_dir: Path
    write_pidfile: bool
    pidfile_label: str
    machines: tuple[str, ...]
    user: str | None
    label: str | None
    control_type: str
    control_path: Path | None
    control_args: tuple[str, ...]
    execution_tag: str | None
    action: str | None
    host_protection: str | None
    job_labels: tuple[str, ...]
    use_existing_results: bool
    verbose: bool
    lab: str | None
    ignored: tuple[str, ...]

    @property
    def pidfile_name(self) -> str:
        """``.<label>_execute``: ``.autoserv_execute`` unless ``--pidfile-label`` says otherwise."""
        return pidfile_name(self.pidfile_label)

    @property
    def pidfile_path(self) -> Path:
        return self.results_dir / self.pidfile_name


def pidfile_name(label: str) -> str:
    return f".{label}_execute"


def _protection(value: str) -> str:
    name = value.strip().upper()
    if name.isdigit() and int(name) < len(PROTECTION_LEVELS):
        return PROTECTION_LEVELS[int(name)]
    if name not in PROTECTION_LEVELS:
        raise argparse.ArgumentTypeError(
            f"unknown host protection {value!r} (choose from {', '.join(PROTECTION_LEVELS)})"
        )
    return name


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser (also used to print usage)."""
    parser = _Parser(
        prog="autoserv",
        description="Run a job's control file, or one host action, and record the results.",
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("-p", "--write-pidfile", action="store_true", help="write <results>/.<label>_execute")
    add("--pidfile-label", default="autoserv", help="pidfile name .<label>_execute (default autoserv)")
    add("-r", "--results", dest="results", metavar="DIR", help="results directory (required)")
    add("-m", "--machines", type=_comma_list, default=(), metavar="HOST[,HOST...]",
        help="hosts, each [user@]hostname[:port]")
    add("-u", "--user", help="the job's owner")
    add("-l", "--label", help="the job's name")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("-c", "--client", action="store_true", help="the control file runs on each host")
    kind.add_argument("-s", "--server", action="store_true", help="the control file runs here (default)")
    add("-P", "--execution-tag", dest="execution_tag", metavar="TAG", help="the job's results tag")
    add("-n", dest="control_path", nargs="?", metavar="CONTROL", help="the control file to run")
    add("-a", "--args", dest="control_args", default="", metavar="ARGS",
        help="arguments for the control file (shell-quoted string)")
    add("--verbose", action="store_true", help="log debug messages to stderr too")
    add("--lab", metavar="BOOL", help="accepted for compatibility")
    actions = parser.add_mutually_exclusive_group()
    for action, flags in ACTIONS.items():
        actions.add_argument(*flags, dest="action", action="store_const", const=action)
    add("--host-protection", type=_protection, metavar="LEVEL",
        help=f"repair protection: {', '.join(PROTECTION_LEVELS)}")
    add("--job-labels", type=_comma_list, default=(), metavar="L1,L2",
        help="the job's dependency labels (provision: the labels to install)")
    add("--use-existing-results", action="store_true", help="the results directory already exists")
    for flag, takes_value in IGNORED_FLAGS.items():
        if takes_value:
            add(flag, dest=_dest(flag), metavar="X", help=argparse.SUPPRESS)
        else:
            add(flag, dest=_dest(flag), action="store_true", help=argparse.SUPPRESS)
    add("positional", nargs="*", help="the control file (if -n does not name it)")
    return parser


def _dest(flag: str) -> str:
    return "ignored_" + flag.lstrip("-").replace("-", "_")


def _value_options(parser: argparse.ArgumentParser) -> tuple[dict[str, str], set[str]]:
    """({option string: its ``=`` form} for options that take a value, every option string)."""
    takes_value: dict[str, str] = {}
    every: set[str] = set()
    for action in parser._actions:  # noqa: SLF001 (argparse has no public list)
        every.update(action.option_strings)
        if not action.option_strings or action.nargs == 0:
            continue
        long = next((o for o in action.option_strings if o.startswith("--")), None)
        for option in action.option_strings:
            # "--label=" for -l and --label; "-n" (no long form) takes its value attached: "-n-x"
            takes_value[option] = f"{long}=" if long else option
    return takes_value, every


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--opt VALUE`` / ``-o VALUE`` pairs whose value starts with ``-`` joined as ``--opt=VALUE``.

    argparse would take such a value for an option and report "expected one
    argument"; optparse, which Autotest used, took it as the value.
    """
    takes_value, every = _value_options(build_parser())
    optional = {"-n"}  # nargs="?": the next word is its value only if it is not an option
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        following = argv[i + 1] if i + 1 < len(argv) else None
        if arg in takes_value and following is not None and following.startswith("-") and following != "-":
            known = following in every or following.split("=", 1)[0] in every
            if arg not in optional or not (known or following.startswith("--")):
                out.append(takes_value[arg] + following)
                i += 2
                continue
        if arg in takes_value and following is not None and arg not in optional:
            out += [arg, following]  # a value is never taken for an option
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def parse_args(argv: Sequence[str]) -> Options:
    """Parse autoserv's command line; raises ``UsageError`` when it is malformed."""
    argv = normalize_argv(argv)
    ns, unknown = build_parser().parse_known_args(argv)
    leftovers = list(ns.positional) + [arg for arg in unknown if not arg.startswith("-")]
    unknown_flags = [arg for arg in unknown if arg.startswith("-")]
    control = ns.control_path or _last_in_argv(argv, leftovers)

    ignored = [
        flag if not takes_value else f"{flag} {getattr(ns, _dest(flag))}"
        for flag, takes_value in IGNORED_FLAGS.items()
        if getattr(ns, _dest(flag)) not in (None, False)
    ]
    ignored += [f"{flag} (unknown)" for flag in unknown_flags]
    ignored += [f"{arg} (extra argument)" for arg in leftovers if arg != control]

    if not ns.results:
        raise UsageError("the results directory is required: -r DIR")
    if not ns.pidfile_label or "/" in ns.pidfile_label:
        raise UsageError(f"bad --pidfile-label {ns.pidfile_label!r}")
    if ns.action and ns.action != "collect_crashinfo" and not ns.machines:
        raise UsageError(f"--{ns.action.replace('_', '-')} needs the host: -m HOST")
    if ns.action is None and control is None:
        raise UsageError("nothing to do: give a control file (-n CONTROL) or a host action "
                         "(-v, --cleanup, --reset, -R, --provision, --collect-crashinfo)")
    if ns.action is None and ns.client and not ns.machines:
        raise UsageError("a client control file (-c) needs hosts to run on: -m HOST[,HOST...]")
    if ns.host_protection and ns.action != "repair":
        ignored.append(f"--host-protection {ns.host_protection} (only used by -R)")
    try:
        control_args = tuple(shlex.split(ns.control_args))
    except ValueError as exc:
        raise UsageError(f"bad --args {ns.control_args!r}: {exc}") from None

    return Options(
        results_dir=Path(ns.results).absolute(),
        write_pidfile=ns.write_pidfile,
        pidfile_label=ns.pidfile_label,
        machines=tuple(ns.machines),
        user=ns.user,
        label=ns.label,
        control_type="client" if ns.client else "server",
        control_path=Path(control).absolute() if control and ns.action is None else None,
        control_args=control_args,
        execution_tag=ns.execution_tag,
        action=ns.action,
        host_protection=ns.host_protection,
        job_labels=tuple(ns.job_labels),
        use_existing_results=ns.use_existing_results,
        verbose=ns.verbose,
        lab=ns.lab,
        ignored=tuple(ignored),
    )


def _last_in_argv(argv: list[str], candidates: list[str]) -> str | None:
    """The candidate that appears last on the command line."""
    for arg in reversed(argv):
        if arg in candidates:
            return arg
    return None


def salvage_pidfile(argv: Sequence[str]) -> Path | None:
    """Where a malformed command line asked for its pidfile, if it did (``-p`` and ``-r``).

    Lets autoserv record a usage error in the pidfile so the scheduler does not
    wait for a process that never reports.
    """
    argv = normalize_argv(argv)
    if "-p" not in argv and "--write-pidfile" not in argv:
        return None
    results = label = None
    for i, arg in enumerate(argv):
        following = argv[i + 1] if i + 1 < len(argv) else None
        if arg in ("-r", "--results") and following and not following.startswith("-"):
            results = following
        elif arg.startswith("--results="):
            results = arg.split("=", 1)[1]
        elif arg.startswith("-r") and len(arg) > 2 and not arg.startswith("--"):
            results = arg[2:]
        elif arg == "--pidfile-label" and following:
            label = following
        elif arg.startswith("--pidfile-label="):
            label = arg.split("=", 1)[1]
    if not results:
        return None
    if not label or "/" in label:
        label = "autoserv"
    return Path(results).absolute() / pidfile_name(label)
