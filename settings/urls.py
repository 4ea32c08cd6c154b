from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from scheduler.views import metrics

urlpatterns = [
    path("", include("afe.rpc.urls")),
    path("afe/server/admin/", admin.site.urls),
    path("admin/", RedirectView.as_view(url="/afe/server/admin/", permanent=False)),
    path("afe/", include("afe.pages.urls")),
    path("results/", include("afe.pages.results_urls")),
    path("metrics", metrics, name="metrics"),
    path("", RedirectView.as_view(pattern_name="afe-pages:job-list", permanent=False)),
]
