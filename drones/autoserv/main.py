"""One autoserv run, from the command line to the pidfile's last line.

Exit status: 0 when everything passed; 1 when a test or host action failed,
the control file was bad, a host could not be used, or the run was aborted
(SIGTERM: the pidfile then records ``(1 << 8) | 15`` = 271, a signalled exit,
so the scheduler gathers crash info); 2 for a malformed command line. Bad
settings (``settings: NAME must be ...``) exit 1 with that one line on
stderr and an ERROR in status.log. The pidfile (``-p``) always records the
status autoserv exits with: its pid line is written first, and its exit
status and failed-test count whatever happens after, bad settings included.

A server control file may end the run with ``sys.exit()``: ``sys.exit()`` /
``sys.exit(0)`` ends it normally (success if every test passed); any other
code is an ERROR ``control file called sys.exit(<code>)``.
"""
from __future__ import annotations

import logging
import os
import shlex
import socket
import sys
import time
import traceback
from pathlib import Path

from .abort import AbortController
from .actions import HostAction
from .cli import Options, UsageError, build_parser, parse_args, salvage_pidfile
from .config import AutoservConfig
from .control import read_control_file, run_client_control, run_server_control
from .crashinfo import collect_crashinfo, save
from .errors import Aborted, AutoservError, ControlFileError, HostError, ResultsPathError
from .hostinfo import parse_machine
from .hosts import HostFactory
from .job import Job, results_path, safe_path_part
from .keyval import append_keyvals
from .logs import DEBUG_LOG, setup_logging
from .pidfile import PidfileWriter
from .status_log import StatusLog, make_line

log = logging.getLogger("autoserv")

USAGE_EXIT = 2
STATUS_VERSION = 1


def main(argv: list[str] | None = None) -> int:
    """Run autoserv with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        options = parse_args(argv)
    except UsageError as exc:
        return usage_error(argv, str(exc))
    return Autoserv(options, argv).run()


def usage_error(argv: list[str], message: str) -> int:
    """Report a malformed command line; record it in the pidfile if one was asked for. Returns 2."""
    build_parser().print_usage(sys.stderr)
    print(f"autoserv: error: {message}", file=sys.stderr)
    pidfile_path = salvage_pidfile(argv)
    if pidfile_path is not None:
        try:
            pidfile = PidfileWriter(pidfile_path)
            pidfile.start()
            line = make_line("ERROR", None, None, f"autoserv usage error: {message}")
            with open(pidfile_path.parent / "status.log", "a", encoding="utf-8") as f:
                f.write(line.render() + "\n")
            pidfile.finish(USAGE_EXIT, 0)
        except OSError as exc:
            print(f"autoserv: cannot record the error in {pidfile_path}: {exc}", file=sys.stderr)
    return USAGE_EXIT


def _setup_django() -> Exception | SystemExit | None:
    """Set Django up (settings module ``settings`` unless the environment says otherwise).

    Returns the error instead of raising it, so it can be recorded once logging
    works. A bad setting stops the settings module with ``SystemExit("settings:
    ...")`` (``settings.environment.refuse``); that is returned too, so the
    pidfile can still be finished.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    try:
        import django

        django.setup()
    except (Exception, SystemExit) as exc:
        return exc
    return None


def _settings_message(exc: SystemExit) -> str:
    """The one-line message of a settings module that stopped the process."""
    if isinstance(exc.code, str):
        return exc.code
    return f"settings: the settings module exited with status {exc.code}"


class Autoserv:
    """One run of autoserv for ``options``."""

    def __init__(self, options: Options, argv: list[str]) -> None:
        self.options = options
        self.argv = argv
        self.abort = AbortController()

    def run(self) -> int:
        """Do the work; returns the exit status (the pidfile has been finished)."""
        options = self.options
        pidfile = PidfileWriter(options.pidfile_path) if options.write_pidfile else None
        try:
            options.results_dir.mkdir(parents=True, exist_ok=True)
            if pidfile is not None:
                pidfile.start()
        except OSError as exc:
            print(f"autoserv: cannot write to the results directory {options.results_dir}: {exc}", file=sys.stderr)
            return 1
        django_error = _setup_django()
        if isinstance(django_error, SystemExit):
            return self._refuse_settings(pidfile, _settings_message(django_error))
        logging_error = setup_logging(options.results_dir, options.verbose)
        status = StatusLog(options.results_dir / "status.log", critical=self.abort.shield)
        self.abort.install()

        exit_code, signal_number = 1, 0
        hosts: list[HostFactory] = []
        started = time.monotonic()
        try:
            try:
                log.info("autoserv (pid %d): %s", os.getpid(), shlex.join(["autoserv", *self.argv]))
                for flag in options.ignored:
                    log.info("accepted but not implemented: %s", flag)
                if logging_error is not None:
                    raise AutoservError(f"cannot write the debug log {options.results_dir / DEBUG_LOG}: "
                                        f"{logging_error.strerror or logging_error}")
                if django_error is not None:
                    raise AutoservError(f"cannot set up Django: {type(django_error).__name__}: {django_error}")
                ok = self._work(status, hosts)
                if status.open_groups():
                    status.close_open_groups("ERROR", "group left open by the control file")
                exit_code = 0 if ok and status.failures == 0 else 1
            except Aborted:
                raise
            except AutoservError as exc:
                log.info("failed: %s", exc)
                self._record_error(status, str(exc))
            except BaseException as exc:  # anything else (SystemExit, KeyboardInterrupt included) is our bug
                log.exception("autoserv internal error")
                self._record_error(status, f"autoserv internal error: {type(exc).__name__}: {exc}")
        except Aborted as exc:
            self.abort.disarm()
            log.warning("aborted: %s", exc)
            status.abort_all(str(exc) or "aborted")
            exit_code, signal_number = 1, self.abort.signal_number
        finally:
            self.abort.disarm()
            for factory in hosts:
                factory.remove_temp_dirs()
                factory.close_all()
            try:
                status.close()
            except OSError as exc:
                log.warning("closing %s: %s", status.path, exc)
            if pidfile is not None:
                pidfile.finish(exit_code, status.failures, signal_number)
            log.info("finished in %.1fs: exit status %d, %d failed", time.monotonic() - started,
                     exit_code, status.failures)
        return exit_code

    def _refuse_settings(self, pidfile: PidfileWriter | None, message: str) -> int:
        """Bad settings: the ``settings: ...`` line on stderr (and nothing else), an ERROR in
        status.log, and a finished pidfile (spec §5.2: the scheduler sees an exit, not a
        process that never reports). Returns 1, like every command refusing its settings.
        """
        print(message, file=sys.stderr)
        status = StatusLog(self.options.results_dir / "status.log")
        try:
            status.record("ERROR", None, None, message)
            status.close()
        except OSError:
            pass  # the pidfile and stderr still say it; a second stderr line would break the one-line rule
        if pidfile is not None:
            pidfile.finish(1, status.failures)
        return 1

    @staticmethod
    def _record_error(status: StatusLog, reason: str) -> None:
        if status.open_groups():
            status.close_open_groups("ERROR", reason)
        else:
            status.record("ERROR", None, None, reason)

    def _work(self, status: StatusLog, factories: list[HostFactory]) -> bool:
        """The run proper; returns whether it succeeded (failures are also in ``status``)."""
        options = self.options
        config = AutoservConfig.from_settings()
        hosts = HostFactory(config, self.abort)
        factories.append(hosts)

        if options.action == "collect_crashinfo":
            return self._collect_crashinfo(hosts)
        status.touch()  # status.log exists from the start, even if everything is cut short
        if not options.use_existing_results:
            append_keyvals(options.results_dir / "keyval", {
                "label": options.label or "",
                "user": options.user or "",
                "hostname": ",".join(options.machines),
                "drone": socket.gethostname(),
                "status_version": STATUS_VERSION,
                "job_started": int(time.time()),
            })
        if options.action is not None:
            results = [self._host_action(status, hosts, config, machine) for machine in options.machines]
            return all(results)

        assert options.control_path is not None
        job = Job(results_dir=options.results_dir, status=status, hosts=hosts, abort=self.abort,
                  machines=options.machines, user=options.user, label=options.label)
        text = read_control_file(options.control_path)
        log.info("running %s control file %s on %s", options.control_type, options.control_path,
                 ", ".join(options.machines) or "no hosts")
        try:
            if options.control_type == "client":
                run_client_control(job, text, options.control_args, options.control_path)
            else:
                run_server_control(job, text, options.control_path, options.control_args)
        except (ControlFileError, Aborted):
            raise
        except SystemExit as exc:
            if exc.code is None or exc.code == 0:
                log.info("control file called sys.exit(%r): the run ends here", exc.code)
                return True
            where = _control_line(exc, options.control_path)
            raise ControlFileError(f"control file called sys.exit({exc.code!r}){where}") from None
        except BaseException as exc:  # KeyboardInterrupt too: the control file raised it itself
            log.debug("control file raised", exc_info=True)
            where = _control_line(exc, options.control_path)
            message = f": {exc}" if str(exc) else ""
            raise ControlFileError(f"control file raised {type(exc).__name__}{message}{where}") from exc
        return True

    def _host_action(self, status: StatusLog, hosts: HostFactory, config: AutoservConfig, machine: str) -> bool:
        action = self.options.action
        assert action is not None
        try:
            host = hosts.create_host(machine)
        except HostError as exc:
            status.record("START", None, action, hostname=machine)
            status.record("FAIL", None, action, str(exc), hostname=machine)
            status.record("END FAIL", None, action, hostname=machine)
            return False
        protection = self.options.host_protection or host.info.protection or "NO_PROTECTION"
        log.info("%s %s (protection %s, job labels %s)", action, machine, protection,
                 ",".join(self.options.job_labels) or "none")
        return HostAction(status, host, hosts, config, self.options.job_labels, protection).run(action)

    def _collect_crashinfo(self, hosts: HostFactory) -> bool:
        """Crash info of every machine; returns False if a machine's directory was refused (the others are collected)."""
        ok = True
        for machine in self.options.machines:
            try:
                dest = results_path(self.options.results_dir, safe_path_part(parse_machine(machine).hostname),
                                    "crashinfo")
            except ResultsPathError as exc:
                log.warning("crashinfo of %.80s not collected: %s", machine, exc)
                ok = False
                continue
            try:
                host = hosts.create_host(machine)
            except HostError as exc:
                log.warning("crashinfo: %s", exc)
                dest.mkdir(parents=True, exist_ok=True)
                save(dest, "unreachable.txt", f"{exc}\n")
                continue
            collect_crashinfo(host, dest)
        return ok


def _control_line(exc: BaseException, path: Path) -> str:
    """`` (control line N)`` for the control file's innermost frame in the traceback, or ``""``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    return f" (control file line {frames[-1].lineno})" if frames else ""
