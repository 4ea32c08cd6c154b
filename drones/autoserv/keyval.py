"""Keyval files: ``key=value`` lines, always appended (the scheduler writes some first)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

KEY_RE = re.compile(r"^[-.\w]+$")


def format_keyvals(keyvals: Mapping[str, Any]) -> str:
    """The ``key=value\\n`` lines for ``keyvals``; raises ``ValueError`` for a bad key.

    Keys are letters, digits, ``_``, ``-`` and ``.``; line breaks in values become spaces.
    """
    lines = []
    for key, value in keyvals.items():
        if not KEY_RE.match(str(key)):
            raise ValueError(f"invalid keyval key {key!r}")
        text = re.sub(r"[\r\n]+", " ", str(value))
        lines.append(f"{key}={text}\n")
    return "".join(lines)


def append_keyvals(path: Path, keyvals: Mapping[str, Any]) -> None:
    """Append ``keyvals`` to the keyval file at ``path`` (a directory means ``<dir>/keyval``)."""
    if path.is_dir():
        path = path / "keyval"
    text = format_keyvals(keyvals)
    path.parent.mkdir(parents=True, exist_ok=True)
    # backslashreplace: a lone surrogate (an undecodable byte) is written as \udcXX, never an error
    with open(path, "a", encoding="utf-8", errors="backslashreplace") as f:
        f.write(text)
