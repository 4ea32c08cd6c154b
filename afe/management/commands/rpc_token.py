"""``manage.py rpc_token``: issue, list and revoke the API tokens scripts send as ``Authorization: Token <key>``."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from afe import names
from afe.models import ApiToken, User


class Command(BaseCommand):
    help = "Issue (create), list or revoke API tokens for the JSON-RPC API."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Issue a token for LOGIN and print its key (shown only once).")
        create.add_argument("login")
        create.add_argument("--name", default="api", help="What the token is for (default: api).")
        listing = actions.add_parser("list", help="List tokens (never their keys).")
        listing.add_argument("login", nargs="?")
        revoke = actions.add_parser("revoke", help="Revoke tokens by id.")
        revoke.add_argument("ids", nargs="+", type=int)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"_{action}")(**options)

    def _create(self, login: str, name: str, **options: Any) -> None:
        try:
            login = names.validate_login(login)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        user = User.objects.filter(login=login).first()
        if user is None:
            raise CommandError(f"No AFE user {login!r} (users appear when they first log in or call the API).")
        token, key = ApiToken.issue(user, name)
        self.stdout.write(f"Token {token.pk} for {login} ({token.name}): {key}")
        self.stdout.write("Send it as 'Authorization: Token <key>'; it cannot be shown again.")

    def _list(self, login: str | None = None, **options: Any) -> None:
        tokens = ApiToken.objects.select_related("user").order_by("pk")
        if login:
            tokens = tokens.filter(user__login=login)
        for token in tokens:
            state = f"revoked {token.revoked_on:%Y-%m-%d %H:%M:%S}" if token.revoked else "active"
            used = f"{token.last_used_on:%Y-%m-%d %H:%M:%S}" if token.last_used_on else "never"
            self.stdout.write(f"{token.pk}\t{token.user.login}\t{token.name}\t{token.key_prefix}…\t{state}\tlast used {used}")

    def _revoke(self, ids: list[int], **options: Any) -> None:
        unknown = sorted(set(ids) - set(ApiToken.objects.filter(pk__in=ids).values_list("pk", flat=True)))
        if unknown:
            raise CommandError(f"No such token(s): {', '.join(map(str, unknown))}")
        count = ApiToken.objects.filter(pk__in=ids).revoke()
        self.stdout.write(f"Revoked {count} token(s).")
