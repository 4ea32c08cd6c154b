"""The one way to build a path from data: it stays inside its root or is refused.

Job and task result directories, host keyvals, control files, crash info and
the parser's inputs are all named after things a job submitter typed (a
hostname, an owner's login). ``inside`` joins such parts under a root,
resolves the result (symlinks included) and refuses anything that would land
outside the root, so a hostile or corrupt name can fail its own entry but can
never write elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path


class UnsafePath(ValueError):
    """A path built from data would leave its root, or a part of it is not a plain name."""


def check_part(part: str) -> str:
    """``part`` itself if it is a relative path of plain names; raises ``UnsafePath`` otherwise."""
    if not isinstance(part, str):
        raise UnsafePath(f"path part {part!r} is not text")
    if not part:
        raise UnsafePath("empty path part")
    if "\x00" in part:
        raise UnsafePath(f"path part {part!r} contains a NUL byte")
    if any(ord(c) < 32 or ord(c) == 127 for c in part):
        raise UnsafePath(f"path part {part!r} contains a control character")
    if part.startswith("/") or os.path.isabs(part):
        raise UnsafePath(f"path part {part!r} is absolute")
    names = part.split("/")
    if len(names) > 1 and names[-1] == "":
        names.pop()  # "12-alice/" (an empty execution subdir) names the job's directory
    for name in names:
        if name in ("", ".", ".."):
            raise UnsafePath(f"path part {part!r} is not a plain relative path")
        if len(name.encode("utf-8", "surrogateescape")) > 255:
            raise UnsafePath(f"path part {name[:40]!r}... is longer than 255 bytes")
    return part


def inside(root: Path | str, *parts: str, root_resolved: bool = False) -> Path:
    """``root/part/...`` resolved; raises ``UnsafePath`` unless it is ``root`` or below it.

    Each part may hold ``/`` between plain names (``"12-alice/host1"``) but
    no ``..``, ``.``, empty name, absolute path, NUL or control character;
    a symlink on the way that points out of ``root`` is refused too.
    ``root_resolved``: ``root`` is already an absolute, resolved path (as this
    function returns), so it is not resolved again.
    """
    base = str(root) if root_resolved else os.path.realpath(root)
    for part in parts:
        check_part(part)
    # os.path.realpath and a prefix test: a tick names thousands of paths, pathlib's way costs 3x.
    target = os.path.realpath(os.path.join(base, *parts))
    if target != base and not target.startswith(base.rstrip(os.sep) + os.sep):
        raise UnsafePath(f"{'/'.join(parts)!r} resolves to {target}, outside {base}")
    return Path(target)
