"""Generated hostile input (hypothesis) against the name rules, the path builder and Job.create.

Whatever is thrown at them: a success or a ValidationError (UnsafePath for
paths), nothing half-written, and no path outside its root.
"""
from __future__ import annotations

import os
import string
import tempfile
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afe import names
from afe.models import Host, HostQueueEntry, Job, JobKeyval, Label, User
from afe.paths import UnsafePath, inside

# Text that leans towards what breaks paths, command lines and keyval files.
NASTY = st.sampled_from(["/", "..", ".", ",", "@", ":", "\x00", "\n", "\r", "\t", "*", "=", " ", "-", "\udcff",
                         "é", "試", "~", "$", "`", "\\", "%2e"])
TEXT = st.lists(st.one_of(NASTY, st.text(max_size=8)), max_size=12).map("".join) | st.text(max_size=300)
VALIDATORS = [
    names.validate_hostname, names.validate_login, names.validate_label_name, names.validate_job_name,
    names.validate_keyval_key, names.validate_submitted_keyval_key, names.validate_keyval_value,
    names.validate_attribute_name, names.validate_attribute_value, names.validate_email_list,
    names.validate_group_name,
]
ANYTHING = st.one_of(TEXT, st.binary(max_size=20), st.integers(), st.none(), st.booleans(), st.floats(),
                     st.lists(TEXT, max_size=3), st.dictionaries(TEXT, TEXT, max_size=2))
CONTROL_FILES = st.one_of(TEXT, st.text(alphabet=string.printable, max_size=2000), st.binary(max_size=50))
COMMON = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@COMMON
@given(value=ANYTHING, validate=st.sampled_from(VALIDATORS))
def test_a_validator_returns_text_or_raises_a_validation_error(value, validate):
    try:
        result = validate(value)
    except ValidationError:
        return
    assert isinstance(result, str)
    result.encode("utf-8")  # storable on every database


@COMMON
@given(value=TEXT)
def test_an_accepted_hostname_is_one_safe_path_component_and_one_machine(value):
    try:
        hostname = names.validate_hostname(value)
    except ValidationError:
        return
    assert not set(hostname) & set(",@:/\\ \x00\n") and ".." not in hostname and len(hostname) <= 200
    root = Path(tempfile.gettempdir()) / "hardening-root"
    assert inside(root, "hosts", hostname).parent == root.resolve() / "hosts"


@pytest.fixture(scope="module")
def root_with_escape_links():
    """A results root holding links that point out of it."""
    with tempfile.TemporaryDirectory() as top:
        root = Path(top) / "results"
        (root / "job").mkdir(parents=True)
        os.symlink("/etc", root / "etc-link")
        os.symlink("..", root / "job" / "up")
        yield root


@COMMON
@given(parts=st.lists(st.one_of(TEXT, st.sampled_from(["etc-link", "job/up", "job/up/..", "job", "a/b"])),
                      min_size=1, max_size=4))
def test_a_built_path_is_inside_its_root_or_refused(root_with_escape_links, parts):
    root = root_with_escape_links.resolve()
    try:
        path = inside(root, *parts)
    except UnsafePath:
        return
    assert path == root or root in path.parents
    assert path.resolve() == path  # nothing left to resolve: no link leads out


def rows() -> tuple[int, ...]:
    return (Job.objects.count(), HostQueueEntry.objects.count(), Host.objects.count(), Label.objects.count(),
            JobKeyval.objects.count())


JOB_ARGUMENTS = st.fixed_dictionaries({}, optional={
    "name": ANYTHING,
    "control_file": CONTROL_FILES,
    "control_type": st.one_of(st.sampled_from([1, 2, "Server", "Client", "client"]), ANYTHING),
    "priority": st.one_of(st.sampled_from([10, 40, 80, "Super", "Default"]), ANYTHING),
    "hosts": st.one_of(st.lists(st.one_of(st.sampled_from(["host1", "host2", "host1 "]), TEXT), max_size=3),
                       ANYTHING),
    "meta_hosts": st.one_of(
        st.lists(st.one_of(st.sampled_from(["board:x", "2*board:x", "100000000*board:x", "pool:a"]), TEXT),
                 max_size=3),
        ANYTHING),
    "one_time_hosts": st.one_of(st.lists(TEXT, max_size=2), ANYTHING),
    "dependencies": st.one_of(st.lists(st.one_of(st.sampled_from(["board:x", "cros-version:R1"]), TEXT), max_size=2),
                              ANYTHING),
    "keyvals": st.one_of(st.dictionaries(TEXT, st.one_of(TEXT, st.integers()), max_size=3), ANYTHING),
    "synch_count": st.one_of(st.integers(-2, 5), ANYTHING),
    "timeout_mins": st.one_of(st.integers(-5, 10**12), ANYTHING),
    "parent_job": st.one_of(st.integers(-1, 2**64), ANYTHING),
    "hostless": st.one_of(st.booleans(), ANYTHING),
    "run_verify": st.one_of(st.booleans(), ANYTHING),
    "email_list": st.one_of(st.sampled_from(["a@example.com", "a@b, c@d"]), ANYTHING),
    "drone_set": ANYTHING,
})


@COMMON
@given(arguments=JOB_ARGUMENTS)
def test_job_create_succeeds_or_refuses_and_writes_nothing(lab, system_user, arguments):
    arguments = {"name": "generated", "control_file": "pass", **arguments}
    with transaction.atomic():
        before = rows()
        try:
            job = Job.create(owner=system_user, **arguments)
        except ValidationError as exc:
            assert exc.message_dict  # it names the argument(s)
            assert rows() == before
        else:
            assert Job.objects.filter(pk=job.pk).exists()
            assert job.hostqueueentry_set.count() >= 1
            for entry in job.hostqueueentry_set.select_related("host"):
                if entry.host_id:
                    names.validate_hostname(entry.host.hostname)
        transaction.set_rollback(True)  # every example starts from the same lab


@COMMON
@given(login=TEXT)
def test_a_user_is_saved_only_with_a_valid_login(db, login):
    with transaction.atomic():
        before = User.objects.count()
        try:
            user = User.objects.create(login=login)
        except ValidationError:
            assert User.objects.count() == before
        else:
            assert names.validate_login(user.login) == login
        transaction.set_rollback(True)
