"""The pages' URLs, mounted at /afe/ (the results files are ``results_urls``, at /results/)."""
from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy
from django.views.generic import RedirectView

from . import create, hosts, jobs, results

app_name = "afe-pages"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="afe-pages:job-list", permanent=False), name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="afe/pages/login.html",
                                                redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page=reverse_lazy("afe-pages:login")), name="logout"),
    path("jobs/", jobs.job_list, name="job-list"),
    path("jobs/abort/", jobs.jobs_abort, name="jobs-abort"),
    path("jobs/new/", create.job_create, name="job-create"),
    path("jobs/<int:job_id>/", jobs.job_detail, name="job-detail"),
    path("jobs/<int:job_id>/abort/", jobs.job_abort, name="job-abort"),
    path("hosts/", hosts.host_list, name="host-list"),
    path("hosts/action/", hosts.hosts_action, name="hosts-action"),
    path("hosts/<int:host_id>/", hosts.host_detail, name="host-detail"),
    path("hosts/<int:host_id>/action/", hosts.host_action, name="host-action"),
    path("follow/<path:path>", results.follow, name="follow"),
    path("tail/<path:path>", results.tail, name="tail"),
]

