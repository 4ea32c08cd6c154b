"""The server-rendered AFE pages (afe/pages), driven through Django's test client.

Every page and action, login, the ACL refusals shown as messages, bad form
input and bad filters (never a 500), results paths that escape RESULTS_DIR
(404), the live fragments and log tails, and that a page of 100 jobs or
hosts costs the same number of queries as a page of 10.
"""
from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from afe.models import (
    AclGroup, ControlType, Host, HostQueueEntry, Job, SpecialTask, TkoJob, TkoKernel, TkoStatus,
    TkoTest, TkoTestAttribute, User,
)

pytestmark = pytest.mark.django_db

Status = HostQueueEntry.Status
CONTROL = "job.run_test('sleeptest')\n"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    """Logins in these tests need no real password hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice_client(alice) -> Client:
    """A logged-in ordinary user whose AFE user is the ``alice`` fixture."""
    client = Client()
    client.force_login(get_user_model().objects.create_user("alice"))
    return client


@pytest.fixture
def root(admin_user) -> User:
    return User.for_django_user(admin_user)


def make_job(owner: User, hosts=(), name: str = "job", **kwargs) -> Job:
    if not hosts and not kwargs.get("meta_hosts"):
        kwargs.setdefault("hostless", True)
        kwargs.setdefault("control_type", ControlType.SERVER)
    return Job.create(owner=owner, name=name, control_file=CONTROL, hosts=list(hosts), **kwargs)


def texts(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def followed_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def private_host(make_host, group_name: str = "team-b") -> Host:
    """A host in an ACL group alice is not in."""
    host = make_host("secret1", ["board:x"])
    group = AclGroup.objects.create(name=group_name)
    group.hosts.add(host)
    AclGroup.rebalance_everyone()
    return host


# --------------------------------------------------------------------------- login and navigation


def test_pages_need_a_login_and_root_redirects_to_the_jobs(client):
    for url in ["/afe/jobs/", "/afe/jobs/new/", "/afe/hosts/", "/results/", "/afe/tail/x.log"]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/afe/login/?next="), url
    assert client.get("/")["Location"] == "/afe/jobs/"
    assert client.get("/afe/")["Location"] == "/afe/jobs/"


def test_an_ordinary_user_logs_in_on_the_pages_own_form_and_lands_where_they_were_going(client, alice):
    from django.contrib.auth.models import User as DjangoUser

    DjangoUser.objects.create_user("alice", password="s3cret-pass")  # not staff: no admin for them
    form = client.get("/afe/login/?next=/afe/hosts/")
    assert form.status_code == 200 and "Username" in form.content.decode()
    wrong = client.post("/afe/login/", {"username": "alice", "password": "nope", "next": "/afe/hosts/"})
    assert wrong.status_code == 200 and "correct username and password" in wrong.content.decode()
    right = client.post("/afe/login/", {"username": "alice", "password": "s3cret-pass", "next": "/afe/hosts/"})
    assert right["Location"] == "/afe/hosts/"
    page = client.get("/afe/hosts/").content.decode()
    assert "alice" in page and "/afe/server/admin/" not in page  # no admin link for a non-staff user
    client.post("/afe/logout/")
    assert client.get("/afe/jobs/").status_code == 302


def test_every_page_has_the_navigation_bar(admin_client, lab, root):
    job = make_job(root, ["host1"])
    for url in ["/afe/jobs/", f"/afe/jobs/{job.pk}/", "/afe/jobs/new/", "/afe/hosts/",
                f"/afe/hosts/{lab['host1'].pk}/", "/results/"]:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert 'class="bar"' in html and "/afe/hosts/" in html and "/afe/jobs/new/" in html, url
        assert 'name="viewport"' in html


def test_actions_are_post_only_and_need_csrf(alice, lab):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(get_user_model().objects.create_user("alice"))
    job = make_job(alice, ["host1"])
    for url in ["/afe/jobs/abort/", f"/afe/jobs/{job.pk}/abort/", "/afe/hosts/action/",
                f"/afe/hosts/{lab['host1'].pk}/action/"]:
        assert csrf_client.get(url).status_code == 405, url
        assert csrf_client.post(url, {"selected": [job.pk], "action": "unlock"}).status_code == 403, url
    assert not HostQueueEntry.objects.filter(aborted=True).exists()


# --------------------------------------------------------------------------- jobs list


def test_jobs_list_shows_mine_by_default_and_everyone_on_request(alice_client, alice, root, lab):
    mine = make_job(alice, ["host1"], name="alice-job")
    theirs = make_job(root, ["host2"], name="root-job")
    response = alice_client.get("/afe/jobs/")
    shown = [row["job"] for row in response.context["rows"]]
    assert shown == [mine]
    html = response.content.decode()
    assert "alice-job" in html and "1 Queued" in html and "Default" in html
    everyone = [row["job"] for row in alice_client.get("/afe/jobs/?owner=").context["rows"]]
    assert set(everyone) == {mine, theirs}
    assert [r["job"] for r in alice_client.get(f"/afe/jobs/?owner={root.login}").context["rows"]] == [theirs]


def test_jobs_list_filters_state_type_name_and_dates(alice_client, alice, lab):
    queued = make_job(alice, ["host1"], name="queued-one")
    running = make_job(alice, ["host2"], name="running-one")
    running.hostqueueentry_set.update(status=Status.RUNNING, active=True)
    finished = make_job(alice, ["host3"], name="finished-one")
    finished.hostqueueentry_set.update(status=Status.COMPLETED, complete=True)
    child = make_job(alice, name="child-one", parent_job=queued.pk)
    Job.objects.filter(pk=finished.pk).update(created_on=timezone.now() - timedelta(days=10))

    def shown(query: str) -> set[str]:
        response = alice_client.get("/afe/jobs/?" + query)
        assert response.status_code == 200
        return {row["job"].name for row in response.context["rows"]}

    assert shown("state=queued") == {"queued-one", "child-one"}
    assert shown("state=running") == {"running-one"}
    assert shown("state=finished") == {"finished-one"}
    assert shown("kind=parent") == {"queued-one"}
    assert shown("kind=child") == {"child-one"}
    assert shown("name=RUNNING") == {"running-one"}
    old = (timezone.now() - timedelta(days=5)).strftime("%Y-%m-%d")
    assert shown(f"created_before={old}") == {"finished-one"}
    assert shown(f"created_after={old}") == {"queued-one", "running-one", "child-one"}
    assert child.parent_job_id == queued.pk


@pytest.mark.parametrize("query", [
    "page=abc", "page=-1", "page=99999999999999999999", "per_page=x", "per_page=100000",
    "created_after=yesterday", "created_before=2024-13-45", "state=bogus", "kind=%00",
    "owner=" + "x" * 500, "name=%ff%fe", "created_after=0000-00-00",
])
def test_jobs_list_garbage_filters_never_fail(admin_client, query):
    response = admin_client.get("/afe/jobs/?" + query)
    assert response.status_code == 200


def test_jobs_list_reports_a_bad_date_next_to_its_field(admin_client):
    response = admin_client.get("/afe/jobs/?created_after=yesterday")
    assert "created_after" in response.context["form"].errors
    assert "Enter a valid date/time" in response.content.decode()


def test_bulk_abort_of_own_jobs(alice_client, alice, lab):
    jobs = [make_job(alice, [f"host{i}"], name=f"j{i}") for i in (1, 2)]
    response = alice_client.post("/afe/jobs/abort/", {"selected": [j.pk for j in jobs], "next": "/afe/jobs/?state="},
                                 follow=True)
    assert response.redirect_chain[-1][0] == "/afe/jobs/?state="
    assert "Abort requested for 2 entries." in followed_messages(response)
    assert HostQueueEntry.objects.filter(aborted=True).count() == 2


def test_bulk_abort_refused_names_the_rule_and_aborts_nothing(alice_client, alice, root, lab):
    mine = make_job(alice, ["host1"])
    theirs = make_job(root, ["host2"])  # a public host: a non-owner may not abort it
    response = alice_client.post("/afe/jobs/abort/", {"selected": [mine.pk, theirs.pk]}, follow=True)
    [message] = followed_messages(response)
    assert message.startswith("Nothing was aborted: abort_owner_or_acl:") and str(theirs.pk) in message
    assert not HostQueueEntry.objects.filter(aborted=True).exists()


def test_bulk_abort_with_no_or_garbage_selection(alice_client):
    response = alice_client.post("/afe/jobs/abort/", {"selected": ["x", "-3", ""], "next": "https://evil.example/"},
                                 follow=True)
    assert response.redirect_chain[-1][0] == "/afe/jobs/"
    assert followed_messages(response) == ["Select one or more jobs first."]


# --------------------------------------------------------------------------- job page


def test_job_page_shows_fields_entries_links_and_results(admin_client, root, lab, settings, tmp_path):
    settings.RESULTS_DIR = tmp_path
    parent = make_job(root, name="suite")
    job = make_job(root, ["host1"], name="the-job", meta_hosts=["board:x"], dependencies=["board:x"],
                   parent_job=parent.pk, email_list="a@example.com", keyvals={"k": "v"})
    entry = job.hostqueueentry_set.get(host__hostname="host1")
    entry.status, entry.execution_subdir, entry.started_on = Status.RUNNING, "host1", timezone.now()
    entry.save()
    tko = TkoJob.objects.create(tag=f"{job.tag()}/host1", afe_job_id=job.pk)
    test = TkoTest.objects.create(job=tko, test="sleeptest", subdir="sleeptest", kernel=TkoKernel.objects.create(),
                                  status=TkoStatus.objects.get(status_idx=TkoStatus.ids_by_word()["FAIL"]),
                                  reason="it broke")
    TkoTestAttribute.objects.create(test=test, attribute="iterations", value="3")

    response = admin_client.get(f"/afe/jobs/{job.pk}/")
    html = response.content.decode()
    for text in ["the-job", "board:x", "a@example.com", "k=v", "sleeptest", "it broke", "iterations=3", "FAIL",
                 f"/afe/jobs/{parent.pk}/", "board:x (label)", "Running", "Abort job",
                 f"/results/{job.pk}-admin/host1/", f"/afe/follow/{job.pk}-admin/host1/debug/autoserv.DEBUG",
                 "job.run_test(&#x27;sleeptest&#x27;)"]:
        assert text in html, text
    child_html = admin_client.get(f"/afe/jobs/{parent.pk}/").content.decode()
    assert "Child jobs" in child_html and f"/afe/jobs/{job.pk}/" in child_html


def test_job_page_fragment_and_missing_job(admin_client, root, lab):
    job = make_job(root, ["host1"])
    fragment = admin_client.get(f"/afe/jobs/{job.pk}/?partial=entries")
    assert fragment.status_code == 200 and b"<nav" not in fragment.content and b"host1" in fragment.content
    assert admin_client.get("/afe/jobs/999999/").status_code == 404
    assert admin_client.get("/afe/jobs/abc/").status_code == 404


def test_why_pending_from_a_real_tick_is_on_the_job_page_and_the_job_list(scheduler, admin_client, root, lab):
    job = Job.create(owner=root, name="waits", control_file="x", meta_hosts=["board:y"])
    before = admin_client.get(f"/afe/jobs/{job.pk}/").content.decode()
    assert "locked1 is locked" not in before  # nothing said before the scheduler has looked
    scheduler.tick(2)
    page = admin_client.get(f"/afe/jobs/{job.pk}/").content.decode()
    assert "Why pending" in page and "locked1 is locked" in page and "broken" in page
    assert "#1 in the queue" in page
    listing = admin_client.get("/afe/jobs/?owner=").content.decode()
    assert "locked1 is locked" in listing


def test_abort_whole_job_and_selected_entries(alice_client, alice, lab):
    job = make_job(alice, ["host1", "host2", "host3"])
    first = job.hostqueueentry_set.order_by("id").first()
    response = alice_client.post(f"/afe/jobs/{job.pk}/abort/", {"scope": "selected", "entry": [first.pk]}, follow=True)
    assert response.redirect_chain[-1][0] == f"/afe/jobs/{job.pk}/"
    assert list(HostQueueEntry.objects.filter(aborted=True)) == [first]
    alice_client.post(f"/afe/jobs/{job.pk}/abort/", follow=True)
    assert HostQueueEntry.objects.filter(aborted=True).count() == 3
    response = alice_client.post(f"/afe/jobs/{job.pk}/abort/", {"scope": "selected"}, follow=True)
    assert followed_messages(response) == ["Select one or more entries first."]


def test_abort_of_another_users_job_is_refused(alice_client, root, lab):
    job = make_job(root, ["host1"])
    response = alice_client.post(f"/afe/jobs/{job.pk}/abort/", follow=True)
    assert "abort_owner_or_acl" in followed_messages(response)[0]
    assert not HostQueueEntry.objects.filter(aborted=True).exists()


def test_clone_prefills_the_create_form(admin_client, root, lab):
    job = make_job(root, ["host1"], name="orig", meta_hosts=["2*board:x"], priority=60, run_verify=True)
    metahost_entry = job.hostqueueentry_set.filter(meta_host__isnull=False).first()
    metahost_entry.host = lab["host2"]
    metahost_entry.save()

    similar = admin_client.get(f"/afe/jobs/new/?clone={job.pk}&reuse=similar").context["form"].initial
    assert similar["name"] == "orig" and similar["hosts"] == ["host1"] and similar["meta_hosts"] == "2*board:x"
    assert similar["priority"] == "60" and similar["run_verify"] is True and similar["control_file"] == CONTROL
    same = admin_client.get(f"/afe/jobs/new/?clone={job.pk}&reuse=same").context["form"].initial
    assert same["hosts"] == ["host1", "host2"] and same["meta_hosts"] == "board:x"
    first = job.hostqueueentry_set.get(host=lab["host1"])
    selected = admin_client.get(f"/afe/jobs/new/?clone={job.pk}&reuse=same&entry={first.pk}").context["form"].initial
    assert selected["hosts"] == ["host1"] and selected["meta_hosts"] == ""
    via_post = admin_client.post(f"/afe/jobs/{job.pk}/abort/", {"do": "clone", "scope": "selected", "entry": [first.pk]})
    assert via_post["Location"] == f"/afe/jobs/new/?clone={job.pk}&reuse=same&entry={first.pk}"
    assert not HostQueueEntry.objects.filter(aborted=True).exists()
    missing = admin_client.get("/afe/jobs/new/?clone=424242")
    assert missing.status_code == 200 and "There is no job 424242 to clone." in texts(missing)
    assert admin_client.get("/afe/jobs/new/?clone=junk").status_code == 200


# --------------------------------------------------------------------------- create job


def form_data(**overrides) -> dict:
    data = {"name": "new-job", "priority": "40", "control_type": "2", "control_file": CONTROL,
            "run_reset": "on", "hosts": ["host1"]}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_create_job_on_hosts_metahosts_and_one_time_hosts(alice_client, alice, lab):
    response = alice_client.post("/afe/jobs/new/", form_data(
        hosts=["host1", "host2"], meta_hosts="2*board:x", one_time_hosts="spare1.example", dependencies="board:x",
        synch_count="1", reboot_before="0", reboot_after="2", timeout_mins="30", max_runtime_mins="60",
        email_list="a@example.com", run_verify="on", priority="60"))
    job = Job.objects.get(name="new-job")
    assert response.status_code == 302 and response["Location"] == f"/afe/jobs/{job.pk}/"
    assert job.owner == "alice" and job.priority == 60 and job.timeout_mins == 30 and job.run_verify
    assert job.reboot_after == 2 and job.email_list == "a@example.com"
    assert job.hostqueueentry_set.count() == 5
    assert list(job.dependency_labels.values_list("name", flat=True)) == ["board:x"]
    assert Host.objects.get(hostname="spare1.example").invalid


def test_create_hostless_job_from_an_upload(alice_client, lab):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("control.srv", b"print('suite')\n")
    response = alice_client.post("/afe/jobs/new/", form_data(
        hosts=None, control_file="", control_upload=upload, hostless="on", control_type="1"))
    job = Job.objects.get(name="new-job")
    assert response.status_code == 302
    assert job.control_file == "print('suite')\n" and job.control_type == ControlType.SERVER
    assert job.hostqueueentry_set.get().host_id is None


@pytest.mark.parametrize("overrides, field, text", [
    ({"hosts": None}, "hosts", "at least one of hosts"),
    ({"meta_hosts": "2*no-such-label"}, "meta_hosts", "Unknown labels"),
    ({"meta_hosts": "0*board:x"}, "meta_hosts", ""),
    ({"one_time_hosts": "host1"}, "hosts", "Duplicate hosts"),
    ({"one_time_hosts": "bad/host"}, "one_time_hosts", ""),
    ({"control_file": "   "}, "control_file", "Paste or upload"),
    ({"name": ""}, "name", "required"),
    ({"priority": "9999"}, "priority", "valid choice"),
    ({"synch_count": "5"}, "synch_count", "between 1 and"),
    ({"synch_count": "many"}, "synch_count", "whole number"),
    ({"timeout_mins": "-1"}, "timeout_mins", ""),
    ({"dependencies": "pool:zzz"}, "dependencies", "Unknown labels"),
    ({"hostless": "on"}, "hostless", "Hostless jobs cannot include any hosts"),
    ({"email_list": "not an address;;"}, "email_list", ""),
    ({"drone_set": "nope"}, "drone_set", "valid choice"),
    ({"hosts": ["no-such-host"]}, "hosts", "valid choice"),
])
def test_create_job_errors_are_shown_next_to_fields_and_nothing_is_written(alice_client, lab, overrides, field, text):
    hosts_before = Host.objects.count()
    response = alice_client.post("/afe/jobs/new/", form_data(**overrides))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert text in " ".join(errors[field])
    assert f'id="field-{field}"' in response.content.decode()
    assert not Job.objects.exists() and not HostQueueEntry.objects.exists()
    assert Host.objects.count() == hosts_before


def test_create_job_on_a_host_alice_may_not_use_is_refused(alice_client, make_host, lab):
    secret = private_host(make_host)
    response = alice_client.post("/afe/jobs/new/", form_data(hosts=[secret.hostname]))
    assert "do not have access" in " ".join(response.context["form"].errors["hosts"])
    assert not Job.objects.exists()


def test_create_job_rejects_a_non_utf8_upload(alice_client, lab):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = alice_client.post("/afe/jobs/new/", form_data(
        control_file="", control_upload=SimpleUploadedFile("c", b"\xff\xfe\x00")))
    assert "not UTF-8" in " ".join(response.context["form"].errors["control_upload"])


# --------------------------------------------------------------------------- hosts


def test_hosts_list_columns_and_filters(alice_client, alice, lab, make_host, private_group):
    make_host("plat1", ["platform-label"]).labels.update(platform=True)
    private_group.hosts.add(lab["host3"])
    AclGroup.rebalance_everyone()
    job = make_job(alice, ["host1"], name="busy-job")
    job.hostqueueentry_set.update(status=Status.RUNNING, active=True)
    Host.objects.filter(pk=lab["host1"].pk).update(status=Host.Status.RUNNING)

    def shown(query: str = "") -> set[str]:
        response = alice_client.get("/afe/hosts/?" + query)
        assert response.status_code == 200
        return {row["host"].hostname for row in response.context["rows"]}

    assert shown() == {"host1", "host2", "host3", "locked1", "plat1"}
    assert shown("status=Running") == {"host1"}
    assert shown("label=board:y") == {"locked1"}
    assert shown("locked=yes") == {"locked1"}
    assert shown("locked=no") == {"host1", "host2", "host3", "plat1"}
    assert shown("hostname=HOST") == {"host1", "host2", "host3"}
    secret = private_host(make_host)
    assert "secret1" in shown() and "secret1" not in shown("mine=on")
    html = alice_client.get("/afe/hosts/").content.decode()
    assert "busy-job" in html and "platform-label" in html and "broken" in html


@pytest.mark.parametrize("query", ["page=zz", "status=Exploded", "locked=maybe", "mine=%00", "per_page=-5",
                                   "label=" + "y" * 400])
def test_hosts_list_garbage_filters_never_fail(admin_client, query):
    assert admin_client.get("/afe/hosts/?" + query).status_code == 200


def test_bulk_lock_unlock_reverify_and_repair(alice_client, alice, lab):
    ids = [lab["host1"].pk, lab["host2"].pk]
    response = alice_client.post("/afe/hosts/action/", {"action": "lock", "selected": ids,
                                                        "lock_reason": "Device is under test"}, follow=True)
    assert followed_messages(response) == ["Locked 2 hosts."]
    host = Host.objects.get(pk=ids[0])
    assert host.locked and host.lock_reason == "Device is under test" and host.locked_by == alice
    alice_client.post("/afe/hosts/action/", {"action": "unlock", "selected": ids}, follow=True)
    assert not Host.objects.filter(pk__in=ids, locked=True).exists()
    response = alice_client.post("/afe/hosts/action/", {"action": "reverify", "selected": ids}, follow=True)
    assert "Queued Verify on 2 hosts" in followed_messages(response)[0]
    alice_client.post("/afe/hosts/action/", {"action": "repair", "selected": ids[:1]})
    assert SpecialTask.objects.filter(task="Verify").count() == 2 and SpecialTask.objects.filter(task="Repair").count() == 1


def test_bulk_lock_needs_a_reason_and_actions_need_a_selection(alice_client, lab):
    response = alice_client.post("/afe/hosts/action/", {"action": "lock", "selected": [lab["host1"].pk],
                                                        "lock_reason": "   "}, follow=True)
    assert "please give a lock reason" in followed_messages(response)[0]
    assert not Host.objects.get(pk=lab["host1"].pk).locked
    response = alice_client.post("/afe/hosts/action/", {"action": "lock", "lock_reason": "x"}, follow=True)
    assert followed_messages(response) == ["Select one or more hosts first."]
    response = alice_client.post("/afe/hosts/action/", {"action": "explode", "selected": [lab["host1"].pk]},
                                 follow=True)
    assert "Unknown action" in followed_messages(response)[0]


def test_host_actions_on_a_host_of_another_acl_group_are_refused(alice_client, lab, make_host):
    secret = private_host(make_host)
    for action in ["lock", "unlock", "reverify", "repair"]:
        response = alice_client.post("/afe/hosts/action/", {"action": action, "lock_reason": "mine now",
                                                            "selected": [secret.pk, lab["host1"].pk]}, follow=True)
        [message] = followed_messages(response)
        assert message.startswith(f"Nothing was done ({action}): host_acl:") and "secret1" in message
    assert not Host.objects.filter(locked=True).exclude(hostname="locked1").exists()
    assert not SpecialTask.objects.exists()


def test_host_page_shows_labels_acls_attributes_status_and_history(admin_client, root, lab, private_group):
    host = lab["host1"]
    host.set_attribute("serial", "XYZ")
    private_group.hosts.add(host)
    job = make_job(root, ["host1"], name="hist-job")
    entry = job.hostqueueentry_set.get()
    entry.status, entry.execution_subdir, entry.started_on = Status.RUNNING, "host1", timezone.now()
    entry.save()
    task = SpecialTask.objects.create(host=host, task="Verify", requested_by=root)
    task.activate()
    html = admin_client.get(f"/afe/hosts/{host.pk}/").content.decode()
    for text in ["board:x", "pool:a", "team-a", "serial=XYZ", "No protection", "hist-job", "Verify",
                 f"/results/hosts/host1/{task.pk}-verify/", f"/results/{job.pk}-admin/host1/",
                 f"/afe/follow/hosts/host1/{task.pk}-verify/debug/autoserv.DEBUG", "Lock"]:
        assert text in html, text
    fragment = admin_client.get(f"/afe/hosts/{host.pk}/?partial=status")
    assert b"<nav" not in fragment.content and b"hist-job" in fragment.content
    assert admin_client.get("/afe/hosts/0/").status_code == 404


def test_host_page_actions(alice_client, lab):
    host = lab["host2"]
    alice_client.post(f"/afe/hosts/{host.pk}/action/", {"action": "lock", "lock_reason": "Device is defective"})
    host.refresh_from_db()
    assert host.locked and host.lock_reason == "Device is defective"
    assert b"Unlock" in alice_client.get(f"/afe/hosts/{host.pk}/").content
    response = alice_client.post(f"/afe/hosts/{host.pk}/action/", {"action": "unlock"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/afe/hosts/{host.pk}/" and "Unlocked 1 host." in followed_messages(response)
    alice_client.post(f"/afe/hosts/{host.pk}/action/", {"action": "repair"})
    alice_client.post(f"/afe/hosts/{host.pk}/action/", {"action": "reverify"})
    assert set(SpecialTask.objects.filter(host=host).values_list("task", flat=True)) == {"Repair", "Verify"}


# --------------------------------------------------------------------------- results and logs


@pytest.fixture
def results_dir(settings, tmp_path):
    root = tmp_path / "results"
    (root / "12-alice" / "host1" / "debug").mkdir(parents=True)
    (root / "12-alice" / "host1" / "debug" / "autoserv.DEBUG").write_text("line 1\nline 2\n")
    (root / "12-alice" / "keyval").write_text("job_queued=1 <b>\n")
    (root / "12-alice" / "core.bin").write_bytes(b"\x00\x01binary")
    (root / "big.log").write_bytes(b"x" * 1_100_000)
    (tmp_path / "outside.txt").write_text("secret")
    os.symlink(tmp_path / "outside.txt", root / "escape")
    os.symlink(tmp_path, root / "escape-dir")
    settings.RESULTS_DIR = root
    return root


def test_results_listing_text_and_downloads(alice_client, results_dir):
    listing = alice_client.get("/results/12-alice/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert 'href="/results/12-alice/host1/"' in html and 'href="/results/12-alice/keyval"' in html
    text = alice_client.get("/results/12-alice/keyval")
    assert text.status_code == 200 and "job_queued=1 &lt;b&gt;" in text.content.decode()
    raw = alice_client.get("/results/12-alice/keyval?raw=1")
    assert raw["Content-Type"].startswith("text/plain") and b"".join(raw.streaming_content) == b"job_queued=1 <b>\n"
    binary = alice_client.get("/results/12-alice/core.bin")
    assert "attachment" in binary["Content-Disposition"]
    big = alice_client.get("/results/big.log")
    assert "attachment" in big["Content-Disposition"]
    assert alice_client.get("/results/").status_code == 200


@pytest.mark.parametrize("path", [
    "/results/../outside.txt", "/results/12-alice/../../outside.txt", "/results/%2e%2e/outside.txt",
    "/results/escape", "/results/escape-dir/outside.txt", "/results/escape-dir/", "/results/nope",
    "/results//etc/passwd", "/results/12-alice/%00", "/afe/tail/../outside.txt", "/afe/tail/escape",
    "/afe/follow/../outside.txt", "/afe/tail/12-alice/",
])
def test_results_paths_outside_the_results_dir_are_404(alice_client, results_dir, path):
    response = alice_client.get(path)
    assert response.status_code == 404
    assert b"secret" not in response.content


def test_following_a_log_from_a_byte_offset(alice_client, results_dir):
    log = "12-alice/host1/debug/autoserv.DEBUG"
    page = alice_client.get(f"/afe/follow/{log}")
    assert page.status_code == 200 and f'data-follow="/afe/tail/{log}"'.encode() in page.content
    first = alice_client.get(f"/afe/tail/{log}")
    assert first.content == b"line 1\nline 2\n" and first["X-Log-Offset"] == "14"
    with open(results_dir / log, "a") as handle:
        handle.write("line 3\n")
    more = alice_client.get(f"/afe/tail/{log}?offset=14")
    assert more.content == b"line 3\n" and more["X-Log-Offset"] == "21"
    assert alice_client.get(f"/afe/tail/{log}?offset=21").content == b""
    for junk in ["abc", "-5", "99999999999"]:
        assert alice_client.get(f"/afe/tail/{log}?offset={junk}").status_code == 200
    not_yet = alice_client.get("/afe/tail/13-alice/host1/debug/autoserv.DEBUG")
    assert not_yet.status_code == 200 and not_yet.content == b"" and not_yet["X-Log-Offset"] == "0"


# --------------------------------------------------------------------------- live fragments


def test_list_fragments_render_only_the_rows(admin_client, root, lab):
    make_job(root, ["host1"], name="frag-job")
    jobs = admin_client.get("/afe/jobs/?owner=&partial=rows")
    assert jobs.status_code == 200 and b"frag-job" in jobs.content and b"<nav" not in jobs.content
    hosts = admin_client.get("/afe/hosts/?partial=rows")
    assert b"host1" in hosts.content and b"<nav" not in hosts.content
    page = admin_client.get("/afe/jobs/?owner=").content.decode()
    assert 'data-poll="?owner=&amp;partial=rows"' in page and "afe/poll.js" in page


# --------------------------------------------------------------------------- queries per page


def count_queries(client, url: str) -> int:
    client.get(url)  # warm the session and the AFE user
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def test_a_page_of_100_jobs_costs_the_same_queries_as_10(admin_client, root, lab, figures):
    hosts = ["host1", "host2", "host3"]

    def fill(n: int) -> None:
        for i in range(n - Job.objects.count()):
            job = make_job(root, hosts, name=f"bulk{i}", dependencies=["board:x"])
            job.hostqueueentry_set.filter(host__hostname="host2").update(status=Status.RUNNING, active=True)

    url = "/afe/jobs/?owner=&per_page=100"
    fill(10)
    ten = count_queries(admin_client, url)
    fill(100)
    hundred = count_queries(admin_client, url)
    figures.append(f"pages: jobs list {ten} queries for 10 jobs, {hundred} for 100")
    assert ten == hundred


def test_a_page_of_100_hosts_costs_the_same_queries_as_10(admin_client, root, make_host, figures, private_group):
    def fill(n: int) -> None:
        for i in range(Host.objects.count(), n):
            host = make_host(f"bulk{i}", ["board:x", f"pool:{i % 3}"], locked=bool(i % 2), lock_reason="r")
            private_group.hosts.add(host)
            make_job(root, [host.hostname]).hostqueueentry_set.update(status=Status.RUNNING, active=True)
            SpecialTask.objects.create(host=host, task="Verify", requested_by=root).activate()

    url = "/afe/hosts/?per_page=100"
    fill(10)
    ten = count_queries(admin_client, url)
    fill(100)
    hundred = count_queries(admin_client, url)
    figures.append(f"pages: hosts list {ten} queries for 10 hosts, {hundred} for 100")
    assert ten == hundred


def test_a_job_of_100_entries_costs_the_same_queries_as_10(admin_client, root, make_host, figures):
    def job_with(n: int) -> Job:
        names = [make_host(f"e{n}-{i}", ["board:x"]).hostname for i in range(n)]
        return make_job(root, names)

    ten = count_queries(admin_client, f"/afe/jobs/{job_with(10).pk}/")
    hundred = count_queries(admin_client, f"/afe/jobs/{job_with(100).pk}/")
    figures.append(f"pages: job page {ten} queries for 10 entries, {hundred} for 100")
    assert ten == hundred
