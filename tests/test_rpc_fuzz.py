"""Thousands of malformed JSON-RPC requests: every one gets an error object, none a server error, none writes."""
from __future__ import annotations

import json

import pytest
from django.apps import apps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afe.rpc.methods import AFE_METHODS, TKO_METHODS
from tests.rpc_client import AfeRpc

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
    st.text(max_size=30), st.sampled_from(["", "0", "12", "-1", "host1", "board:x", "Everyone", "../x", "a,b",
                                           "\x00", "Ready", "Client", "Never", "9" * 40, "%", "__", "id__in"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
                      max_leaves=8)
ARGUMENT_NAMES = st.sampled_from([
    "id", "hostname", "name", "labels", "hosts", "users", "locked", "lock_reason", "status", "protection",
    "control_file", "control_type", "priority", "meta_hosts", "job_id", "job__id__in", "id__in", "query_limit",
    "query_start", "sort_by", "host_filter_data", "update_data", "attribute", "value", "filter_data",
    "hostname__in", "labels__name", "owner", "running", "synch_count", "timeout_mins", "tests",
])
# A key that no method takes and no model has, so every call below is wrong whatever else it holds.
NONSENSE = st.from_regex(r"zz[a-z]{1,8}", fullmatch=True)
CALLS = st.fixed_dictionaries({
    "method": st.sampled_from(AFE_METHODS.names() or ["get_hosts"]),
    "kwargs": st.tuples(st.dictionaries(ARGUMENT_NAMES, VALUES, max_size=4), NONSENSE, VALUES),
    "args": st.lists(VALUES, max_size=2),
})
BODIES = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60).map(str.encode),
    VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"method": VALUES, "params": VALUES, "id": VALUES}).map(lambda v: json.dumps(v).encode()),
)


# What a caller's mistake is called; anything else (KeyError, TypeError, RpcError) is a server bug.
EXPECTED_ERRORS = {"ValidationError", "DoesNotExist", "AclAccessViolation", "AuthenticationRequired",
                   "UnknownMethod", "BadServiceRequest", "NoEligibleHostException", "UnmodifiableLabelException"}


def table_counts() -> dict[str, int]:
    return {model._meta.db_table: model._base_manager.count() for model in apps.get_app_config("afe").get_models()}


@pytest.fixture
def rpc(client, lab, private_group, system_user) -> AfeRpc:
    AfeRpc(client).get_hosts()  # alice exists before the counts are taken
    return AfeRpc(client)


FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


@FUZZ
@given(call=CALLS)
def test_a_call_with_an_argument_no_method_takes_is_refused_and_writes_nothing(rpc, call):
    before = table_counts()
    known, bad_key, bad_value = call["kwargs"]
    body = json.dumps({"method": call["method"], "params": [*call["args"], {**known, bad_key: bad_value}],
                       "id": "jsonrpc"})
    answer = rpc.raw(body, call["method"])
    assert answer["error"] is not None and answer["error"]["name"] in EXPECTED_ERRORS, answer["error"]
    assert table_counts() == before


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_a_body_that_is_no_request_gets_an_error_object(rpc, body):
    before = table_counts()
    answer = rpc.raw(body)
    assert answer["error"] is None or answer["error"]["name"] in EXPECTED_ERRORS, answer["error"]
    assert table_counts() == before


def test_every_tko_method_refuses_nonsense_too(client, db):
    rpc = AfeRpc(client, path="/new_tko/server/noauth/rpc/")
    for method in TKO_METHODS.names():
        answer = rpc.raw(json.dumps({"method": method, "params": [{"zzbogus": 1}], "id": 1}), method)
        assert answer["error"] is not None
