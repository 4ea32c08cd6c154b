"""The JSON-RPC wire format as AFE's real clients speak it (spec/afe-rpc-wire.md §1–§3)."""
from __future__ import annotations

import ast
import json
import re

import logging

import pytest
from django.urls import resolve

from afe.models import Host, User
from tests.rpc_client import AfeRpc, RpcFailed


@pytest.fixture
def rpc(client, db) -> AfeRpc:
    return AfeRpc(client)


@pytest.mark.parametrize("path", ["/afe/server/rpc/", "/afe/server/noauth/rpc/"])
def test_the_client_request_is_answered_at_every_afe_url_without_redirect(client, db, path, lab):
    rpc = AfeRpc(client, path=path)
    hosts = rpc.get_hosts(hostname__in=["host1"])
    assert [h["hostname"] for h in hosts] == ["host1"]


def test_a_server_string_with_a_trailing_slash_still_reaches_the_endpoint():
    # The clients then ask for //afe/server/...; Django's test client cannot send that path, the resolver can.
    assert resolve("//afe/server/noauth/rpc/").url_name == "afe-rpc"
    assert resolve("//new_tko/server/noauth/rpc/").url_name == "tko-rpc"


def test_the_answer_has_result_id_and_a_null_error(rpc, lab):
    answer = rpc.raw(json.dumps({"method": "get_num_hosts", "params": [{}], "id": "jsonrpc"}))
    assert answer == {"result": 4, "id": "jsonrpc", "error": None}


def test_a_validation_error_message_is_a_dict_literal_the_client_can_eval(rpc, db):
    with pytest.raises(RpcFailed) as failed:
        rpc.add_host(hostname="bad,host")
    assert failed.value.name == "ValidationError"
    assert set(failed.value.problem_keys) == {"hostname"}
    assert "not a valid hostname" in failed.value.problem_keys["hostname"]
    assert not Host.objects.exists()


def test_datetimes_are_rendered_without_fraction_or_zone(rpc, lab, alice):
    rpc.modify_host(id="host1", locked=True, lock_reason="bench")
    host = rpc.get_hosts(hostname="host1")[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", host["lock_time"])
    assert host["locked"] is True and host["locked_by"] == "alice"


def test_choices_and_foreign_keys_come_back_as_names(rpc, lab):
    host = rpc.get_hosts(hostname="host1")[0]
    assert host["protection"] == "No protection"
    assert host["status"] == "Ready"
    assert host["shard"] is None
    assert host["labels"] == ["board:x", "pool:a"]
    assert host["acls"] == ["Everyone"]


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b"{}", b'{"method": 5}', b'{"method": "get_hosts", "params": {}}',
    b'{"method": "get_hosts", "params": [{"": 1}]}', b"\xff\xfe", b'{"method": "no_such_method", "params": [{}]}',
    b'{"method": "get_hosts", "params": [{"nosuchfield": 1}]}', b'{"method": "get_hosts", "params": [NaN]}',
    b'{"method": "get_hosts", "params": [{"query_limit": 99999999999}]}',
    b'{"method": "get_hosts", "params": [{"id__in": 5}]}', b'{"method": "get_hosts", "params": [{"id": "abc"}]}',
    b'{"method": "add_host", "params": [{"hostnme": "x"}]}', b'{"method": "add_host", "params": [1, 2, 3, {}]}',
    b'{"method": "modify_hosts", "params": [{"host_filter_data": [], "update_data": {}}]}',
    b"[" * 10000,
])
def test_malformed_requests_get_an_error_object_not_a_server_error(rpc, lab, body):
    answer = rpc.raw(body)
    assert answer["result"] is None and answer["error"]["name"]
    assert Host.objects.count() == 4


@pytest.mark.parametrize("value", [2**31, 2**63, 10**30, -(10**30)])
def test_an_id_beyond_any_column_matches_nothing(rpc, lab, value):
    assert rpc.get_hosts(id=value) == []


def test_an_unknown_filter_field_is_a_clear_validation_error(rpc, lab):
    with pytest.raises(RpcFailed) as failed:
        rpc.get_hosts(colour="blue")
    assert "Unknown field 'colour'" in failed.value.problem_keys["colour"]


def test_filters_may_not_reach_outside_afe_tables(rpc, lab, alice):
    with pytest.raises(RpcFailed) as failed:
        rpc.get_hosts(aclgroup__users__api_tokens__key_digest__startswith="a")
    assert failed.value.name == "ValidationError"


def test_an_untrusted_bare_login_is_refused_and_nothing_is_written(client, db):
    rpc = AfeRpc(client, remote_addr="10.1.2.3")
    with pytest.raises(RpcFailed) as failed:
        rpc.add_host(hostname="h1")
    assert failed.value.name == "AuthenticationRequired"
    assert "RPC_TRUST_LOGIN_HEADER" in failed.value.message
    assert not Host.objects.exists()
    assert not User.objects.filter(login="alice").exists()


def test_a_call_without_any_identity_is_refused(client, db):
    with pytest.raises(RpcFailed) as failed:
        AfeRpc(client, login=None).get_hosts()
    assert failed.value.name == "AuthenticationRequired"


def test_a_trusted_unknown_login_is_created_as_afe_did(rpc, db):
    rpc.get_hosts()
    user = User.objects.get(login="alice")
    assert user.access_level == 0
    assert user.aclgroup_set.filter(name="Everyone").exists()


def test_a_failing_write_leaves_nothing_half_done(rpc, lab):
    with pytest.raises(RpcFailed):
        rpc.host_add_labels(id="host2", labels=["new-label", "board:other"])  # a second board label
    assert not Host.objects.get(hostname="host2").labels.filter(name="new-label").exists()


def test_the_error_names_the_missing_rows_in_the_shape_atest_retries_with(rpc, lab):
    with pytest.raises(RpcFailed) as failed:
        rpc.host_remove_labels(id="host1", labels=["board:x", "nope1", "nope2"])
    parts = f"{failed.value.name}: {failed.value.message}".split(":")
    assert failed.value.name == "DoesNotExist"
    assert [p.strip() for p in parts[-1].split(",")] == ["nope1", "nope2"]


def test_the_traceback_key_is_present_even_when_empty(rpc, db):
    answer = rpc.raw(b'{"method": "nope", "params": [{}], "id": 7}')
    assert answer["id"] == 7
    assert answer["error"]["name"] == "UnknownMethod" and isinstance(answer["error"]["traceback"], str)
    ast.literal_eval(repr(answer["error"]["message"]))


def test_every_write_is_logged_with_the_caller_method_and_arguments_and_reads_are_not(rpc, lab, caplog):
    with caplog.at_level(logging.INFO, logger="afe.rpc"):
        rpc.get_hosts(hostname="host1")
        rpc.modify_host("host1", locked=True, lock_reason="bench")
    [record] = [r for r in caplog.records if r.name == "afe.rpc"]
    text = record.getMessage()
    assert "modify_host by alice" in text and "127.0.0.1" in text
    assert "'host1'" in text and "'lock_reason': 'bench'" in text
