"""The results files' URLs, mounted at /results/ (AFE's raw-logs links: ``/results/<job id>-<owner>/...``)."""
from django.urls import path

from . import results

app_name = "afe-results"

urlpatterns = [
    path("", results.results, name="root"),
    path("<path:path>", results.results, name="path"),
]
