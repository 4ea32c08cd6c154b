"""Keyval files: the job's ``keyval``, ``host_keyvals/<host>``, a test's ``keyval`` and ``results/keyval``.

A keyval file has one ``key=value`` per line (spec scheduler-behaviour.md
§5.3). Blank lines and lines starting with ``#`` are ignored (in an iteration
keyval a blank line ends an iteration); a key is letters, digits, ``_``, ``-``
and ``.``, optionally typed as ``key{perf}`` or ``key{attr}``; the value is the
rest of the line, stripped. A later line overrides an earlier one with the same
key. Other lines are skipped and reported.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from afe.paths import UnsafePath, inside

from .status_log import Problem

_LINE = re.compile(r"^\s*([-.\w]+)(?:\{(\w*)\})?\s*=(.*)$", re.DOTALL)


@dataclass
class Iteration:
    """One iteration of a test: ``{attr}`` keyvals as text, ``{perf}`` (and untyped) ones as numbers."""

    index: int
    attributes: dict[str, str] = field(default_factory=dict)
    results: dict[str, float | None] = field(default_factory=dict)


def read_lines(path: str | os.PathLike[str]) -> list[str] | None:
    """The lines of a text file (bad UTF-8 replaced, NULs and CRs dropped); None if it is not a readable file."""
    try:
        raw = Path(path).read_bytes()
    except OSError:  # missing, a directory, unreadable, a name too long...
        return None
    text = raw.decode("utf-8", errors="replace").replace("\x00", "").replace("\r", "")
    return text.split("\n")


def parse_keyval(lines: Iterable[str], source: str, problems: list[Problem]) -> dict[str, str]:
    """``{key: value}`` of keyval lines; a typed key keeps its type (``"ms{perf}"``).

    Lines that are not ``key=value`` are appended to ``problems``.
    """
    values: dict[str, str] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            problems.append(Problem(source, lineno, f"skipped: not key=value: {line[:60]!r}"))
            continue
        key, kind, value = match.groups()
        values[f"{key}{{{kind}}}" if kind is not None else key] = value.strip()
    return values


def read_keyval(path: str | os.PathLike[str], source: str, problems: list[Problem]) -> dict[str, str] | None:
    """The keyval file at ``path`` (see ``parse_keyval``); None if there is no such file."""
    lines = read_lines(path)
    return None if lines is None else parse_keyval(lines, source, problems)


def perf_values(key: str, text: str) -> dict[str, float | None] | None:
    """The numbers of one perf keyval: ``"1.5"`` → ``{key: 1.5}``, ``"1.5+-0.2"`` → ``{key: 1.5, key_dev: 0.2}``.

    NaN and infinities become None (stored as NULL); None if ``text`` is not a number.
    """
    parts = text.split("+-", 1)
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return None
    numbers_or_null = [n if math.isfinite(n) else None for n in numbers]
    keys = [key, f"{key}_dev"][: len(numbers_or_null)]
    return dict(zip(keys, numbers_or_null, strict=True))


def parse_iterations(lines: Iterable[str], source: str, problems: list[Problem]) -> list[Iteration]:
    """The iterations of a test's ``results/keyval``: blank lines separate them, numbered from 1."""
    iterations: list[Iteration] = []
    current = Iteration(1)
    for lineno, line in enumerate([*lines, ""], start=1):
        if not line.strip():
            if current.attributes or current.results:
                iterations.append(current)
                current = Iteration(current.index + 1)
            continue
        if line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            problems.append(Problem(source, lineno, f"skipped: not key=value: {line[:60]!r}"))
            continue
        key, kind, value = match.group(1), match.group(2), match.group(3).strip()
        if kind == "attr":
            current.attributes[key] = value
        elif kind in (None, "perf"):
            numbers = perf_values(key, value)
            if numbers is None:
                problems.append(Problem(source, lineno, f"skipped: perf value of {key!r} is not a number"))
            else:
                current.results.update(numbers)
        else:
            problems.append(Problem(source, lineno, f"skipped: unknown keyval type {{{kind}}} of {key!r}"))
    return iterations


def read_iterations(path: str | os.PathLike[str], source: str, problems: list[Problem]) -> list[Iteration]:
    """The iterations in the file at ``path``; none if there is no such file."""
    lines = read_lines(path)
    return [] if lines is None else parse_iterations(lines, source, problems)


def read_host_keyvals(results_dir: Path, problems: list[Problem]) -> dict[str, dict[str, str]]:
    """``{hostname: keyval}`` for every file in ``<results_dir>/host_keyvals/``, sorted by hostname.

    Paths go through ``afe.paths.inside``: a ``host_keyvals`` directory or a
    file in it that leads out of the results (a symlink) is not read, and a
    problem says so.
    """
    try:
        directory = inside(results_dir, "host_keyvals")
    except UnsafePath:
        problems.append(Problem("host_keyvals", None, "outside the results (afe.paths.inside refused it); not read"))
        return {}
    try:
        names = sorted(p.name for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError:
        return {}
    keyvals = {}
    for name in names:
        try:
            path = inside(results_dir, "host_keyvals", name)
        except UnsafePath:
            problems.append(Problem(f"host_keyvals/{name[:60]}", None,
                                    "outside the results (afe.paths.inside refused it); not read"))
            continue
        keyval = read_keyval(path, f"host_keyvals/{name}", problems)
        if keyval is not None:
            keyvals[name] = keyval
    return keyvals


def host_labels(host_keyval: Mapping[str, str]) -> list[str]:
    """The host's labels: ``labels=`` is a comma-joined list of URL-quoted names."""
    return [unquote(label) for label in host_keyval.get("labels", "").split(",") if label]


def machine_group(host_keyval: Mapping[str, str]) -> str:
    """TKO's ``machine_group`` (shown as platform): the ``model:`` label, else ``board:``, else ``platform``."""
    labels = host_labels(host_keyval)
    for prefix in ("model:", "board:"):
        for label in labels:
            if label.startswith(prefix):
                return label[len(prefix):]
    return host_keyval.get("platform", "")
