"""``bin/parse``: the parse step's executable (spec scheduler-behaviour.md §5.1).

The scheduler runs::

    parse --detach --write-pidfile --record-duration --suite-report -l 2 -r -o <abs results dir>

Exit status: 0 when every job row could be written (also when the status log
was truncated or garbled: what could not be parsed is logged and recorded in
the job's keyvals), 1 when a directory cannot be parsed (missing, nothing
identifies a job, database error), 2 for a usage error.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from .pidfile import PIDFILE_NAME, ParserPidfile

log = logging.getLogger("drones.parse")


def _level(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parse", allow_abbrev=False,
        description="Parse a job's results directory (status.log, keyvals) into the TKO tables.",
    )
    parser.add_argument("--detach", action="store_true",
                        help="accepted and ignored: the parser never forks (the drone already runs it in "
                             "the background)")
    parser.add_argument("--write-pidfile", action="store_true",
                        help=f"write <dir>/{PIDFILE_NAME}: the pid at start, the wait status and 0 at exit")
    parser.add_argument("--record-duration", action="store_true", help="log how long each parse took")
    parser.add_argument("--suite-report", action="store_true", help="accepted; no suite report is made")
    parser.add_argument("-l", dest="level", type=_level, default=1, metavar="LEVEL",
                        help="how many trailing path components form the job tag (default 1)")
    parser.add_argument("-r", dest="reparse", action="store_true",
                        help="reparse: replace the rows of a job that was parsed before (without -r it is "
                             "left alone)")
    parser.add_argument("-o", dest="one", action="store_true",
                        help="DIR is one job's results directory (without -o, each subdirectory of DIR is)")
    parser.add_argument("results_dir", metavar="DIR")
    return parser


def _job_dirs(top: Path, one: bool) -> list[Path]:
    if one or not top.is_dir():
        return [top]
    return sorted(p for p in top.iterdir() if p.is_dir() and ((p / "status.log").exists() or (p / "keyval").exists()))


def parse_one(path: Path, level: int, reparse: bool, record_duration: bool) -> int:
    """Parse one results directory into the database; returns the exit code (0 written or skipped, 1 failed)."""
    from django.db import DatabaseError

    from .results import ResultsDirError, load_results
    from .writer import write_job

    began = time.monotonic()
    try:
        results = load_results(path, level)
    except ResultsDirError as exc:
        log.error("cannot parse: %s", exc)
        return 1
    for problem in results.problems:
        log.warning("%s: %s", results.tag, problem)
    if not results.has_status_log:
        log.warning("%s: no status.log in %s; recording the job without tests", results.tag, path)
    try:
        outcome = write_job(results, reparse=reparse)
    except DatabaseError:
        log.exception("%s: cannot write the results", results.tag)
        return 1
    if outcome is None:
        log.info("%s: already parsed; left alone (-r reparses)", results.tag)
    else:
        log.info("%s: %s job %d with %d tests (%d unparsed status.log lines)", results.tag,
                 "replaced" if outcome.replaced else "wrote", outcome.job_idx, outcome.tests,
                 results.unparsed_lines)
    if record_duration:
        log.info("%s: parsed in %.3f s", results.tag, time.monotonic() - began)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the parser; returns the exit code (argparse exits with 2 on a usage error)."""
    args = argument_parser().parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    import django

    django.setup()
    top = Path(args.results_dir)
    pidfile = ParserPidfile(top) if args.write_pidfile else None
    if pidfile is not None and top.is_dir():
        pidfile.start()
    code = 1
    try:
        if args.detach:
            log.info("--detach ignored: parsing in the foreground (the drone runs the parser in the background)")
        if args.suite_report:
            log.info("--suite-report: no suite report is produced")
        dirs = _job_dirs(top, args.one)
        if not dirs:
            log.error("no job results directories in %s", top)
        code = max((parse_one(d, args.level, args.reparse, args.record_duration) for d in dirs), default=1)
    except Exception:  # whatever happens: report it, and complete the pidfile
        log.exception("parse of %s failed", top)
        code = 1
    finally:
        from django.db import connections

        connections.close_all()
        if pidfile is not None:
            pidfile.finish(code)
    return code
