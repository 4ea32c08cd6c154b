"""Results under ``settings.RESULTS_DIR``, read-only: listings, text, downloads and log tails.

Every path goes through ``afe.paths.inside``: ``..``, absolute paths and
symlinks that leave the results root give 404, like a missing file.
"""
from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from afe.paths import UnsafePath, inside

from .common import to_int

#: Files at most this big that look like text are shown on the page; others are downloads.
TEXT_LIMIT = 1_048_576
#: The most bytes one log tail returns.
TAIL_CHUNK = 65_536


def resolve(path: str) -> Path:
    """The file or directory ``path`` names under RESULTS_DIR; Http404 if it escapes or is missing."""
    root = Path(settings.RESULTS_DIR)
    try:
        target = inside(root, path) if path.strip("/") else root.resolve()
    except UnsafePath:
        raise Http404("No such results path.") from None
    if not target.exists():
        raise Http404("No such results path.")
    return target


def _crumbs(path: str) -> list[dict[str, str]]:
    parts = [p for p in path.split("/") if p]
    return [{"name": part, "url": "/results/" + quote("/".join(parts[:i + 1])) + "/"} for i, part in enumerate(parts)]


def _looks_like_text(target: Path) -> bool:
    with target.open("rb") as handle:
        head = handle.read(8192)
    return b"\x00" not in head


def _listing(target: Path, path: str) -> list[dict[str, Any]]:
    base = "/results/" + (quote(path.strip("/")) + "/" if path.strip("/") else "")
    rows = []
    for child in target.iterdir():
        try:
            is_dir = child.is_dir()
            size = None if is_dir else child.stat().st_size
        except OSError:
            is_dir, size = False, None  # a dangling link: listed, and 404 when opened
        rows.append({"name": child.name, "is_dir": is_dir, "size": size,
                     "url": base + quote(child.name) + ("/" if is_dir else "")})
    return sorted(rows, key=lambda r: (not r["is_dir"], r["name"]))


@login_required
@require_GET
def results(request: HttpRequest, path: str = "") -> HttpResponse:
    """A directory listing, a text file on the page, or a download (``?raw=1`` for any file as is)."""
    context: dict[str, Any] = {"nav": "results", "path": path, "crumbs": _crumbs(path)}
    if not path.strip("/") and not Path(settings.RESULTS_DIR).is_dir():
        context["entries"] = []  # no job has written results yet
        return render(request, "afe/pages/results_dir.html", context)
    target = resolve(path)
    if target.is_dir():
        context["entries"] = _listing(target, path)
        return render(request, "afe/pages/results_dir.html", context)
    size = target.stat().st_size
    if request.GET.get("raw") or size > TEXT_LIMIT or not _looks_like_text(target):
        content_type, _ = mimetypes.guess_type(target.name)
        as_text = size <= TEXT_LIMIT and _looks_like_text(target)
        return FileResponse(target.open("rb"), as_attachment=not as_text, filename=target.name,
                            content_type="text/plain; charset=utf-8" if as_text else content_type)
    context.update({"text": target.read_text("utf-8", errors="replace"), "size": size,
                    "follow_url": "/afe/follow/" + quote(path)})
    return render(request, "afe/pages/results_file.html", context)


@login_required
@require_GET
def follow(request: HttpRequest, path: str) -> HttpResponse:
    """A page that follows a growing log (its tail, then what is appended), even before the file exists."""
    root = Path(settings.RESULTS_DIR)
    try:
        inside(root, path)
    except UnsafePath:
        raise Http404("No such results path.") from None
    return render(request, "afe/pages/follow.html", {
        "nav": "results", "path": path, "crumbs": _crumbs(path), "tail_url": "/afe/tail/" + quote(path)})


@login_required
@require_GET
def tail(request: HttpRequest, path: str) -> HttpResponse:
    """The bytes of a log from ``?offset=`` (default: its last ``TAIL_CHUNK``), as text.

    The header ``X-Log-Offset`` is the offset to ask for next. A file that
    does not exist yet is empty (its runner may not have started).
    """
    root = Path(settings.RESULTS_DIR)
    try:
        target = inside(root, path)
    except UnsafePath:
        raise Http404("No such results path.") from None
    if target.is_dir():
        raise Http404("A directory is not a log.")
    size = target.stat().st_size if target.is_file() else 0
    offset = to_int(request.GET.get("offset"), None, lowest=0, highest=2**62)
    if offset is None or offset > size:
        offset = max(0, size - TAIL_CHUNK)
    data = b""
    if size:
        with target.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(TAIL_CHUNK)
    response = HttpResponse(data.decode("utf-8", errors="replace"), content_type="text/plain; charset=utf-8")
    response["X-Log-Offset"] = str(offset + len(data))
    response["Cache-Control"] = "no-store"
    return response
