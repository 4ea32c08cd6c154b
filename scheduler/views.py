"""The web server's ``/metrics``: the lab's state and the scheduler's last published metrics."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from .metrics import web_exposition


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format; open like any scrape target (the figures are counts, no names
    but drones' and steps')."""
    return HttpResponse(web_exposition(), content_type=CONTENT_TYPE_LATEST)
