"""Helpers shared by the pages: the acting user, safe parsing of query data, paging, redirects."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme

from afe.models import User
from afe.permissions import AccessDenied

#: Page sizes a list page offers (``?per_page=``); the first is the default.
PER_PAGE_CHOICES = (30, 10, 100)
#: The most ids one bulk action takes (a bigger selection is refused, never a 500).
MAX_SELECTION = 1000


def acting_user(request: HttpRequest) -> User:
    """The AFE user the logged-in Django user acts as (created on first use)."""
    cached = getattr(request, "_afe_user", None)
    if cached is None:
        cached = User.for_django_user(request.user)
        request._afe_user = cached  # type: ignore[attr-defined]
    return cached


def to_int(value: Any, default: int | None = None, lowest: int = 1, highest: int = 2**31 - 1) -> int | None:
    """``value`` as a whole number in range, else ``default`` (garbage from a URL never raises)."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return default
    return number if lowest <= number <= highest else default


def selected_ids(request: HttpRequest, name: str = "selected") -> list[int]:
    """The valid row ids posted under ``name`` (garbage dropped), at most ``MAX_SELECTION``."""
    ids = [to_int(v) for v in request.POST.getlist(name)[:MAX_SELECTION]]
    return sorted({i for i in ids if i is not None})


def paginate(request: HttpRequest, rows: Any) -> Page:
    """The page ``?page=`` of ``rows`` with ``?per_page=`` rows (garbage gives the first/last page)."""
    per_page = to_int(request.GET.get("per_page"), PER_PAGE_CHOICES[0])
    if per_page not in PER_PAGE_CHOICES:
        per_page = PER_PAGE_CHOICES[0]
    page = Paginator(rows, per_page).get_page(request.GET.get("page"))
    page.per_page_choices = sorted(PER_PAGE_CHOICES)  # type: ignore[attr-defined]
    return page


def back(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    """Redirect to the posted ``next`` URL when it is one of ours, else to ``fallback``."""
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = fallback
    return HttpResponseRedirect(target or fallback)


def refuse(request: HttpRequest, what: str, refusal: AccessDenied | Exception) -> None:
    """Tell the user ``what`` did not happen and why (the rule's own message)."""
    messages.error(request, f"{what}: {refusal}")


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"


def results_link(*parts: str) -> str:
    """The /results/ URL of a results directory built from ``parts`` (empty parts skipped)."""
    from urllib.parse import quote

    path = "/".join(p.strip("/") for p in parts if p and p.strip("/"))
    return "/results/" + (quote(path) + "/" if path else "")

