"""Tie AFE users to Django auth users: one identity, ``login == username``."""
from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from .models import User


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def ensure_afe_user(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """Every Django auth user gets an AFE user of the same login (root if superuser)."""
    level = User.ACCESS_ROOT if instance.is_superuser else User.ACCESS_USER
    user, made = User.objects.get_or_create(login=instance.get_username(), defaults={"access_level": level})
    if not made and instance.is_superuser and user.access_level < User.ACCESS_ROOT:
        User.objects.filter(pk=user.pk).update(access_level=User.ACCESS_ROOT)
