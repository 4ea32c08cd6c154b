"""AFE users and ACL groups: who may use which hosts."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import models, transaction

from .. import names

if TYPE_CHECKING:
    from .hosts import Host

EVERYONE = "Everyone"
SYSTEM_USER_LOGIN = "autotest_system"


class RebootBefore(models.IntegerChoices):
    NEVER = 0, "Never"
    IF_DIRTY = 1, "If dirty"
    ALWAYS = 2, "Always"


class RebootAfter(models.IntegerChoices):
    NEVER = 0, "Never"
    IF_ALL_TESTS_PASSED = 1, "If all tests passed"
    ALWAYS = 2, "Always"


class User(models.Model):
    """An AFE user; ``login`` equals the Django auth user's ``username``."""

    ACCESS_USER = 0
    ACCESS_ADMIN = 1
    ACCESS_ROOT = 100

    login = models.CharField(max_length=255, unique=True, validators=[names.validate_login])
    access_level = models.IntegerField(default=ACCESS_USER, blank=True)
    reboot_before = models.SmallIntegerField(
        choices=RebootBefore.choices, default=RebootBefore.IF_DIRTY, blank=True
    )
    reboot_after = models.SmallIntegerField(
        choices=RebootAfter.choices, default=RebootAfter.NEVER, blank=True
    )
    drone_set = models.ForeignKey(
        "afe.DroneSet", null=True, blank=True, on_delete=models.SET_NULL
    )
    show_experimental = models.BooleanField(default=False)

    class Meta:
        db_table = "afe_users"
        ordering = ["login"]

    def __str__(self) -> str:
        return self.login

    def is_superuser(self) -> bool:
        return self.access_level >= self.ACCESS_ROOT

    def save(self, *args: Any, **kwargs: Any) -> None:
        names.check_fields(self, {"login": names.validate_login})
        is_new = self.pk is None
        with transaction.atomic():
            super().save(*args, **kwargs)
            if is_new:
                AclGroup.everyone().users.add(self)

    @classmethod
    def system_user(cls) -> User:
        """The root user the scheduler and scripts act as (``autotest_system``)."""
        user, _ = cls.objects.get_or_create(
            login=SYSTEM_USER_LOGIN, defaults={"access_level": cls.ACCESS_ROOT}
        )
        return user

    @classmethod
    def ids_for_logins(cls, logins: Iterable[str]) -> dict[str, int]:
        """``{login: id}``, creating users that do not exist yet; one query when they all do."""
        logins = set(logins)
        ids = dict(cls.objects.filter(login__in=logins).values_list("login", "pk"))
        for login in logins - set(ids):
            ids[login] = cls.objects.get_or_create(login=login)[0].pk
        return ids

    @classmethod
    def for_django_user(cls, django_user: Any) -> User:
        """The AFE user tied to a Django auth user (created on first use)."""
        if django_user is None or not getattr(django_user, "is_authenticated", False):
            return cls.system_user()
        level = cls.ACCESS_ROOT if django_user.is_superuser else cls.ACCESS_USER
        user, _ = cls.objects.get_or_create(
            login=django_user.get_username(), defaults={"access_level": level}
        )
        return user


class AclGroup(models.Model):
    """A group of users and the hosts they share.

    A valid host belongs to ``Everyone`` only while it is in no other group:
    putting a host in a real group takes it away from the public.
    """

    name = models.CharField(max_length=255, unique=True, validators=[names.validate_group_name])
    description = models.CharField(max_length=255, blank=True, default="")
    users = models.ManyToManyField(User, blank=True, db_table="afe_acl_groups_users")
    hosts = models.ManyToManyField("afe.Host", blank=True, db_table="afe_acl_groups_hosts")

    class Meta:
        db_table = "afe_acl_groups"
        ordering = ["name"]
        verbose_name = "ACL group"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def everyone(cls) -> AclGroup:
        group, _ = cls.objects.get_or_create(name=EVERYONE)
        return group

    def save(self, *args: Any, **kwargs: Any) -> None:
        names.check_fields(self, {"name": names.validate_group_name})
        if self.description and len(self.description) > 255:
            raise ValidationError({"description": "The description is longer than 255 characters."})
        taken = AclGroup.objects.filter(name__iexact=self.name).exclude(pk=self.pk).first()
        if taken is not None:  # compared without case, as MariaDB's unique index does
            raise ValidationError({"name": f"An ACL group named {taken.name} already exists."})
        if self.pk is not None:
            old_name = AclGroup.objects.filter(pk=self.pk).values_list("name", flat=True).first()
            if old_name == EVERYONE and self.name != EVERYONE:
                raise ValidationError({"name": "The Everyone ACL group cannot be renamed"})
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self.name == EVERYONE:
            raise ValidationError({"name": "The Everyone ACL group cannot be deleted"})
        with transaction.atomic():
            result = super().delete(*args, **kwargs)
            AclGroup.rebalance_everyone()
        return result

    @classmethod
    def rebalance_everyone(cls) -> None:
        """Restore the Everyone rule for all hosts, in a fixed number of queries."""
        from .hosts import Host

        everyone = cls.everyone()
        through = cls.hosts.through
        in_real_group = through.objects.exclude(aclgroup=everyone).values("host_id")
        through.objects.filter(aclgroup=everyone, host_id__in=in_real_group).delete()
        already = through.objects.filter(aclgroup=everyone).values("host_id")
        orphans = (
            Host.valid_objects.exclude(pk__in=in_real_group)
            .exclude(pk__in=already)
            .values_list("pk", flat=True)
        )
        through.objects.bulk_create(
            [through(aclgroup_id=everyone.pk, host_id=host_id) for host_id in orphans]
        )

    @staticmethod
    def check_for_acl_violation_hosts(user: User, hosts: Iterable[Host]) -> None:
        """Raise ValidationError unless ``user`` may modify or use every host."""
        if user.is_superuser():
            return
        hosts = [host for host in hosts if not host.invalid]
        if not hosts:
            return
        allowed = set(
            AclGroup.hosts.through.objects.filter(
                host_id__in=[host.pk for host in hosts], aclgroup__users=user
            ).values_list("host_id", flat=True)
        )
        denied = sorted(host.hostname for host in hosts if host.pk not in allowed)
        if denied:
            raise ValidationError(
                {"hosts": f"You ({user.login}) do not have access to: {', '.join(denied)}"}
            )
