from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

urlpatterns = [
    path("afe/server/admin/", admin.site.urls),
    path("admin/", RedirectView.as_view(url="/afe/server/admin/", permanent=False)),
    path("", RedirectView.as_view(url="/afe/server/admin/", permanent=False)),
]
