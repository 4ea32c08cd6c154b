"""Who the caller is, from each source in turn; an untrusted caller is refused and nothing is written."""
from __future__ import annotations

import base64
import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from afe.models import ApiToken, Host, User
from tests.rpc_client import AfeRpc, RpcFailed


def whoami(rpc: AfeRpc) -> str:
    """The login the server acts as: it records who locked a host."""
    host = Host.objects.get_or_create(hostname="probe")[0]
    Host.objects.filter(pk=host.pk).update(locked=False, lock_reason="")
    rpc.modify_host(id="probe", locked=True, lock_reason="who am i")
    return Host.objects.get(pk=host.pk).locked_by.login


def refused(rpc: AfeRpc, fragment: str) -> None:
    with pytest.raises(RpcFailed) as failed:
        rpc.add_host(hostname="never-written")
    assert failed.value.name == "AuthenticationRequired"
    assert fragment in failed.value.message
    assert not Host.objects.filter(hostname="never-written").exists()


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", password="s3cret-pass")


class TestSession:
    def test_a_session_call_with_the_csrf_token_acts_as_the_logged_in_user(self, db, bob):
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(bob)
        browser.get("/afe/server/admin/login/")  # sets the csrftoken cookie, as any page would
        token = browser.cookies["csrftoken"].value
        assert whoami(AfeRpc(browser, login=None, headers={"HTTP_X_CSRFTOKEN": token})) == "bob"

    def test_a_session_call_without_the_csrf_token_is_refused(self, db, bob):
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(bob)
        refused(AfeRpc(browser, login=None), "CSRF")

    def test_a_session_wins_over_a_bare_login_header(self, db, bob):
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(bob)
        refused(AfeRpc(browser, login="mallory"), "CSRF")  # not silently treated as mallory


class TestBasic:
    def basic(self, login: str, password: str) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}

    def test_right_credentials_act_as_that_user(self, client, bob):
        assert whoami(AfeRpc(client, login=None, remote_addr="10.0.0.9", headers=self.basic("bob", "s3cret-pass"))) == "bob"

    def test_wrong_password_is_refused(self, client, bob):
        refused(AfeRpc(client, login=None, headers=self.basic("bob", "wrong")), "Wrong login or password")

    def test_garbage_credentials_are_refused(self, client, db):
        refused(AfeRpc(client, login=None, headers={"HTTP_AUTHORIZATION": "Basic !!!"}), "Malformed")


class TestToken:
    def test_a_token_acts_as_its_user_from_anywhere(self, client, alice):
        _, key = ApiToken.issue(alice, "ci")
        rpc = AfeRpc(client, login=None, remote_addr="192.0.2.7", headers={"HTTP_AUTHORIZATION": f"Token {key}"})
        assert whoami(rpc) == "alice"
        assert ApiToken.objects.get().last_used_on is not None

    def test_a_revoked_or_unknown_token_is_refused(self, client, alice):
        token, key = ApiToken.issue(alice, "ci")
        ApiToken.objects.filter(pk=token.pk).revoke()
        refused(AfeRpc(client, login=None, headers={"HTTP_AUTHORIZATION": f"Token {key}"}), "unknown or revoked")
        refused(AfeRpc(client, login=None, headers={"HTTP_AUTHORIZATION": "Token nope"}), "unknown or revoked")

    def test_only_a_digest_of_the_key_is_stored(self, alice):
        token, key = ApiToken.issue(alice, "ci")
        assert key not in json.dumps(list(ApiToken.objects.values()), default=str)
        assert token.key_prefix == key[:8]

    def test_the_command_issues_lists_and_revokes(self, alice):
        out = io.StringIO()
        call_command("rpc_token", "create", "alice", "--name", "nightly", stdout=out)
        key = out.getvalue().split(": ", 1)[1].split()[0]
        assert ApiToken.objects.user_for_key(key) == alice
        out = io.StringIO()
        call_command("rpc_token", "list", stdout=out)
        assert "alice\tnightly" in out.getvalue() and key not in out.getvalue()
        call_command("rpc_token", "revoke", str(ApiToken.objects.get().pk), stdout=io.StringIO())
        assert ApiToken.objects.user_for_key(key) is None

    def test_the_command_refuses_unknown_users_and_tokens(self, db):
        with pytest.raises(CommandError, match="No AFE user"):
            call_command("rpc_token", "create", "ghost")
        with pytest.raises(CommandError, match="No such token"):
            call_command("rpc_token", "revoke", "99")


class TestRemoteUser:
    def test_remote_user_is_trusted_when_the_setting_says_so(self, client, db, settings):
        settings.RPC_TRUST_REMOTE_USER = True
        rpc = AfeRpc(client, login=None, remote_addr="10.0.0.1", headers={"REMOTE_USER": "carol"})
        assert whoami(rpc) == "carol"

    def test_remote_user_is_ignored_by_default(self, client, db):
        refused(AfeRpc(client, login=None, remote_addr="10.0.0.1", headers={"REMOTE_USER": "carol"}), "Not logged in")
        assert not User.objects.filter(login="carol").exists()


class TestLoginHeader:
    @pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
    def test_loopback_callers_are_trusted_by_default(self, client, db, address):
        assert whoami(AfeRpc(client, login="alice", remote_addr=address)) == "alice"

    def test_other_callers_are_refused_by_default(self, client, db):
        refused(AfeRpc(client, login="alice", remote_addr="10.0.0.1"), "loopback")

    def test_always_trusts_every_caller(self, client, db, settings):
        settings.RPC_TRUST_LOGIN_HEADER = "always"
        assert whoami(AfeRpc(client, login="dave", remote_addr="10.0.0.1")) == "dave"

    def test_never_refuses_even_loopback(self, client, db, settings):
        settings.RPC_TRUST_LOGIN_HEADER = "never"
        refused(AfeRpc(client, login="alice"), "never")

    @pytest.mark.parametrize("login", ["../etc", "a,b", "x" * 200])
    def test_a_login_that_breaks_the_name_rules_is_refused(self, client, db, login):
        refused(AfeRpc(client, login=login), "login")
        assert not User.objects.filter(login=login).exists()
