"""Jobs, their keyvals, and how a job is created and queued."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from .. import names
from .drones import DroneSet
from .entries import HostQueueEntry, IneligibleHostQueue
from .hosts import Host
from .job_arguments import JobArguments
from .labels import PROVISION_PREFIXES, Label
from .users import AclGroup, RebootAfter, RebootBefore, User


class Priority(models.IntegerChoices):
    WEEKLY = 10, "Weekly"
    DAILY = 20, "Daily"
    POSTBUILD = 30, "PostBuild"
    DEFAULT = 40, "Default"
    BUILD = 50, "Build"
    PFQ = 60, "PFQ"
    CQ = 70, "CQ"
    SUPER = 80, "Super"


class ControlType(models.IntegerChoices):
    SERVER = 1, "Server"
    CLIENT = 2, "Client"


def _job_timeout_default() -> int:
    return settings.JOB_TIMEOUT_MINS_DEFAULT


def _job_max_runtime_default() -> int:
    return settings.JOB_MAX_RUNTIME_MINS_DEFAULT


@dataclass
class JobRequest:
    """The validated, resolved arguments of ``Job.create``."""

    hosts: list[Host] = field(default_factory=list)
    meta_hosts: list[Label] = field(default_factory=list)
    dependencies: list[Label] = field(default_factory=list)


class Job(models.Model):
    owner = models.CharField(max_length=255, validators=[names.validate_login])
    name = models.CharField(max_length=255, validators=[names.validate_job_name])
    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.DEFAULT)
    control_file = models.TextField(null=True, blank=True)
    control_type = models.SmallIntegerField(choices=ControlType.choices, default=ControlType.CLIENT)
    created_on = models.DateTimeField(default=timezone.now)
    synch_count = models.IntegerField(blank=True, default=0)
    timeout = models.IntegerField(default=24)
    timeout_mins = models.IntegerField(default=_job_timeout_default)
    max_runtime_hrs = models.IntegerField(default=72)
    max_runtime_mins = models.IntegerField(default=_job_max_runtime_default)
    run_verify = models.BooleanField(default=False)
    run_reset = models.BooleanField(default=True)
    email_list = models.CharField(max_length=250, blank=True, default="", validators=[names.validate_email_list])
    dependency_labels = models.ManyToManyField(
        Label, blank=True, db_table="afe_jobs_dependency_labels"
    )
    reboot_before = models.SmallIntegerField(choices=RebootBefore.choices, default=RebootBefore.IF_DIRTY)
    reboot_after = models.SmallIntegerField(choices=RebootAfter.choices, default=RebootAfter.NEVER)
    parse_failed_repair = models.BooleanField(default=False)
    drone_set = models.ForeignKey(DroneSet, null=True, blank=True, on_delete=models.SET_NULL)
    parent_job = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="child_jobs"
    )
    test_retry = models.IntegerField(default=0)
    shard = models.ForeignKey("afe.Shard", null=True, blank=True, on_delete=models.SET_NULL)
    require_ssp = models.BooleanField(null=True, blank=True)

    class Meta:
        db_table = "afe_jobs"
        ordering = ["-id"]
        indexes = [models.Index(fields=["parent_job"], name="afe_jobs_parent_idx")]

    def __str__(self) -> str:
        return f"{self.id}-{self.owner} {self.name}"

    CHECKED = {"owner": names.validate_login, "name": names.validate_job_name, "email_list": names.validate_email_list}

    def save(self, *args: Any, **kwargs: Any) -> None:
        names.check_fields(self, self.CHECKED)
        super().save(*args, **kwargs)

    def tag(self) -> str:
        return f"{self.id}-{self.owner}"

    def is_server_job(self) -> bool:
        return self.control_type == ControlType.SERVER

    def keyval_dict(self) -> dict[str, str]:
        return dict(self.jobkeyval_set.values_list("key", "value"))

    def email_addresses(self) -> list[str]:
        return names.email_addresses(self.email_list)

    def abort(self, by: User) -> list[int]:
        """Request an abort of every entry of this job and its children; returns the entry ids."""
        return self.hostqueueentry_set.all().abort(by)

    @classmethod
    def create(
        cls,
        *,
        owner: User,
        name: str,
        control_file: str,
        control_type: int | str = ControlType.CLIENT,
        priority: int | str = Priority.DEFAULT,
        hosts: Sequence[str | Host] = (),
        meta_hosts: Sequence[str] = (),
        one_time_hosts: Sequence[str] = (),
        hostless: bool = False,
        dependencies: Sequence[str | Label] = (),
        keyvals: Mapping[str, Any] | None = None,
        parent_job: Job | int | None = None,
        synch_count: int | None = None,
        timeout_mins: int | None = None,
        max_runtime_mins: int | None = None,
        run_verify: bool = False,
        run_reset: bool = True,
        email_list: str = "",
        reboot_before: int | str | None = None,
        reboot_after: int | str | None = None,
        parse_failed_repair: bool = False,
        drone_set: str | DroneSet | None = None,
        require_ssp: bool | None = None,
        is_template: bool = False,
    ) -> Job:
        """Validate a job request and create the job with its entries, all or nothing.

        ``hosts`` are hostnames (or Host rows), ``meta_hosts`` label names with an
        optional ``N*`` count, ``one_time_hosts`` hostnames to create as
        one-time hosts. Raises ``ValidationError`` (an argument → message dict)
        and writes nothing when the request is bad; the rules are in
        ``afe.names`` and ``afe.models.job_arguments``.
        """
        if not isinstance(owner, User) or owner.pk is None:
            raise ValidationError({"owner": "The owner must be a saved AFE user."})
        try:
            names.validate_login(owner.login)
        except ValidationError as exc:
            raise ValidationError({"owner": exc.messages}) from None
        args = JobArguments.parse(
            ENUMS, name=name, control_file=control_file, control_type=control_type, priority=priority,
            hosts=hosts, meta_hosts=meta_hosts, one_time_hosts=one_time_hosts, hostless=hostless,
            dependencies=dependencies, keyvals=keyvals, parent_job=parent_job, synch_count=synch_count,
            timeout_mins=timeout_mins, max_runtime_mins=max_runtime_mins, run_verify=run_verify,
            run_reset=run_reset, email_list=email_list, reboot_before=reboot_before, reboot_after=reboot_after,
            parse_failed_repair=parse_failed_repair, drone_set=drone_set, require_ssp=require_ssp,
            is_template=is_template,
        )
        errors: dict[str, str] = {}
        with transaction.atomic():
            request = cls._resolve_hosts(owner, args, errors)
            request.dependencies = cls._resolve_dependencies(args.dependencies, errors)
            synch_count = 1 if args.synch_count is None else args.synch_count
            n_hosts = len(request.hosts) + len(request.meta_hosts)
            if not args.hostless and not errors and not 1 <= synch_count <= max(n_hosts, 1):
                errors["synch_count"] = (
                    f"synch_count {synch_count} must be between 1 and the number of hosts ({n_hosts})"
                )
            if not errors:
                cls._check_dependencies(request, errors)
            parent = cls._resolve_parent(args.parent_job_id, errors)
            resolved_drone_set = cls._resolve_drone_set(args.drone_set, owner, errors)
            if errors:
                raise ValidationError(errors)  # leaving the atomic block undoes any one-time hosts

            job = cls.objects.create(
                owner=owner.login,
                name=args.name,
                priority=args.priority,
                control_file=args.control_file,
                control_type=args.control_type,
                synch_count=synch_count,
                timeout_mins=args.timeout_mins or settings.JOB_TIMEOUT_MINS_DEFAULT,
                max_runtime_mins=args.max_runtime_mins or settings.JOB_MAX_RUNTIME_MINS_DEFAULT,
                run_verify=args.run_verify,
                run_reset=args.run_reset,
                email_list=args.email_list,
                reboot_before=owner.reboot_before if args.reboot_before is None else args.reboot_before,
                reboot_after=owner.reboot_after if args.reboot_after is None else args.reboot_after,
                parse_failed_repair=args.parse_failed_repair,
                drone_set=resolved_drone_set,
                parent_job=parent,
                require_ssp=args.require_ssp,
            )
            job.timeout = max(1, job.timeout_mins // 60)
            job.max_runtime_hrs = max(1, job.max_runtime_mins // 60)
            job.save(update_fields=["timeout", "max_runtime_hrs"])
            job.dependency_labels.set(request.dependencies)
            JobKeyval.objects.bulk_create([JobKeyval(job=job, key=k, value=v) for k, v in args.keyvals.items()])
            job.queue(request.hosts, request.meta_hosts, is_template=args.is_template)
        return job

    def queue(self, hosts: Sequence[Host], meta_hosts: Sequence[Label], is_template: bool = False) -> None:
        """Create the job's entries: one per host and per metahost, or one hostless entry."""
        status = HostQueueEntry.Status.TEMPLATE if is_template else HostQueueEntry.Status.QUEUED
        flags = HostQueueEntry.status_flags(status)
        entries = [HostQueueEntry(job=self, host=host, status=status, **flags) for host in hosts]
        entries += [HostQueueEntry(job=self, meta_host=label, status=status, **flags) for label in meta_hosts]
        if not entries:
            entries = [HostQueueEntry(job=self, status=status, **flags)]
        HostQueueEntry.objects.bulk_create(entries)
        if hosts and not is_template:
            IneligibleHostQueue.objects.bulk_create(
                [IneligibleHostQueue(job=self, host=host) for host in hosts], ignore_conflicts=True
            )
            # A dead host asked for by name gets another chance (AFE's enqueue_job).
            busy = HostQueueEntry.objects.filter(
                host__in=hosts, active=True
            ).values("host_id")
            Host.objects.filter(
                pk__in=[h.pk for h in hosts], status=Host.Status.REPAIR_FAILED
            ).exclude(pk__in=busy).update(status=Host.Status.READY)

    @staticmethod
    def _resolve_hosts(owner: User, args: JobArguments, errors: dict[str, str]) -> JobRequest:
        """The Host and Label rows the checked arguments name; problems go into ``errors``."""
        request = JobRequest()
        if args.hostless:
            if args.hostnames or args.metahosts or args.one_time_hosts:
                errors["hostless"] = "Hostless jobs cannot include any hosts!"
            if args.control_type != ControlType.SERVER:
                errors["control_type"] = "Hostless jobs cannot use client-side control files"
            return request
        if not (args.hostnames or args.metahosts or args.one_time_hosts):
            errors["arguments"] = "You must specify at least one of hosts, meta_hosts or one_time_hosts, or a hostless job."
            return request

        names_given = [n.lower() for n in args.hostnames + args.one_time_hosts]
        duplicates = sorted({n for n in names_given if names_given.count(n) > 1})
        if duplicates:
            errors["hosts"] = f"Duplicate hosts: {', '.join(duplicates)}"
            return request

        found = {h.hostname.lower(): h for h in Host.valid_objects.filter(hostname__in=args.hostnames)}
        unknown = [n for n in args.hostnames if n.lower() not in found]
        if unknown:
            errors["hosts"] = f"Unknown hosts: {', '.join(unknown)}"
            return request
        request.hosts = [found[n.lower()] for n in args.hostnames]
        try:
            AclGroup.check_for_acl_violation_hosts(owner, request.hosts)
        except ValidationError as exc:
            errors.update({k: "; ".join(v) for k, v in exc.message_dict.items()})
            return request

        label_names = {label for label, _ in args.metahosts}
        labels = {l.name: l for l in Label.valid_objects.filter(name__in=label_names)}
        missing = sorted(label_names - set(labels))
        if missing:
            errors["meta_hosts"] = f"Unknown labels: {', '.join(missing)}"
            return request
        request.meta_hosts = [labels[n] for n in args.metahost_labels]

        for hostname in args.one_time_hosts:
            try:
                request.hosts.append(Host.create_one_time_host(hostname))
            except ValidationError as exc:
                errors["one_time_hosts"] = "; ".join(exc.message_dict.get("hostname", exc.messages))
        return request

    @staticmethod
    def _resolve_dependencies(label_names: list[str], errors: dict[str, str]) -> list[Label]:
        labels = {l.name: l for l in Label.valid_objects.filter(name__in=label_names)}
        missing = [n for n in label_names if n not in labels]
        # Provision labels name a build to install; they are created on demand (the names' rules apply).
        for name in [n for n in missing if n.startswith(PROVISION_PREFIXES)]:
            try:
                labels[name] = Label.objects.create(name=name)
            except ValidationError as exc:
                errors["dependencies"] = "; ".join(exc.messages)
                return []
        unknown = [n for n in label_names if n not in labels]
        if unknown:
            errors["dependencies"] = f"Unknown labels: {', '.join(unknown)}"
        return list({labels[n].pk: labels[n] for n in label_names if n in labels}.values())

    @staticmethod
    def _check_dependencies(request: JobRequest, errors: dict[str, str]) -> None:
        """Explicit hosts must carry every dependency; each metahost needs one eligible host."""
        required = {l.pk for l in request.dependencies if not l.is_provisionable}
        if not required and not request.meta_hosts:
            return
        through = Host.labels.through
        host_ids = [h.pk for h in request.hosts if not h.invalid]
        have: dict[int, set[int]] = {}
        for host_id, label_id in through.objects.filter(host_id__in=host_ids).values_list("host_id", "label_id"):
            have.setdefault(host_id, set()).add(label_id)
        lacking = sorted(h.hostname for h in request.hosts if not h.invalid and not required <= have.get(h.pk, set()))
        if lacking:
            names = ", ".join(sorted(l.name for l in request.dependencies if l.pk in required))
            errors["hosts"] = f"Hosts {', '.join(lacking)} do not have all the dependencies ({names})"
        for label in {l.pk: l for l in request.meta_hosts}.values():
            eligible = Host.valid_objects.filter(labels=label)
            for dep in required - {label.pk}:
                eligible = eligible.filter(labels=dep)
            if not eligible.exists():
                errors["meta_hosts"] = f"No eligible hosts for label {label.name} with the job's dependencies"

    @staticmethod
    def _resolve_parent(parent_job_id: int | None, errors: dict[str, str]) -> Job | None:
        if parent_job_id is None:
            return None
        parent = Job.objects.filter(pk=parent_job_id).first()
        if parent is None:
            errors["parent_job_id"] = f"Unknown parent job {parent_job_id}"
        return parent

    @staticmethod
    def _resolve_drone_set(drone_set: str | None, owner: User, errors: dict[str, str]) -> DroneSet | None:
        if drone_set:
            found = DroneSet.objects.filter(name=drone_set).first()
            if found is None:
                errors["drone_set"] = f"Unknown drone set {drone_set}"
            return found
        return owner.drone_set


ENUMS = {"control_type": ControlType, "priority": Priority, "reboot_before": RebootBefore, "reboot_after": RebootAfter}


class JobKeyval(models.Model):
    """A submitter's key and value for the job's keyval file (never one of the scheduler's own keys)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, db_constraint=False)
    key = models.CharField(max_length=90, validators=[names.validate_submitted_keyval_key])
    value = models.CharField(max_length=300, validators=[names.validate_keyval_value])

    CHECKED = {"key": names.validate_submitted_keyval_key, "value": names.validate_keyval_value}

    class Meta:
        db_table = "afe_job_keyvals"
        indexes = [models.Index(fields=["job", "key"], name="afe_jobkeyval_job_idx")]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        names.check_fields(self, self.CHECKED)
        super().save(*args, **kwargs)
