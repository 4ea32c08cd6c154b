"""API tokens: a secret a script sends as ``Authorization: Token <key>`` to act as an AFE user.

Only a SHA-256 digest of the key is stored; the key itself is shown once,
when the token is issued (in the admin or by ``manage.py rpc_token``).
"""
from __future__ import annotations

import hashlib
import secrets

from django.db import models
from django.utils import timezone

from .users import User

KEY_PREFIX_LENGTH = 8


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def usable(self) -> ApiTokenQuerySet:
        return self.filter(revoked_on__isnull=True)

    def user_for_key(self, key: str) -> User | None:
        """The user whose unrevoked token ``key`` is, or ``None``; records when it was last used."""
        token = self.usable().select_related("user").filter(key_digest=digest(key)).first()
        if token is None:
            return None
        type(token).objects.filter(pk=token.pk).update(last_used_on=timezone.now())
        return token.user

    def revoke(self) -> int:
        """Revoke the tokens not yet revoked; returns how many."""
        return self.usable().update(revoked_on=timezone.now())


class ApiToken(models.Model):
    """One API token of one AFE user."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'nightly CI'.")
    key_prefix = models.CharField(max_length=KEY_PREFIX_LENGTH, editable=False,
                                  help_text="The key's first characters, to recognise it.")
    key_digest = models.CharField(max_length=64, unique=True, editable=False)
    created_on = models.DateTimeField(default=timezone.now, editable=False)
    last_used_on = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_on = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        db_table = "afe_api_tokens"
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.user.login}: {self.name} ({self.key_prefix}…)"

    @classmethod
    def issue(cls, user: User, name: str) -> tuple[ApiToken, str]:
        """A new token for ``user`` and its key (which is not stored and cannot be shown again)."""
        token = cls(user=user, name=name[:100])
        key = token.new_key()
        token.save()
        return token, key

    def new_key(self) -> str:
        """Give this (unsaved) token a fresh key; returns the key, of which only a digest is kept."""
        key = secrets.token_urlsafe(32)
        self.key_prefix, self.key_digest = key[:KEY_PREFIX_LENGTH], digest(key)
        return key

    @property
    def revoked(self) -> bool:
        return self.revoked_on is not None
