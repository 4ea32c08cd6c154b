"""bin/atest, the Python 3 command-line client (spec/afe-rpc-wire.md §1-§4, afe-frontend.md §5.2).

Unit tests run ``afe.atest.main`` against a tiny fake JSON-RPC server that
records every request and answers from canned results; they check the exact
request bodies atest sends, its output formats and its exit statuses. The
end-to-end tests run ``bin/atest`` as a subprocess against the project
served by pytest-django's ``live_server``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from afe.atest import main, rpc

ROOT = Path(__file__).resolve().parent.parent
ATEST = ROOT / "bin" / "atest"


# -- a fake AFE ------------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def method(self) -> str:
        return self.json["method"]

    @property
    def kwargs(self) -> dict[str, Any]:
        params = self.json["params"]
        assert isinstance(params, list) and len(params) == 1 and isinstance(params[0], dict), params
        return params[0]


def rpc_error(name: str, message: str, traceback: str = "Traceback (most recent call last):\n  ...\n") -> dict:
    return {"__error__": {"name": name, "message": message, "traceback": traceback}}


@dataclass
class FakeAfe:
    """Answers ``answers[method]``: a value, a callable of the kwargs, or a list of those (one per call)."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    raw_body: bytes | None = None
    delay: float = 0.0

    def answer(self, request: Request) -> bytes:
        if self.raw_body is not None:
            return self.raw_body
        answer = self.answers.get(request.method)
        if isinstance(answer, list) and answer and isinstance(answer[0], Answer):
            answer = answer.pop(0).value if len(answer) > 1 else answer[0].value
        if callable(answer):
            answer = answer(request.kwargs)
        if isinstance(answer, dict) and "__error__" in answer:
            return json.dumps({"result": None, "id": "jsonrpc", "error": answer["__error__"]}).encode()
        return json.dumps({"result": answer, "id": "jsonrpc", "error": None}).encode()

    def calls(self, method: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        return [(r.method, r.kwargs) for r in self.requests if method in (None, r.method)]

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]


@dataclass
class Answer:
    """One answer in a sequence: ``answers["m"] = [Answer(first), Answer(then)]``."""

    value: Any


@pytest.fixture
def afe(monkeypatch) -> Iterator[FakeAfe]:
    fake = FakeAfe()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            fake.requests.append(request)
            if fake.delay:
                time.sleep(fake.delay)
            payload = fake.answer(request)
            self.send_response(fake.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AUTOTEST_WEB", fake.url)
    monkeypatch.setenv("AUTOTEST_USER", "alice")
    monkeypatch.delenv("AUTOTEST_CLI_NO_WRAP", raising=False)
    monkeypatch.delenv("AUTOTEST_CLI_DEBUG", raising=False)
    yield fake
    server.shutdown()
    server.server_close()


@dataclass
class Run:
    status: int
    out: str
    err: str


@pytest.fixture
def atest(capsys, monkeypatch) -> Callable[..., Run]:
    def run(*argv: str, stdin: str | None = None) -> Run:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", __import__("io").StringIO(stdin))
        status = main(list(argv))
        captured = capsys.readouterr()
        return Run(status, captured.out, captured.err)

    return run


def host_row(hostname: str, **fields: Any) -> dict[str, Any]:
    row = {"id": 1, "hostname": hostname, "status": "Ready", "shard": None, "locked": False,
           "lock_reason": "", "locked_by": None, "lock_time": None, "platform": None, "labels": [],
           "protection": "No protection", "attributes": {}, "acls": ["Everyone"], "invalid": False}
    row.update(fields)
    return row


# -- §1 transport and §2 the captured requests ------------------------------------------------


def test_host_create_sends_the_captured_add_host_then_unlocks(afe, atest):
    afe.answers["add_host"] = 7
    run = atest("host", "create", "acc352776a1-dut2.invalid")
    assert run.status == 0, run.err
    assert afe.calls() == [
        ("add_host", {"hostname": "acc352776a1-dut2.invalid", "status": "Ready", "locked": True,
                      "lock_reason": "Forced lock on device creation"}),
        ("modify_host", {"id": "acc352776a1-dut2.invalid", "locked": False, "lock_reason": ""}),
    ]
    assert run.out == "Added host: \n\tacc352776a1-dut2.invalid\n"
    assert run.err == ""


def test_the_request_is_the_clients_post_with_a_bare_login_and_form_content_type(afe, atest):
    afe.answers["get_hosts"] = []
    atest("host", "list")
    (request,) = afe.requests
    assert request.path == "/afe/server/noauth/rpc/?method=get_hosts"
    assert request.headers["authorization"] == "alice"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["user-agent"].startswith("Python-urllib/3.")
    assert "cookie" not in request.headers
    # One line of JSON with the default separators, keys in the order method, params, id.
    assert request.body == b'{"method": "get_hosts", "params": [{}], "id": "jsonrpc"}'


def test_job_list_by_id_sends_running_null(afe, atest):
    afe.answers["get_jobs_summary"] = [{"id": 1, "owner": "alice", "name": "j1", "status_counts": {"Queued": 1}}]
    run = atest("job", "list", "1")
    assert run.status == 0, run.err
    assert afe.calls() == [("get_jobs_summary", {"running": None, "id__in": ["1"]})]
    assert afe.requests[0].body == (b'{"method": "get_jobs_summary", "params": '
                                    b'[{"running": null, "id__in": ["1"]}], "id": "jsonrpc"}')


def test_job_abort_sends_string_ids(afe, atest):
    run = atest("job", "abort", "1")
    assert run.status == 0, run.err
    assert afe.calls() == [("abort_host_queue_entries", {"job__id__in": ["1"]})]
    assert run.out == "Aborting jobs: 1\n"


def test_job_create_sends_exactly_the_captured_create_job(afe, atest, tmp_path):
    control = tmp_path / "cf"
    control.write_text("job.run_test('sleeptest')\n")
    afe.answers["create_job"] = 42
    run = atest("job", "create", "-f", str(control), "-m", "h1,h2", "-o", "30", "--max_runtime", "60",
                "-B", "always", "-a", "never", "--parse-failed-repair", "true", "-n", "-d", "dep1",
                "-e", "a@b", "-p", "50", "-y", "2", "-s", "--one-time-hosts", "oth1", "jname")
    assert run.status == 0, run.err
    ((method, kwargs),) = afe.calls()
    assert method == "create_job"
    assert sorted(kwargs.pop("hosts")) == ["h1", "h2"]  # list order is arbitrary in atest
    assert kwargs == {
        "control_file": "job.run_test('sleeptest')\n", "control_type": "Server", "dependencies": ["dep1"],
        "email_list": "a@b", "max_runtime_mins": "60", "meta_hosts": [], "name": "jname",
        "one_time_hosts": ["oth1"], "parse_failed_repair": True, "priority": 50, "reboot_after": "Never",
        "reboot_before": "Always", "require_ssp": False, "run_verify": False, "synch_count": 2,
        "timeout_mins": "30",
    }
    assert run.out == "Created job: \n\t'jname (id 42)'\n"


def test_job_create_defaults_and_metahosts(afe, atest, tmp_path):
    control = tmp_path / "cf"
    control.write_text("pass\n")
    afe.answers["create_job"] = 3
    run = atest("job", "create", "-f", str(control), "-m", "2*pool,*board", "j")
    assert run.status == 0, run.err
    assert afe.calls() == [("create_job", {
        "priority": 40, "name": "j", "email_list": "", "control_file": "pass\n", "control_type": "Client",
        "hosts": [], "meta_hosts": ["pool", "pool", "board"], "dependencies": [], "require_ssp": False,
        "synch_count": 1,
    })]


def test_job_create_with_labels_and_tests_asks_for_hosts_and_a_control_file(afe, atest):
    afe.answers["get_hosts"] = [host_row("h1"), host_row("h2")]
    afe.answers["generate_control_file"] = {"control_file": "cf", "synch_count": 1, "is_server": True,
                                            "dependencies": ["d2"]}
    afe.answers["create_job"] = 9
    run = atest("job", "create", "-t", "sleeptest,dummy", "-b", "pool:a,board:x", "-d", "d1", "j")
    assert run.status == 0, run.err
    assert afe.calls()[:2] == [("get_hosts", {"multiple_labels": ["pool:a", "board:x"]}),
                               ("generate_control_file", {"tests": ["sleeptest", "dummy"]})]
    create = afe.calls("create_job")[0][1]
    assert create["hosts"] == ["h1", "h2"] and create["control_type"] == "Server"
    assert create["dependencies"] == ["d1", "d2"] and create["control_file"] == "cf"


def test_host_list_filters(afe, atest):
    afe.answers["get_hosts"] = []
    assert atest("host", "list", "-b", "pool*", "-s", "Ready,Running", "-a", "acl1", "-u", "bob",
                 "--unlocked").status == 0
    assert atest("host", "list", "-b", "a,b").status == 0
    assert atest("host", "list", "h*").status == 0
    assert atest("host", "list", "--locked", "-b", "x").status == 0
    assert afe.calls() == [
        ("get_hosts", {"aclgroup__name": "acl1", "aclgroup__users__login": "bob",
                       "labels__name__startswith": "pool", "locked": False, "status__in": ["Ready", "Running"]}),
        ("get_hosts", {"multiple_labels": ["a", "b"]}),
        ("get_hosts", {"hostname__startswith": "h"}),
        ("get_hosts", {"labels__name__in": ["x"], "locked": True}),
    ]


def test_job_clone_sends_string_id_and_passes_the_job_back(afe, atest):
    afe.answers["get_info_for_clone"] = {
        "job": {"id": 12, "name": "old", "owner": "bob", "created_on": "2026-01-01 00:00:00",
                "control_file": "cf", "control_type": "Client", "priority": 30, "synch_count": 1,
                "reboot_before": "If dirty", "timeout_mins": 60},
        "meta_host_counts": {"board:x": 2}, "hosts": [{"hostname": "h1"}],
    }
    afe.answers["create_job"] = 13
    run = atest("job", "clone", "--id", "12", "-r", "new")
    assert run.status == 0, run.err
    assert afe.calls() == [
        ("get_info_for_clone", {"id": "12", "preserve_metahosts": True}),
        ("create_job", {"priority": 30, "name": "new", "email_list": "", "hosts": ["h1"],
                        "meta_hosts": ["board:x", "board:x"], "control_file": "cf", "control_type": "Client",
                        "synch_count": 1, "reboot_before": "If dirty", "timeout_mins": 60}),
    ]
    assert run.out == "Created job: \n\t'new (id 13)'\n"


def test_job_create_clone_is_the_old_spelling_of_job_clone(afe, atest):
    afe.answers["get_info_for_clone"] = {"job": {"id": 1, "name": "a", "owner": "x", "created_on": None},
                                         "meta_host_counts": {}, "hosts": []}
    afe.answers["create_job"] = 2
    assert atest("job", "create", "--clone", "1", "-m", "h9", "b").status == 0
    assert afe.calls()[0] == ("get_info_for_clone", {"id": "1", "preserve_metahosts": False})


def test_user_list_filters(afe, atest):
    afe.answers["get_users"] = [{"id": 1, "login": "alice", "access_level": 0}]
    run = atest("user", "list", "-a", "acl1", "-l", "0")
    assert afe.calls() == [("get_users", {"access_level__in": ["0"], "aclgroup__name__in": ["acl1"]})]
    assert run.out == "Login\nalice\n"
    run = atest("user", "list", "-v", "alice")
    assert afe.calls()[-1] == ("get_users", {"login__in": ["alice"]})
    assert run.out == "Id  Login  Access Level\n1   alice  0\n"


def test_the_other_argument_shapes_of_the_table(afe, atest):
    afe.answers.update({"get_labels": [], "get_acl_groups": [], "get_host_queue_entries": [],
                        "get_hosts": [host_row("h1", id=5)]})
    atest("label", "list", "-m", "h1")
    atest("acl", "list", "-u", "bob")
    atest("acl", "list", "-m", "h1")
    atest("host", "jobs", "h1", "-q", "5")
    atest("label", "create", "-t", "plat")
    atest("label", "delete", "--no-confirmation", "l1")
    atest("acl", "create", "a1", "-d", "some team")
    atest("acl", "delete", "--no-confirmation", "a1")
    atest("host", "delete", "--no-confirmation", "h1")
    atest("label", "add", "l1", "-m", "h1")
    atest("label", "remove", "l1", "-m", "h1")
    atest("acl", "add", "a1", "-u", "bob", "-m", "h1")
    atest("acl", "remove", "a1", "-u", "bob")
    assert afe.calls() == [
        ("get_labels", {"host__hostname__in": ["h1"]}),
        ("get_acl_groups", {"users__login": "bob"}),
        ("get_acl_groups", {"hosts__hostname": "h1"}),
        ("get_host_queue_entries", {"host__hostname": "h1", "query_limit": 5, "sort_by": ["-job__id"]}),
        ("add_label", {"platform": True, "only_if_needed": False, "name": "plat"}),
        ("delete_label", {"id": "l1"}),
        ("add_acl_group", {"description": "some team", "name": "a1"}),
        ("delete_acl_group", {"id": "a1"}),
        ("delete_host", {"id": "h1"}),
        ("label_add_hosts", {"id": "l1", "hosts": ["h1"]}),
        ("label_remove_hosts", {"id": "l1", "hosts": ["h1"]}),
        ("acl_group_add_users", {"id": "a1", "users": ["bob"]}),
        ("acl_group_add_hosts", {"id": "a1", "hosts": ["h1"]}),
        ("acl_group_remove_users", {"id": "a1", "users": ["bob"]}),
    ]


def test_host_create_with_labels_platform_acls_and_attributes(afe, atest):
    afe.answers.update({"add_host": 1, "get_labels": lambda kw: [{"name": "exists"}] if kw["name"] == "exists" else [],
                        "get_acl_groups": []})
    run = atest("host", "create", "-b", "exists,new", "-t", "plat", "-a", "team", "-i", "serials=abc",
                "-p", "Do not verify", "-l", "-r", "bench", "h1")
    assert run.status == 0, run.err
    assert afe.calls() == [
        ("add_host", {"hostname": "h1", "status": "Ready", "locked": True, "lock_reason": "bench",
                      "protection": "Do not verify"}),
        ("get_labels", {"name": "exists"}),
        ("get_labels", {"name": "new"}),
        ("add_label", {"name": "new"}),
        ("host_add_labels", {"id": "h1", "labels": ["exists", "new"]}),
        ("get_labels", {"name": "plat"}),
        ("add_label", {"platform": True, "name": "plat"}),
        ("host_add_labels", {"id": "h1", "labels": ["plat"]}),
        ("set_host_attribute", {"attribute": "serials", "value": "abc", "hostname": "h1"}),
        ("get_acl_groups", {"name": "team"}),
        ("add_acl_group", {"name": "team"}),
        ("acl_group_add_hosts", {"id": "team", "hosts": ["h1"]}),
    ]  # -l: no unlock at the end
    assert run.out == "Added host: \n\th1\n"


def test_host_mod_lock_labels_and_acls(afe, atest):
    afe.answers.update({
        "get_hosts": [host_row("h1", id=5)],
        "get_labels": lambda kw: ([{"id": 3, "name": "old", "platform": False},
                                   {"id": 4, "name": "plat", "platform": True}] if "host" in kw else [{"name": kw["name"]}]),
        "get_acl_groups": lambda kw: ([{"id": 1, "name": "Everyone"}, {"id": 8, "name": "other"}]
                                      if "hosts" in kw else [{"name": kw["name"]}]),
    })
    run = atest("host", "mod", "--lock", "-r", "broken", "-f", "-b", "new", "-a", "team", "h1")
    assert run.status == 0, run.err
    assert afe.calls() == [
        ("get_hosts", {"hostname__in": ["h1"]}),
        ("modify_host", {"id": "h1", "locked": True, "lock_reason": "broken", "force_modify_locking": True}),
        ("get_labels", {"host": 5}),
        ("host_remove_labels", {"id": 5, "labels": [3]}),
        ("get_labels", {"name": "new"}),
        ("host_add_labels", {"id": "h1", "labels": ["new"]}),
        ("get_acl_groups", {"hosts": 5}),
        ("acl_group_remove_hosts", {"id": 8, "hosts": ["h1"]}),
        ("get_acl_groups", {"name": "team"}),
        ("acl_group_add_hosts", {"id": "team", "hosts": ["h1"]}),
    ]
    assert run.out == "Locked host: \n\th1\n"
    afe.requests.clear()
    run = atest("host", "mod", "--unlock", "h1", "h9")
    assert afe.calls("modify_host") == [("modify_host", {"id": "h1", "locked": False, "lock_reason": ""})]
    assert run.status == 1
    assert run.out == "Unlocked host: \n\th1\n"
    assert run.err == "Failed to modify:\n    Cannot modify non-existant host h9.\n"


# -- output formats -----------------------------------------------------------------------------


def test_host_list_table_and_parse(afe, atest):
    afe.answers["get_hosts"] = [
        host_row("host1", labels=["board:x", "plat", "pool:a"], platform="plat"),
        host_row("longer-host2", status="Running", locked=True, lock_reason="bench", locked_by="alice"),
    ]
    run = atest("host", "list")
    assert run.status == 0
    assert run.out.splitlines() == [
        "Host          Status   Shard  Locked  Lock Reason  Locked by  Platform  Labels",
        "host1         Ready    None   False                None       plat      board:x, pool:a",
        "longer-host2  Running  None   True    bench        alice                ",
    ]
    run = atest("host", "list", "--parse")
    assert run.out.splitlines() == [
        "Host=host1|Status=Ready|Shard=None|Locked=False|Locked by=None|Platform=plat|Labels=board:x, pool:a",
        "Host=longer-host2|Status=Running|Shard=None|Locked=True|Lock Reason=bench|Locked by=alice",
    ]
    assert atest("host", "list", "--parse", "--parse-delim", ";").out.startswith("Host=host1;Status=Ready;")
    assert atest("host", "list", "-N").out == "host1 longer-host2\n"
    assert atest("host", "list", "-N", "--parse").out == "Host=host1,longer-host2\n"


def test_host_list_reports_unknown_hosts_on_stderr_and_fails(afe, atest):
    afe.answers["get_hosts"] = [host_row("h1")]
    run = atest("host", "list", "h1", "h9")
    assert afe.calls() == [("get_hosts", {"hostname__in": ["h1", "h9"]})]
    assert run.out.startswith("Host  Status")
    assert run.err == "Unknown host(s): \n        h9\n"
    assert run.status == 1


def test_host_stat_output(afe, atest):
    afe.answers.update({
        "get_hosts": [host_row("h1", id=4, platform="plat", lock_time=None, attributes={"serials": "x"})],
        "get_acl_groups": [{"id": 1, "name": "Everyone"}, {"id": 2, "name": "team"}],
        "get_labels": [{"id": 3, "name": "board:x", "platform": False}, {"id": 4, "name": "plat", "platform": True}],
    })
    run = atest("host", "stat", "h1")
    assert run.status == 0, run.err
    assert afe.calls() == [("get_hosts", {"hostname": "h1"}), ("get_acl_groups", {"hosts__hostname": "h1"}),
                           ("get_labels", {"host__hostname": "h1"})]
    assert run.out == (
        "-----\nHost: h1\nId: 4\nPlatform: plat\nStatus: Ready\nLocked: False\nLocked by: None\n"
        "Locked time: None\nLock Reason: \nProtection: No protection\n"
        "\nACLs:\nId  Name\n1   Everyone\n2   team\n"
        "\nLabels:\nId  Name\n3   board:x\n"
        "\nHost Attributes\nserials : x\n"
    )
    run = atest("host", "stat", "--parse", "h1")
    assert run.out == (
        "-----\nHost=h1|Id=4|Platform=plat|Status=Ready|Locked=False|Locked by=None|Locked time=None|"
        "Protection=No protection\n\nACLs= Id=1|Name=Everyone|Id=2|Name=team\n\nLabels= Id=3|Name=board:x\n"
        "\nHost Attributes\nserials : x\n"
    )
    afe.answers["get_hosts"] = []
    run = atest("host", "stat", "h9")
    assert (run.status, run.out, run.err) == (1, "", "Failed to stat:\n    Unknown host h9\n")


def test_host_jobs_output(afe, atest):
    afe.answers["get_host_queue_entries"] = [
        {"status": "Completed", "job": {"id": 12, "owner": "alice", "name": "sleeper"}, "host": {"hostname": "h1"}}]
    run = atest("host", "jobs", "h1")
    assert run.out == "-----\nHostname: h1\nJob Id  Job Owner  Job Name  Status\n12      alice      sleeper   Completed\n"


def test_job_list_and_stat_output(afe, atest, monkeypatch):
    afe.answers["get_jobs_summary"] = [
        {"id": 5, "owner": "alice", "name": "j5", "priority": 40, "control_type": "Client",
         "created_on": "2026-01-02 03:04:05", "status_counts": {"Running": 1, "Queued": 3}}]
    afe.answers["get_host_queue_entries"] = [
        {"status": "Running", "job": {"id": 5}, "host": {"hostname": "h1"}},
        {"status": "Queued", "job": {"id": 5}, "host": {"hostname": "h2"}},
        {"status": "Queued", "job": {"id": 5}, "host": None},
    ]
    run = atest("job", "list")
    assert afe.calls() == [("get_jobs_summary", {"running": None, "owner": "alice"})]
    assert run.out == "Id  Owner  Name  Status Counts\n5   alice  j5    Queued=3(75.0%), Running=1(25.0%)\n"
    run = atest("job", "list", "-a", "-r", "-v")
    assert afe.calls()[-1] == ("get_jobs_summary", {"running": True})
    assert run.out.splitlines()[0] == "Id  Owner  Name  Status Counts                      Priority  Control Type  Created On"
    afe.requests.clear()
    run = atest("job", "stat", "5")
    assert run.status == 0, run.err
    assert afe.calls() == [("get_jobs_summary", {"id__in": ["5"]}), ("get_host_queue_entries", {"job__in": ["5"]})]
    assert run.out.splitlines() == [
        "Id  Name  Priority  Status Counts                      Host Status",
        '5   j5    40        Queued=3(75.0%), Running=1(25.0%)  Running="h1", Queued="h2"',
    ]
    run = atest("job", "stat", "--parse", "j5")
    assert afe.calls()[-2:] == [("get_jobs_summary", {"name__in": ["j5"]}),
                                ("get_host_queue_entries", {"job__name__in": ["j5"]})]
    assert run.out == 'Id=5|Name=j5|Priority=40|Status Counts=Queued=3(75.0%), Running=1(25.0%)|' \
                      'Host Status=Running="h1", Queued="h2"\n'
    assert atest("job", "stat", "-N", "5").out == "Hosts\nh1 h2\n"


def test_job_stat_of_a_job_with_only_metahosts_fails(afe, atest):
    afe.answers["get_jobs_summary"] = [{"id": 5, "name": "j", "priority": 40, "status_counts": {"Queued": 1}}]
    afe.answers["get_host_queue_entries"] = [{"status": "Queued", "job": {"id": 5}, "host": None}]
    run = atest("job", "stat", "5")
    assert (run.status, run.err) == (1, "Job has unassigned meta-hosts, try again shortly.\n")


def test_acl_and_label_list_output(afe, atest):
    afe.answers["get_acl_groups"] = [{"name": "team", "description": "The team", "hosts": ["h2", "h1"],
                                      "users": ["alice"]}]
    run = atest("acl", "list", "team")
    assert afe.calls() == [("get_acl_groups", {"name__in": ["team"]})]
    assert run.out == "Name  Description\nteam  The team\nHosts: \n\th1, h2\nUsers: \n\talice\n\n\n"
    assert atest("acl", "list").out == "Name  Description\nteam  The team\n"
    assert atest("acl", "list", "--parse", "-v").out == "Name=team|Description=The team|Hosts=h2,h1|Users=alice\n"
    afe.answers["get_labels"] = [{"name": "board:x", "platform": False, "only_if_needed": False, "invalid": False},
                                 {"name": "plat", "platform": True, "only_if_needed": False, "invalid": True}]
    assert atest("label", "list").out == "Name     Use only if needed  Valid\nboard:x  False               True\n"
    assert atest("label", "list", "-t").out == "Name  Valid\nplat  False\n"
    assert atest("label", "list", "-a", "-d").out == (
        "Name     Platform  Use only if needed  Valid\nboard:x  False     False               True\n")


def test_create_and_delete_messages(afe, atest):
    run = atest("label", "create", "l1", "l2")
    assert run.out == "Created labels: \n\t'l1', 'l2'\n"
    run = atest("acl", "create", "a1", "-d", "x")
    assert run.out == "Created ACL: \n\t'a1'\n"
    run = atest("host", "delete", "--no-confirmation", "h1", "h2")
    assert run.out == "Deleted hosts: \n\t'h1', 'h2'\n"


def test_delete_asks_for_confirmation(afe, atest):
    run = atest("host", "delete", "h1", stdin="n\n")
    assert afe.requests == []
    assert run.out == "Continue? [y/N] User did not confirm. Aborting...\n"
    assert run.status == 1
    run = atest("label", "delete", "l1", stdin="")  # no terminal input at all: no
    assert afe.requests == [] and run.status == 1
    run = atest("host", "delete", "h1", stdin="y\n")
    assert afe.calls() == [("delete_host", {"id": "h1"})]
    assert run.status == 0 and run.out.endswith("Deleted host: \n\t'h1'\n")


# -- errors and exit statuses ---------------------------------------------------------------------


def test_an_rpc_error_is_printed_as_atest_did_and_exits_1(afe, atest):
    afe.answers["add_host"] = rpc_error("ValidationError", "{'hostname': 'This value must be unique (h1)'}")
    run = atest("host", "create", "h1")
    assert run.status == 1
    assert run.out == ""
    assert run.err == "Operation add_host failed:\n    ValidationError: {'hostname': 'This value must be unique (h1)'}\n"
    assert afe.methods() == ["add_host"]  # nothing else is tried for that host


def test_the_same_error_for_several_items_is_printed_once(afe, atest):
    afe.answers["delete_host"] = lambda kw: rpc_error("DoesNotExist", f"Host matching {kw['id']} does not exist.")
    run = atest("host", "delete", "--no-confirmation", "h1", "h2")
    assert run.status == 1
    assert run.err == ("Operation delete_host failed:\n"
                       "    DoesNotExist: Host matching <XYZ> does not exist. with <XYZ> in:\n        h1, h2\n")
    afe.answers["delete_host"] = lambda kw: rpc_error("AclAccessViolation", "You cannot delete hosts")
    run = atest("host", "delete", "--no-confirmation", "h1")
    assert run.err == "Operation delete_host failed:\n    AclAccessViolation: You cannot delete hosts (h1)\n"


def test_debug_shows_the_traceback(afe, atest):
    afe.answers["get_hosts"] = rpc_error("ProgrammingError", "boom", "Traceback (most recent call last):\n  x\n")
    run = atest("host", "list", "-g")
    assert run.status == 1
    assert "Traceback (most recent call last):\n  x" in run.err


def test_kill_on_failure_stops_at_the_first_failure(afe, atest):
    afe.answers["delete_host"] = rpc_error("DoesNotExist", "nope")
    run = atest("host", "delete", "--no-confirmation", "--kill-on-failure", "h1", "h2")
    assert run.status == 1
    assert afe.calls() == [("delete_host", {"id": "h1"})]
    assert run.err == "Operation delete_host failed\n    DoesNotExist: nope\n"


def test_add_hosts_retries_without_the_hosts_the_server_names(afe, atest):
    afe.answers["acl_group_add_hosts"] = lambda kw: (
        rpc_error("DoesNotExist", "The following hosts do not exist: h3") if "h3" in kw["hosts"] else None)
    run = atest("acl", "add", "team", "-m", "h1,h2,h3")
    assert afe.calls() == [("acl_group_add_hosts", {"id": "team", "hosts": ["h1", "h2", "h3"]}),
                           ("acl_group_add_hosts", {"id": "team", "hosts": ["h1", "h2"]})]
    assert run.out == "Added to ACL 'team' hosts: \n\th1, h2\n"
    assert run.err == "Operation acl_group_add_hosts failed:\n    DoesNotExist: The following hosts do not exist: h3\n"
    assert run.status == 1


def test_add_users_with_an_error_of_another_shape_is_not_retried(afe, atest):
    afe.answers["acl_group_add_users"] = rpc_error("AclAccessViolation", "You are not in ACL team")
    afe.answers["acl_group_add_hosts"] = None
    run = atest("acl", "add", "team", "-u", "bob", "-m", "h1")
    assert afe.methods() == ["acl_group_add_users", "acl_group_add_hosts"]
    assert run.out == "Added to ACL 'team' host: \n\th1\n"
    assert run.status == 1


def test_unreachable_server_exits_1(atest, monkeypatch):
    monkeypatch.setenv("AUTOTEST_WEB", "127.0.0.1:9")  # discard port: nothing listens
    run = atest("host", "list")
    assert run.status == 1
    assert run.err.startswith("Invalid server name http://127.0.0.1:9: <urlopen error")


def test_http_error_status_exits_1(afe, atest):
    afe.status = 500
    run = atest("label", "list")
    assert run.status == 1
    assert run.err == "Error received from web server:\n    HTTP Error 500: Internal Server Error\n"


@pytest.mark.parametrize("body, text", [
    (b"<html>not json</html>", "Error decoding JSON response:\n<html>not json</html>"),
    (b'{"result": []}', "Malformed JSON-RPC response (no 'error' key):"),
])
def test_an_answer_that_is_not_json_rpc_exits_1(afe, atest, body, text):
    afe.raw_body = body
    run = atest("user", "list")
    assert run.status == 1
    assert run.err.startswith("Operation get_users failed:\n    " + text)


def test_a_time_out_is_retried_once(afe, atest, monkeypatch):
    monkeypatch.setattr(rpc, "DEFAULT_TIMEOUT", 0.2)
    afe.delay = 0.5
    afe.answers["get_hosts"] = []
    run = atest("host", "list")
    assert run.status == 1
    assert len(afe.requests) == 2
    assert run.err == "Timed-out contacting the Autotest server:\n    get_hosts timed out\n"


@pytest.mark.parametrize("argv, message", [
    ([], "No topic argument"),
    (["bogus"], "Invalid topic bogus"),
    (["host"], "No action argument"),
    (["host", "explode"], "Invalid action explode"),
    (["host", "create"], "host create requires at least one host"),
    (["host", "list", "--locked", "--unlocked"], "--locked and --unlocked are mutually exclusive"),
    (["host", "list", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["job", "create", "-m", "h1", "j"], "Must specify either --test or --control-file to create a job."),
    (["job", "create", "-t", "x", "j"], "Must specify at least one machine."),
    (["job", "create", "-t", "x", "-m", "h", "-B", "sometimes", "j"], "invalid choice: 'sometimes'"),
    (["job", "stat"], "job stat requires at least one job"),
    (["acl", "create", "a1"], "Must specify a description to create an ACL."),
    (["acl", "add", "a1"], "Specify at least one USER or MACHINE"),
    (["label", "add", "l1"], "label add requires at least one host"),
    (["host", "list", "-M", "/nonexistent/file"], "Could not open file /nonexistent/file"),
])
def test_usage_errors_exit_2_without_calling_the_server(afe, atest, argv, message):
    run = atest(*argv)
    assert run.status == 2, run
    assert message in run.err
    assert "usage:\natest" in run.err
    assert afe.requests == []


def test_help_exits_0(atest):
    assert atest("help").status == 0
    run = atest("host", "help")
    assert run.status == 0 and "atest host [create|delete|list|stat|mod|jobs]" in run.out
    run = atest("job", "create", "--help")
    assert run.status == 0 and "--max_runtime" in run.out


def test_mixing_wildcards_and_items_is_a_usage_error(afe, atest):
    run = atest("host", "list", "h*", "g1")
    assert run.status == 2 and "Cannot mix wilcards and items" in run.err


def test_items_come_from_arguments_options_and_files(afe, atest, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("h2 h3\nh4,h1\n")
    afe.answers["label_add_hosts"] = None
    run = atest("label", "add", "l1", "-m", "h1 h5", "-M", str(hosts))
    assert afe.calls() == [("label_add_hosts", {"id": "l1", "hosts": ["h1", "h5", "h2", "h3", "h4"]})]
    assert run.out == "Added to label 'l1' hosts: \n\th1, h2, h3, h4, h5\n"
    afe.answers["get_hosts"] = []
    atest("host", "list", "a\\,b,c")  # an escaped comma is part of the name
    assert afe.calls()[-1] == ("get_hosts", {"hostname__in": ["a,b", "c"]})


# -- picking the server and the user ----------------------------------------------------------------


def test_the_web_option_beats_autotest_web_and_a_bare_host_gets_http(afe, atest, monkeypatch):
    monkeypatch.setenv("AUTOTEST_WEB", "127.0.0.1:9")
    afe.answers["get_labels"] = []
    assert atest("label", "list", "-w", afe.url.removeprefix("http://")).status == 0
    assert afe.methods() == ["get_labels"]
    assert rpc.get_autotest_server("https://afe.example") == "https://afe.example"
    assert rpc.get_autotest_server("afe:8000") == "http://afe:8000"
    monkeypatch.delenv("AUTOTEST_WEB")
    assert rpc.get_autotest_server() == "http://localhost:8000"


def test_the_login_is_autotest_user_else_the_unix_login(afe, atest, monkeypatch):
    afe.answers["get_jobs_summary"] = []
    monkeypatch.setenv("AUTOTEST_USER", "carol")
    atest("job", "list")
    assert afe.requests[-1].headers["authorization"] == "carol"
    assert afe.calls()[-1][1]["owner"] == "carol"  # the login sent, not the Unix login
    monkeypatch.delenv("AUTOTEST_USER")
    monkeypatch.setattr("getpass.getuser", lambda: "dave")
    atest("job", "list")
    assert afe.requests[-1].headers["authorization"] == "dave"


def test_the_client_imports_no_django():
    code = "import sys; import afe.atest; print(sorted(m for m in sys.modules if m.startswith(('django', 'afe.models'))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "DJANGO_SETTINGS_MODULE": ""}).stdout
    assert out.strip() == "[]"


def test_bin_atest_runs_and_sets_the_exit_status(afe):
    env = {**os.environ, "AUTOTEST_WEB": afe.url, "AUTOTEST_USER": "alice"}
    afe.answers["get_hosts"] = [host_row("h1")]
    done = subprocess.run([str(ATEST), "host", "list", "-N"], capture_output=True, text=True, env=env, cwd="/")
    assert (done.returncode, done.stdout, done.stderr) == (0, "h1\n", "")
    afe.answers["get_hosts"] = rpc_error("DatabaseError", "gone")
    done = subprocess.run([str(ATEST), "host", "list"], capture_output=True, text=True, env=env, cwd="/")
    assert (done.returncode, done.stderr) == (1, "Operation get_hosts failed:\n    DatabaseError: gone\n")
    done = subprocess.run([str(ATEST), "host"], capture_output=True, text=True, env=env, cwd="/")
    assert done.returncode == 2


# -- end to end against the project's server ----------------------------------------------------------


@dataclass
class LiveAtest:
    url: str
    env: dict[str, str]

    def __call__(self, *argv: str, check: bool = True, stdin: str | None = None) -> Run:
        done = subprocess.run([str(ATEST), *argv], capture_output=True, text=True, env=self.env,
                              input=stdin, timeout=60, cwd=ROOT)
        run = Run(done.returncode, done.stdout, done.stderr)
        if check:
            assert run.status == 0, (argv, run)
        return run


@pytest.fixture
def live_atest(live_server, tmp_path) -> LiveAtest:
    env = {**os.environ, "AUTOTEST_WEB": live_server.url, "AUTOTEST_USER": "alice",
           "AUTOTEST_CLI_NO_WRAP": "1"}
    env.pop("AUTOTEST_CLI_DEBUG", None)
    return LiveAtest(live_server.url, env)


@pytest.mark.django_db(transaction=True)
def test_end_to_end_hosts_labels_acls(live_atest):
    atest = live_atest
    assert atest("label", "create", "board:e2e", "pool:e2e").out == "Created labels: \n'board:e2e'\n'pool:e2e'\n"
    assert atest("acl", "create", "team-e2e", "-d", "The e2e team").out == "Created ACL: \n'team-e2e'\n"
    run = atest("host", "create", "e2e-dut1", "e2e-dut2", "-b", "board:e2e", "-t", "plat-e2e", "-a", "team-e2e")
    assert run.out == "Added hosts: \ne2e-dut1\ne2e-dut2\n"
    assert atest("host", "create", "e2e-dut3", "-l", "-r", "on the bench").out == "Added host: \ne2e-dut3\n"
    assert atest("label", "add", "pool:e2e", "-m", "e2e-dut1").out == "Added to label 'pool:e2e' host: \ne2e-dut1\n"
    assert atest("acl", "add", "team-e2e", "-u", "alice").out == "Added to ACL 'team-e2e' user: \nalice\n"

    run = atest("host", "list", "--parse", "e2e-*")
    rows = {dict(f.split("=", 1) for f in line.split("|"))["Host"]: dict(f.split("=", 1) for f in line.split("|"))
            for line in run.out.splitlines()}
    assert set(rows) == {"e2e-dut1", "e2e-dut2", "e2e-dut3"}
    assert rows["e2e-dut1"]["Status"] == "Ready" and rows["e2e-dut1"]["Locked"] == "False"
    assert rows["e2e-dut1"]["Platform"] == "plat-e2e"
    assert rows["e2e-dut1"]["Labels"] == "board:e2e, pool:e2e"
    assert rows["e2e-dut3"]["Locked"] == "True" and rows["e2e-dut3"]["Lock Reason"] == "on the bench"
    assert rows["e2e-dut3"]["Locked by"] == "alice"
    assert atest("host", "list", "-N", "-b", "board:e2e,pool:e2e").out == "e2e-dut1\n"
    assert atest("host", "list", "-N", "--locked", "e2e-*").out == "e2e-dut3\n"
    assert atest("host", "list", "-N", "-a", "team-e2e").out.split() == ["e2e-dut1", "e2e-dut2"]

    run = atest("host", "stat", "e2e-dut1")
    assert run.out.startswith("-----\nHost: e2e-dut1\nId: ")
    assert "Platform: plat-e2e\nStatus: Ready\nLocked: False\n" in run.out
    # A host in another ACL leaves Everyone (AFE's AclGroup.on_host_membership_change).
    assert re.search(r"\nACLs:\nId +Name\n\d+ +team-e2e\n\n", run.out), run.out
    assert re.search(r"\nLabels:\nId +Name\n\d+ +board:e2e\n\d+ +pool:e2e\n", run.out), run.out

    run = atest("label", "list", "--parse", "board:e2e", "pool:e2e")
    assert run.out.splitlines() == ["Name=board:e2e|Use only if needed=False|Valid=True",
                                    "Name=pool:e2e|Use only if needed=False|Valid=True"]
    run = atest("acl", "list", "team-e2e")
    assert run.out.startswith("Name      Description\nteam-e2e  The e2e team\nHosts: \ne2e-dut1\ne2e-dut2\nUsers: \nalice\n")
    assert "alice" in atest("user", "list", "alice").out

    run = atest("host", "mod", "--lock", "-r", "maintenance", "e2e-dut2")
    assert run.out == "Locked host: \ne2e-dut2\n"
    assert atest("host", "list", "-N", "--locked", "e2e-*").out.split() == ["e2e-dut2", "e2e-dut3"]
    assert atest("host", "mod", "--unlock", "e2e-dut2").out == "Unlocked host: \ne2e-dut2\n"

    # Failures: exit 1, atest's messages on stderr.
    run = atest("host", "create", "e2e-dut1", check=False)
    assert run.status == 1 and run.err.startswith("Operation add_host failed:\n    "), run
    run = atest("host", "list", "e2e-dut1", "e2e-nope", check=False)
    assert run.status == 1 and run.err == "Unknown host(s): \n        e2e-nope\n"
    run = atest("label", "add", "pool:e2e", "-m", "e2e-dut2,e2e-nope", check=False)
    assert run.status == 1, run
    assert run.out == "Added to label 'pool:e2e' host: \ne2e-dut2\n", run  # retried without e2e-nope

    assert atest("host", "delete", "e2e-dut3", "--no-confirmation").out == "Deleted host: \n'e2e-dut3'\n"
    assert atest("host", "list", "e2e-dut3", check=False).status == 1
    assert atest("acl", "remove", "team-e2e", "-m", "e2e-dut2").out == "Removed from ACL 'team-e2e' host: \ne2e-dut2\n"
    assert atest("label", "delete", "pool:e2e", stdin="y\n").out.endswith("Deleted label: \n'pool:e2e'\n")
    assert atest("acl", "delete", "--no-confirmation", "team-e2e").out == "Deleted ACL: \n'team-e2e'\n"


@pytest.mark.django_db(transaction=True)
def test_end_to_end_job_create_list_stat_abort(live_atest, tmp_path):
    atest = live_atest
    atest("host", "create", "e2e-job-dut")
    control = tmp_path / "control"
    control.write_text("AUTHOR = 'atest e2e'\njob.run_test('sleeptest', seconds=1)\n")
    run = atest("job", "create", "-f", str(control), "-m", "e2e-job-dut", "e2e-sleeper")
    match = re.fullmatch(r"Created job: \n'e2e-sleeper \(id (\d+)\)'\n", run.out)
    assert match, run
    job_id = match.group(1)

    run = atest("job", "list")
    assert run.out.splitlines()[0].split() == ["Id", "Owner", "Name", "Status", "Counts"]
    assert re.search(rf"^{job_id} +alice +e2e-sleeper +Queued=1\(100\.0%\)$", run.out, re.M), run.out
    assert job_id in atest("job", "list", "e2e-sleeper").out

    run = atest("job", "stat", job_id)
    assert re.search(rf'^{job_id} +e2e-sleeper +(?:40|Default) +Queued=1\(100\.0%\) +Queued="e2e-job-dut"$', run.out, re.M), run
    run = atest("host", "jobs", "e2e-job-dut")
    assert re.search(rf"^{job_id} +alice +e2e-sleeper +Queued$", run.out, re.M), run.out

    assert atest("job", "abort", job_id).out == f"Aborting jobs: {job_id}\n"
    run = atest("job", "stat", "--parse", job_id)
    assert "Status Counts=Aborted" in run.out, run.out

    run = atest("job", "clone", "--id", job_id, "-r", "e2e-again")
    assert re.fullmatch(r"Created job: \n'e2e-again \(id \d+\)'\n", run.out), run
    run = atest("job", "stat", "424242", check=False)
    assert run.status == 1 and "Unknown job(s)" in run.err


@pytest.mark.django_db(transaction=True)
def test_end_to_end_with_an_api_token_when_the_bare_login_is_not_trusted(live_atest, settings):
    from afe.models import ApiToken, User

    settings.RPC_TRUST_LOGIN_HEADER = "never"
    atest = live_atest
    refused = atest("host", "create", "e2e-token-dut", check=False)
    assert refused.status == 1 and "AuthenticationRequired" in refused.err, refused
    _, key = ApiToken.issue(User.objects.create(login="bob"), "e2e")
    atest.env["AUTOTEST_TOKEN"] = key
    assert atest("host", "create", "e2e-token-dut").out == "Added host: \ne2e-token-dut\n"
    assert atest("host", "list", "-N", "e2e-token-dut").out == "e2e-token-dut\n"
