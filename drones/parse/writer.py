"""Write a ``JobResults`` into the TKO tables, in one transaction (spec afe-frontend.md §6.2).

A job is identified by its tag. Writing a tag that is already there replaces
its rows without duplicating any: the ``tko_jobs`` row keeps its ``job_idx``
and is updated; tests are matched to the old ones by (test name, subdir) in
order, and a match keeps its ``test_idx`` (so user-applied labels and
``user_created`` attributes survive) while its status, times, parser-written
attributes and iterations are replaced; old tests without a match are
deleted; job keyvals are replaced.

Besides the ``keyval`` file's entries, the job's keyvals record the parse's
problems: ``parse_unparsed_lines`` (how many status.log lines were skipped)
and ``parse_problems`` (the first problems, ``<file>:<line>: <what>``,
``; ``-joined, cut to 300 characters). Both are absent when there were none.

Values longer than their column are cut to fit. The tag is the job's
identity, so a tag longer than its column (``tko_jobs.tag``) is not merely
cut: it becomes its first ``max_length - 13`` characters, ``~`` and 12 hex
digits of the SHA-1 of the whole tag (``fit_tag``), so two long tags that
share a beginning stay two jobs, a reparse finds its job again, and
``job_tag__startswith='<job id>-'`` still matches. Label, owner and parent
job come from the keyval, else from the AFE job named by the tag.
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, models, transaction

from afe.models import (
    Job,
    TkoIterationAttribute,
    TkoIterationPerfValue,
    TkoIterationResult,
    TkoJob,
    TkoJobKeyval,
    TkoKernel,
    TkoMachine,
    TkoPatch,
    TkoStatus,
    TkoTaskReference,
    TkoTest,
    TkoTestAttribute,
)

from .results import JobResults, Machine, ParsedTest
from .status_log import Kernel

log = logging.getLogger("drones.parse")

UNPARSED_LINES_KEY = "parse_unparsed_lines"
PROBLEMS_KEY = "parse_problems"
#: Hex digits of the tag's SHA-1 that end a shortened tag (``fit_tag``).
TAG_DIGEST_CHARS = 12
_TEST_FIELDS = ("test", "subdir", "kernel", "status", "reason", "machine", "started_time", "finished_time")


@dataclass(frozen=True)
class WriteOutcome:
    """What ``write_job`` did: the job row, whether it replaced an earlier parse, how many tests it holds."""

    job_idx: int
    replaced: bool
    tests: int


def fit(model: type[models.Model], field_name: str, value: str | None) -> str | None:
    """``value`` cut to the column's length (None stays None)."""
    max_length = model._meta.get_field(field_name).max_length
    if value is None or max_length is None or len(value) <= max_length:
        return value
    return value[: max_length - 1] + "…"


def fit_tag(tag: str) -> str:
    """``tag`` if it fits ``tko_jobs.tag``; else its first (limit - 13) characters + ``~`` + 12 hex of sha1(tag)."""
    limit = TkoJob._meta.get_field("tag").max_length
    if limit is None or len(tag) <= limit:
        return tag
    digest = hashlib.sha1(tag.encode("utf-8", "surrogatepass")).hexdigest()[:TAG_DIGEST_CHARS]
    return f"{tag[:limit - TAG_DIGEST_CHARS - 1]}~{digest}"


def _datetime(epoch: int | None) -> datetime | None:
    """A naive local datetime (AFE style; ``TIME_ZONE`` is the process's zone)."""
    return datetime.fromtimestamp(epoch) if epoch is not None else None


def write_job(results: JobResults, *, reparse: bool = True) -> WriteOutcome | None:
    """Write (or with ``reparse``, replace) the job's rows; None if it exists and ``reparse`` is off.

    A concurrent parse of the same job or machine can make the first attempt
    collide on a unique key; the whole transaction is then retried once.
    """
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                return _write(results, reparse)
        except IntegrityError:
            if attempt == 2:
                raise
            log.info("%s: a concurrent write collided; retrying", results.tag)
    raise AssertionError("unreachable")


def _write(results: JobResults, reparse: bool) -> WriteOutcome | None:
    tag = fit_tag(results.tag)
    job = TkoJob.objects.select_for_update().filter(tag=tag).first()
    if job is not None and not reparse:
        return None
    replaced = job is not None
    machines = {m.hostname: _machine(m) for m in results.machines}
    job_machine = None
    if results.job_machine is not None:
        job_machine = machines.get(results.job_machine.hostname) or _machine(results.job_machine)

    fields = _job_fields(results, job_machine)
    if job is None:
        job = TkoJob.objects.create(tag=tag, **fields)
    else:
        TkoJob.objects.filter(pk=job.pk).update(**fields)
    _write_keyvals(job, results)
    if fields["afe_job_id"] is not None:
        TkoTaskReference.objects.update_or_create(
            tko_job=job, reference_type=TkoTaskReference.ReferenceType.AFE,
            defaults={"task_id": str(fields["afe_job_id"]), "parent_task_id": str(fields["afe_parent_job_id"] or "")},
        )
    rows = _write_tests(job, results.tests, machines, job_machine)
    if results.retry_original_job_id is not None:
        _invalidate_originals(job, rows, results.retry_original_job_id)
    return WriteOutcome(job.pk, replaced, len(rows))


def _afe_job(results: JobResults) -> dict[str, Any]:
    """The AFE job the tag names: its name, owner and parent (empty if unknown)."""
    if results.afe_job_id is None:
        return {}
    return Job.objects.filter(pk=results.afe_job_id).values("name", "owner", "parent_job_id").first() or {}


def _job_fields(results: JobResults, machine: TkoMachine | None) -> dict[str, Any]:
    afe: dict[str, Any] = {}
    if results.label is None or results.afe_parent_job_id is None:
        afe = _afe_job(results)
    return {
        "label": fit(TkoJob, "label", results.label if results.label is not None else afe.get("name", "")),
        "username": fit(TkoJob, "username", results.username or afe.get("owner", "")),
        "machine": machine,
        "queued_time": _datetime(results.queued),
        "started_time": _datetime(results.started),
        "finished_time": _datetime(results.finished),
        "afe_job_id": results.afe_job_id,
        "afe_parent_job_id": results.afe_parent_job_id or afe.get("parent_job_id"),
        **{key: fit(TkoJob, key, value) for key, value in results.build.items()},
    }


def _machine(machine: Machine) -> TkoMachine:
    """The machine's row, created or brought up to date (known values are never blanked)."""
    hostname = fit(TkoMachine, "hostname", machine.hostname)
    group = fit(TkoMachine, "machine_group", machine.group) or ""
    owner = fit(TkoMachine, "owner", machine.owner) or ""
    row, created = TkoMachine.objects.get_or_create(hostname=hostname,
                                                    defaults={"machine_group": group, "owner": owner})
    changes = {k: v for k, v in (("machine_group", group), ("owner", owner)) if v and getattr(row, k) != v}
    if not created and changes:
        TkoMachine.objects.filter(pk=row.pk).update(**changes)
    return row


def _kernel(kernel: Kernel) -> TkoKernel:
    row = TkoKernel.objects.filter(kernel_hash=kernel.kernel_hash).order_by("kernel_idx").first()
    if row is not None:
        return row
    row = TkoKernel.objects.create(kernel_hash=kernel.kernel_hash, base=fit(TkoKernel, "base", kernel.base),
                                   printable=fit(TkoKernel, "printable", kernel.base))
    if kernel.patches:
        row.printable = fit(TkoKernel, "printable", f"{kernel.base} p{row.pk}")
        row.save(update_fields=["printable"])
        TkoPatch.objects.bulk_create([
            TkoPatch(kernel=row, name=fit(TkoPatch, "name", p.reference.rsplit("/", 1)[-1]),
                     url=fit(TkoPatch, "url", p.reference), hash=fit(TkoPatch, "hash", p.hash))
            for p in kernel.patches
        ])
    return row


def problems_keyvals(results: JobResults) -> dict[str, str]:
    """The ``parse_unparsed_lines`` and ``parse_problems`` keyvals (empty when the parse was clean)."""
    keyvals = {}
    if results.unparsed_lines:
        keyvals[UNPARSED_LINES_KEY] = str(results.unparsed_lines)
    if results.problems:
        keyvals[PROBLEMS_KEY] = fit(TkoJobKeyval, "value", "; ".join(str(p) for p in results.problems[:20])) or ""
    return keyvals


def _write_keyvals(job: TkoJob, results: JobResults) -> None:
    job.keyvals.all().delete()
    keyvals = {**results.keyval, **problems_keyvals(results)}
    TkoJobKeyval.objects.bulk_create([
        TkoJobKeyval(job=job, key=fit(TkoJobKeyval, "key", key), value=fit(TkoJobKeyval, "value", value))
        for key, value in keyvals.items()
    ])


def _write_tests(job: TkoJob, tests: list[ParsedTest], machines: dict[str, TkoMachine],
                 job_machine: TkoMachine | None) -> list[tuple[TkoTest, ParsedTest]]:
    """Insert or update the tests; returns each parsed test with its row."""
    status_ids = TkoStatus.ids_by_word()
    kernels = {t.result.kernel.kernel_hash: _kernel(t.result.kernel) for t in tests}
    old: dict[tuple[str, str | None], deque[TkoTest]] = defaultdict(deque)
    for row in job.tests.order_by("test_idx"):
        old[(row.test, row.subdir)].append(row)

    pairs: list[tuple[TkoTest, ParsedTest]] = []
    updated: list[TkoTest] = []
    created: list[TkoTest] = []
    for parsed in tests:
        result = parsed.result
        values = {
            "test": fit(TkoTest, "test", result.testname), "subdir": fit(TkoTest, "subdir", result.subdir),
            "kernel": kernels[result.kernel.kernel_hash], "status_id": status_ids[result.status],
            "reason": fit(TkoTest, "reason", result.reason),
            "machine": machines.get(parsed.hostname or "", job_machine),
            "started_time": _datetime(result.started), "finished_time": _datetime(result.finished),
        }
        matches = old.get((values["test"], values["subdir"]))
        if matches:
            row = matches.popleft()
            for name, value in values.items():
                setattr(row, name, value)
            updated.append(row)
        else:
            row = TkoTest(job=job, **values)
            created.append(row)
        pairs.append((row, parsed))

    stale = [row.pk for rows in old.values() for row in rows]
    if stale:
        TkoTest.objects.filter(pk__in=stale).delete()
    if updated:
        TkoTest.objects.bulk_update(updated, list(_TEST_FIELDS))
        ids = [row.pk for row in updated]
        TkoTestAttribute.objects.filter(test_id__in=ids, user_created=False).delete()
        for model in (TkoIterationAttribute, TkoIterationResult, TkoIterationPerfValue):
            model.objects.filter(test_id__in=ids).delete()
    _insert(TkoTest, created)
    _write_children(pairs)
    return pairs


def _insert(model: type[models.Model], rows: list) -> None:
    """Insert ``rows`` and set their primary keys."""
    if connection.features.can_return_rows_from_bulk_insert:
        model.objects.bulk_create(rows)
    else:
        for row in rows:
            row.save(force_insert=True)


def _write_children(pairs: list[tuple[TkoTest, ParsedTest]]) -> None:
    attributes, iteration_attributes, iteration_results = [], [], []
    for row, parsed in pairs:
        attributes += [
            TkoTestAttribute(test=row, attribute=fit(TkoTestAttribute, "attribute", key),
                             value=fit(TkoTestAttribute, "value", value), user_created=False)
            for key, value in parsed.attributes.items()
        ]
        for iteration in parsed.iterations:
            iteration_attributes += [
                TkoIterationAttribute(test=row, iteration=iteration.index,
                                      attribute=fit(TkoIterationAttribute, "attribute", key),
                                      value=fit(TkoIterationAttribute, "value", value))
                for key, value in iteration.attributes.items()
            ]
            iteration_results += [
                TkoIterationResult(test=row, iteration=iteration.index,
                                   attribute=fit(TkoIterationResult, "attribute", key), value=value)
                for key, value in iteration.results.items()
            ]
    TkoTestAttribute.objects.bulk_create(attributes)
    TkoIterationAttribute.objects.bulk_create(iteration_attributes)
    TkoIterationResult.objects.bulk_create(iteration_results)


def _invalidate_originals(job: TkoJob, pairs: list[tuple[TkoTest, ParsedTest]], original_afe_job_id: int) -> None:
    """A retry's tests invalidate the original job's tests of the same (name, subdir) (spec §6.2 step 7)."""
    originals: dict[tuple[str, str | None], int] = {}
    for test_idx, name, subdir in (TkoTest.objects.filter(job__afe_job_id=original_afe_job_id)
                                   .exclude(job=job).order_by("test_idx")
                                   .values_list("test_idx", "test", "subdir")):
        originals.setdefault((name, subdir), test_idx)
    linked = []
    for row, _ in pairs:
        original = originals.get((row.test, row.subdir))
        if original is not None:
            row.invalidates_test_id = original
            linked.append(row)
    if linked:
        TkoTest.objects.bulk_update(linked, ["invalidates_test"])
        TkoTest.objects.filter(pk__in=[row.invalidates_test_id for row in linked]).update(invalid=True)
