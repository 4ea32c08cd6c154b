"""The results parser: a job's results directory → the TKO tables (``afe.models.tko``).

Modules, from the bottom up:

- ``status_line``: one status.log line (the grammar) → ``StatusLine`` or ``BadLine``;
- ``status_log``: the lines → finished tests (``parse_status_log``), never raising on bad input;
- ``keyvals``: keyval, host keyval and iteration keyval files;
- ``results``: a results directory → ``JobResults`` (``load_results``), without the database;
- ``writer``: ``JobResults`` → rows, in one transaction (``write_job``); needs Django;
- ``cli`` / ``__main__``: the ``bin/parse`` command line; ``pidfile``: ``.parser_execute``.

Only the database-free modules are imported here.
"""
from .results import JobResults, ResultsDirError, load_results
from .status_line import STATUSES, BadLine, StatusLine, parse_status_line
from .status_log import Problem, StatusLogResult, TestResult, parse_status_log

__all__ = [
    "STATUSES", "BadLine", "JobResults", "Problem", "ResultsDirError", "StatusLine", "StatusLogResult",
    "TestResult", "load_results", "parse_status_line", "parse_status_log",
]
