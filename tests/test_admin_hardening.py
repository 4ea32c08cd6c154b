"""The admin's refusals and its answers to garbage, on every database we run on.

Covers: active work (jobs, host queue entries, special tasks) cannot be deleted,
on the delete page or through "Delete selected", while complete work can; the
Everyone ACL group cannot be renamed or deleted; no admin page of our apps
answers 500 to garbage query parameters, object ids, action selections or
form input (a fuzz over ``admin.site._registry``, so a new admin is covered
without a new test); and bad input to an action writes nothing.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User as DjangoUser
from django.contrib.messages import get_messages
from django.db import models
from django.forms import ModelMultipleChoiceField, MultipleChoiceField, MultiWidget
from django.test import Client, RequestFactory
from django.urls import reverse

from afe.models import (
    EVERYONE,
    AbortedHostQueueEntry,
    AclGroup,
    ApiToken,
    Drone,
    DroneSet,
    EntryReason,
    Host,
    HostQueueEntry,
    Job,
    SpecialTask,
    SpecialTaskReason,
    User,
)
from drones.models import Process

pytestmark = pytest.mark.django_db

Status = HostQueueEntry.Status
Task = SpecialTask.Task

OUR_APPS = {"afe", "drones", "scheduler"}
REGISTERED: list[tuple[type[models.Model], admin.ModelAdmin]] = sorted(
    ((model, model_admin) for model, model_admin in admin.site._registry.items()
     if model._meta.app_label in OUR_APPS),
    key=lambda pair: pair[0]._meta.label,
)
REGISTERED_IDS = [model._meta.label_lower for model, _ in REGISTERED]

HUGE = "99999999999999999999"  # beyond a 64-bit integer: OverflowError on SQLite
# Values that are wrong for some field type: not a number, out of every integer range,
# NUL bytes, not a date, not a boolean, empty, very long, invalid UTF-8 (percent-encoded).
GARBAGE_VALUES = [
    "abc", HUGE, "-" + HUGE, "2147483648", "-1", "1.5", "1e400", "", "%00", "a%00b",
    "notadate", "maybe", "%FF%FE", "x" * 10_000,
]


# --------------------------------------------------------------------------- helpers


def url_name(model: type[models.Model], view: str) -> str:
    return f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}"


def changelist_url(model: type[models.Model]) -> str:
    return reverse(url_name(model, "changelist"))


def view_url(obj: models.Model, view: str = "change") -> str:
    return reverse(url_name(type(obj), view), args=[obj.pk])


def post_action(client: Client, obj_or_model: Any, action: str, selected: list, **extra: Any):
    """POST an admin action on ``selected`` (primary keys or rows) the way the changelist does."""
    model = obj_or_model if isinstance(obj_or_model, type) else type(obj_or_model)
    pks = [getattr(item, "pk", item) for item in selected]
    return client.post(changelist_url(model), {"action": action, "_selected_action": pks, **extra})


def message_texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def make_job(owner: User, name: str, hosts: list[str], parent_job: Job | None = None) -> Job:
    return Job.create(
        owner=owner, name=name, control_file="job.run_test('dummy')", hosts=hosts, parent_job=parent_job,
    )


def make_task(host: Host, requested_by: User, state: str, task: str = Task.VERIFY) -> SpecialTask:
    """A special task in ``state``: Queued, Running, Completed or Failed."""
    special_task = SpecialTask.objects.create(host=host, task=task, requested_by=requested_by)
    if state != "Queued":
        special_task.activate()
    if state in ("Completed", "Failed"):
        special_task.finish(success=state == "Completed")
    assert special_task.status == state
    return special_task


def complete(job: Job, status: str = Status.COMPLETED) -> Job:
    """Finish every entry of ``job`` (the save keeps ``active``/``complete`` in step)."""
    for entry in job.hostqueueentry_set.all():
        entry.status = status
        entry.save()
    return job


def make_process(job: Job | None = None, special_task: SpecialTask | None = None,
                 state: str = Process.State.RUNNING) -> Process:
    return Process.objects.create(
        kind=Process.Kind.JOB if job else Process.Kind.VERIFY, state=state, command=["true"],
        working_dir="/tmp/results", log_file="/tmp/results/debug.log", drone="drone1.example.com",
        job=job, special_task=special_task,
    )


def fingerprint() -> dict[str, list[tuple]]:
    """Every row of every table the admin can write, to prove a request wrote nothing."""
    tables = {model for model, _ in REGISTERED} | {AbortedHostQueueEntry, LogEntry}
    tables |= {Host.labels.through, AclGroup.hosts.through, AclGroup.users.through}
    return {
        model._meta.label: sorted(map(tuple, model._default_manager.order_by("pk").values_list()), key=repr)
        for model in tables
    }


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def admin_afe_user(admin_user) -> User:
    return User.for_django_user(admin_user)


@pytest.fixture
def fuzz_client(admin_user, monkeypatch) -> Client:
    """An admin client that returns 500 responses instead of raising, so a fuzz reports them all."""
    # The failures are listed by the test; Django's own log of each would drown them.
    monkeypatch.setattr(logging.getLogger("django.request"), "disabled", True)
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    return client


@pytest.fixture
def every_row(lab, system_user, alice, private_group) -> dict[str, Any]:
    """A row in every table a registered admin lists (so change views have something to find)."""
    private_group.hosts.add(lab["host3"])
    lab["host1"].set_attribute("serial", "SN-0001")
    drone = Drone.objects.create(hostname="drone1.example.com")
    DroneSet.objects.create(name="default-drones").drones.add(drone)
    job = make_job(system_user, "dummy_Pass", ["host1", "host2"])
    task = make_task(lab["host2"], system_user, "Queued")
    process = make_process(job=job)
    ApiToken.issue(system_user, "nightly CI")
    for model, _ in REGISTERED:
        assert model._default_manager.exists(), f"no {model._meta.label} row to fuzz"
    return {**lab, "job": job, "task": task, "drone": drone, "process": process}


def registered_admins() -> Iterator[Any]:
    return iter(REGISTERED)


def admin_actions(model_admin: admin.ModelAdmin, django_user: DjangoUser) -> list[str]:
    """The names of the actions ``model_admin`` offers a superuser (delete_selected included)."""
    request = RequestFactory().get("/")
    request.user = django_user
    return list(model_admin.get_actions(request))


def failures_of(client: Client, requests: list[tuple[str, str, Any]]) -> list[str]:
    """Send ``(method, url, data)`` requests; return a line for each that answered 500 or more."""
    failed = []
    for method, url, data in requests:
        response = client.get(url) if method == "GET" else client.post(url, data)
        if response.status_code >= 500:
            exc = getattr(response, "exc_info", None)
            failed.append(f"{method} {url[:150]} {str(data)[:150]} -> {response.status_code} "
                          f"{exc[1]!r:.300}" if exc else f"{method} {url[:150]} -> {response.status_code}")
    return failed


# --------------------------------------------------------------------------- fuzz: changelists


def changelist_garbage(model: type[models.Model], client: Client) -> list[str]:
    """Query strings of garbage for ``model``'s changelist: its filters, its fields, and the admin's own."""
    params: set[str] = {"id__exact", "pk", "o", "p", "q", "all", "e", "_to_field", "_popup", "nosuchparam"}
    response = client.get(changelist_url(model))
    assert response.status_code == 200, response.status_code
    for spec in response.context["cl"].filter_specs:
        params.update(spec.expected_parameters())
    for field in model._meta.concrete_fields:
        params.update(f"{field.name}__{lookup}" for lookup in ("exact", "gte", "in", "isnull"))
        if field.is_relation:
            params.add(f"{field.name}__id__exact")
    queries = [f"{param}={value}" for param in sorted(params) for value in GARBAGE_VALUES]
    queries += [
        "o=zz", "o=99", "o=-99.1.zz", "p=abc", "p=-1", "p=" + HUGE, "%00=1", "a%00b=1",
        "q=" + "y" * 100_000, "q=%00%00", "e=1&id__exact=abc", "_changelist_filters=%00",
        "time_requested__gte=notadate", "locked__exact=maybe", "host__id__exact=zz", "status__exact=%00",
    ]
    return queries


@pytest.mark.parametrize("model, model_admin", REGISTERED, ids=REGISTERED_IDS)
def test_no_changelist_answers_500_to_garbage_parameters(fuzz_client, every_row, model, model_admin):
    url = changelist_url(model)
    queries = changelist_garbage(model, fuzz_client)
    failed = failures_of(fuzz_client, [("GET", f"{url}?{query}", None) for query in queries])
    assert not failed, f"{len(failed)} of {len(queries)} requests failed:\n" + "\n".join(failed)


# --------------------------------------------------------------------------- fuzz: object views

GARBAGE_IDS = [
    "abc", HUGE, "-" + HUGE, "2147483648", "9223372036854775808", "-1", "0", "1.5", "1e3",
    " 1", "%00", "9" * 1000, "_5F", "%FF",
]


@pytest.mark.parametrize("model, model_admin", REGISTERED, ids=REGISTERED_IDS)
def test_no_object_view_answers_500_to_a_garbage_id(fuzz_client, every_row, model, model_admin):
    prefix = reverse(url_name(model, "changelist"))
    requests = [
        (method, f"{prefix}{object_id}/{view}/", {"post": "yes"} if method == "POST" else None)
        for object_id in GARBAGE_IDS
        for view in ("change", "history", "delete")
        for method in ("GET", "POST")
    ]
    failed = failures_of(fuzz_client, requests)
    assert not failed, f"{len(failed)} of {len(requests)} requests failed:\n" + "\n".join(failed)


# --------------------------------------------------------------------------- fuzz: actions

GARBAGE_SELECTIONS: list[list[str] | None] = [
    ["abc"], [HUGE], ["-" + HUGE], ["2147483648"], [""], ["\x00"], ["1", "abc"], ["9" * 400],
    ["1.5"], ["-1"], None,  # None: no _selected_action at all
]
GARBAGE_EXTRAS: list[dict[str, str]] = [
    {},
    {"index": "abc"},
    {"index": "-99", "post": "yes"},
    {"apply": "1", "lock_reason": ""},
    {"apply": "1", "lock_reason": "r" * 100_000},
    {"apply": "1", "lock_reason": "a\x00b"},
    {"post": "yes"},
]


@pytest.mark.parametrize("model, model_admin", REGISTERED, ids=REGISTERED_IDS)
def test_no_action_answers_500_or_writes_anything_for_a_garbage_selection(
    fuzz_client, every_row, admin_user, model, model_admin
):
    url = changelist_url(model)
    actions = [*admin_actions(model_admin, admin_user), "nosuchaction", ""]
    before = fingerprint()
    requests = []
    for action in actions:
        for selection in GARBAGE_SELECTIONS:
            for extra in GARBAGE_EXTRAS:
                data = {"action": action, **extra}
                if selection is not None:
                    data["_selected_action"] = selection
                requests.append(("POST", url, data))
    failed = failures_of(fuzz_client, requests)
    assert not failed, f"{len(failed)} of {len(requests)} requests failed:\n" + "\n".join(failed)
    assert fingerprint() == before


# --------------------------------------------------------------------------- fuzz: forms

GARBAGE_FORM_VALUES = ["abc", HUGE, "-" + HUGE, "\x00", "x" * 100_000, "-1", ""]


def form_data(response, value: str) -> dict[str, Any]:
    """The POST of the change form ``response`` rendered, with ``value`` in every field."""
    data: dict[str, Any] = {"_save": "Save"}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(name): management[name].value() for name in management.fields})
        forms += inline.formset.forms
    for form in forms:
        for name, field in form.fields.items():
            html_name = form.add_prefix(name)
            widget = getattr(field.widget, "widget", field.widget)  # unwrap the related-field wrapper
            if isinstance(widget, MultiWidget):
                data.update({f"{html_name}_{i}": value for i in range(len(widget.widgets))})
            data[html_name] = [value] if isinstance(field, MultipleChoiceField | ModelMultipleChoiceField) else value
    return data


@pytest.mark.parametrize("model, model_admin", REGISTERED, ids=REGISTERED_IDS)
def test_no_add_or_change_form_answers_500_to_garbage_input(fuzz_client, every_row, model, model_admin):
    obj = model._default_manager.order_by("pk").first()
    urls = [reverse(url_name(model, "add")), view_url(obj)]
    failed = []
    for url in urls:
        page = fuzz_client.get(url)
        if page.status_code != 200 or "adminform" not in page.context or page.context.get("has_change_permission") is False:
            continue  # read-only admins (no add, no change) have no form to fuzz
        requests = [("POST", url, form_data(page, value)) for value in GARBAGE_FORM_VALUES]
        failed += failures_of(fuzz_client, requests)
    assert not failed, f"{len(failed)} requests failed:\n" + "\n".join(failed)


# --------------------------------------------------------------------------- refusals: active work


@pytest.fixture
def work(lab, system_user) -> dict[str, Any]:
    """A running job, a finished job, a queued, a running and a finished special task."""
    running = make_job(system_user, "still_running", ["host1"])
    HostQueueEntry.objects.filter(job=running).update(status=Status.RUNNING, active=True)
    finished = complete(make_job(system_user, "all_done", ["host2"]))
    return {
        "running_job": running,
        "running_entry": running.hostqueueentry_set.get(),
        "finished_job": finished,
        "finished_entry": finished.hostqueueentry_set.get(),
        "queued_task": make_task(lab["host3"], system_user, "Queued"),
        "running_task": make_task(lab["host2"], system_user, "Running", Task.CLEANUP),
        "finished_task": make_task(lab["host1"], system_user, "Completed"),
    }


def still_there(obj: models.Model) -> bool:
    return type(obj)._default_manager.filter(pk=obj.pk).exists()


@pytest.mark.parametrize("active", ["running_job", "running_entry", "queued_task", "running_task"])
def test_the_delete_page_of_active_work_refuses_and_says_abort_instead(admin_client, work, active):
    obj = work[active]
    page = admin_client.get(view_url(obj, "delete"), follow=True)
    confirm = admin_client.post(view_url(obj, "delete"), {"post": "yes"}, follow=True)
    assert still_there(obj)
    for response in (page, confirm):
        assert response.status_code == 200
        assert any("abort it instead" in text for text in message_texts(response))


@pytest.mark.parametrize("active, finished", [
    ("running_job", "finished_job"), ("running_entry", "finished_entry"), ("running_task", "finished_task"),
])
def test_delete_selected_with_active_work_in_it_deletes_nothing(admin_client, work, active, finished):
    response = post_action(admin_client, work[active], "delete_selected", [work[active], work[finished]], post="yes")
    assert still_there(work[active]) and still_there(work[finished])
    [text] = message_texts(response)
    assert "Nothing was deleted" in text and str(work[active]) in text and "abort it instead" in text


@pytest.mark.parametrize("finished", ["finished_job", "finished_entry", "finished_task"])
def test_finished_work_can_still_be_deleted(admin_client, work, finished):
    obj = work[finished]
    admin_client.post(view_url(obj, "delete"), {"post": "yes"})
    assert not still_there(obj)
    other = {"finished_job": "running_job", "finished_entry": "running_entry", "finished_task": "running_task"}
    assert still_there(work[other[finished]])


def test_delete_selected_of_only_finished_work_asks_then_deletes(admin_client, work):
    jobs = [work["finished_job"]]
    confirm = post_action(admin_client, Job, "delete_selected", jobs)
    assert confirm.status_code == 200 and "Are you sure" in confirm.content.decode()
    post_action(admin_client, Job, "delete_selected", jobs, post="yes")
    assert not still_there(work["finished_job"]) and still_there(work["running_job"])


# --------------------------------------------------------------------------- refusals: Everyone


def test_everyone_cannot_be_renamed_in_the_admin(admin_client, db):
    everyone = AclGroup.everyone()
    response = admin_client.post(view_url(everyone), {"name": "Nobody", "description": "x"})
    assert response.status_code == 200
    assert "cannot be renamed" in str(response.context["adminform"].form.errors["name"])
    assert AclGroup.objects.filter(name=EVERYONE).exists() and not AclGroup.objects.filter(name="Nobody").exists()


def test_everyone_cannot_be_deleted_in_the_admin_alone_or_in_a_selection(admin_client, private_group):
    everyone = AclGroup.everyone()
    admin_client.post(view_url(everyone, "delete"), {"post": "yes"})
    response = post_action(admin_client, everyone, "delete_selected", [everyone, private_group], post="yes")
    assert AclGroup.objects.filter(pk__in=[everyone.pk, private_group.pk]).count() == 2
    assert any("Everyone ACL group cannot be deleted" in text for text in message_texts(response))


def test_other_acl_groups_can_be_deleted(admin_client, private_group):
    admin_client.post(view_url(private_group, "delete"), {"post": "yes"})
    assert not still_there(private_group)


# --------------------------------------------------------------------------- reasons and ACL rules


def test_the_schedulers_reason_is_shown_on_the_entry_and_task_pages(admin_client, work):
    EntryReason.objects.record({work["running_entry"].pk: "host1: results path refused"})
    SpecialTaskReason.objects.record({work["queued_task"].pk: "no drone can take it"})
    assert "host1: results path refused" in admin_client.get(view_url(work["running_entry"])).content.decode()
    assert "host1: results path refused" in admin_client.get(view_url(work["running_job"])).content.decode()
    assert "no drone can take it" in admin_client.get(view_url(work["queued_task"])).content.decode()
    listing = admin_client.get(changelist_url(HostQueueEntry))
    assert listing.status_code == 200


def test_aborting_part_of_a_started_synchronous_job_in_the_admin_is_refused(admin_client, lab, system_user):
    job = Job.create(owner=system_user, name="pair", control_file="x", hosts=["host1", "host2"],
                     synch_count=2, control_type="Server")
    job.hostqueueentry_set.update(status=Status.RUNNING, active=True, execution_subdir="group0")
    one = job.hostqueueentry_set.order_by("pk").first()
    response = post_action(admin_client, one, "abort_entries", [one])
    assert not HostQueueEntry.objects.filter(job=job, aborted=True).exists()
    assert any("Nothing was aborted" in text for text in message_texts(response))


# --------------------------------------------------------------------------- API tokens


def test_a_token_made_in_the_admin_shows_its_key_once_and_the_key_works(admin_client, alice):
    response = admin_client.post(reverse(url_name(ApiToken, "add")), {"user": alice.pk, "name": "nightly"},
                                 follow=True)
    [text] = [t for t in message_texts(response) if "Authorization: Token" in t]
    key = text.split("Authorization: Token ")[1].rstrip("”.")
    token = ApiToken.objects.get()
    assert key not in str(list(ApiToken.objects.values_list()))  # only a digest is stored
    assert ApiToken.objects.user_for_key(key) == alice
    assert key not in admin_client.get(view_url(token)).content.decode()


def test_revoking_tokens_in_the_admin_stops_their_keys(admin_client, alice):
    token, key = ApiToken.issue(alice, "ci")
    post_action(admin_client, token, "revoke_tokens", [token])
    assert ApiToken.objects.user_for_key(key) is None
    token.refresh_from_db()
    assert token.revoked
