"""The scheduler's pure decisions: host matching, pre/post-job tasks, throttling.

No database: every scenario is built from plain values. Scenario ids (S1-S11,
T1-T4, O1-O4, M7, H5, DM, ...) refer to spec §4.2-§4.5; the lab below is the
spec's §4.0 fixture.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from afe.models import HostQueueEntry, Protection, RebootAfter, RebootBefore, SpecialTask
from scheduler.matching import EntryRequest, HostCandidate, match_entries, pending_order
from scheduler.postjob_rules import final_status, needs_crashinfo, postjob_tasks
from scheduler.prejob import PrejobFailure, prejob_failure, prejob_tasks, provision_labels
from scheduler.throttle import DroneSlot, StartRequest, admit, parse_admission

Task = SpecialTask.Task
Status = HostQueueEntry.Status

# ---------------------------------------------------------------------------
# The §4.0 lab: host1..host9 in ACL my_acl, all with the platform label.
# label1: host1; label2: host2; label3 (only_if_needed): nobody;
# label6: host5-host9; label7: host7-host9.
# ---------------------------------------------------------------------------
MY_ACL, OTHER_ACL = 100, 101
LABEL1, LABEL2, LABEL3, LABEL6, LABEL7, PLATFORM = 1, 2, 3, 6, 7, 99
ONLY_IF_NEEDED = frozenset({LABEL3})
LAB_LABELS = {1: {LABEL1}, 2: {LABEL2}, 5: {LABEL6}, 6: {LABEL6}, 7: {LABEL6, LABEL7}, 8: {LABEL6, LABEL7}, 9: {LABEL6, LABEL7}}


def host(number: int, labels: set[int] | frozenset[int] = frozenset(), **fields: Any) -> HostCandidate:
    """``host<number>``: unleased, unlocked, valid, in my_acl, with the platform label."""
    values: dict[str, Any] = dict(
        id=number, hostname=f"host{number}", leased=False, locked=False, invalid=False,
        label_ids=frozenset(labels) | {PLATFORM}, acl_ids=frozenset({MY_ACL}),
    )
    values.update(fields)
    return HostCandidate(**values)


def lab(**changes: dict[str, Any]) -> list[HostCandidate]:
    """The nine lab hosts; ``lab(host1={"locked": True})`` changes fields of one host."""
    hosts = {f"host{n}": host(n, LAB_LABELS.get(n, set())) for n in range(1, 10)}
    for name, fields in changes.items():
        hosts[name] = dataclasses.replace(hosts[name], **fields)
    return list(hosts.values())


def entry(
    entry_id: int, job_id: int, *, host: int | None = None, meta: int | None = None, priority: int = 0,
    parent: int | None = None, deps: set[int] | None = None, preferred: set[int] = frozenset(),
    acls: set[int] = frozenset({MY_ACL}), blocked: set[int] = frozenset(),
) -> EntryRequest:
    """An entry of a job owned by a my_acl user. Like the fixture's ``_create_job``,
    a metahost label is also a dependency unless ``deps`` is given."""
    if deps is None:
        deps = {meta} if meta is not None else set()
    return EntryRequest(
        entry_id=entry_id, job_id=job_id, priority=priority, parent_job_id=parent,
        host_id=host, meta_host_id=meta, dependency_ids=frozenset(deps),
        preferred_ids=frozenset(preferred), acl_ids=frozenset(acls), blocked_host_ids=frozenset(blocked),
    )


def scheduled(
    entries: list[EntryRequest], hosts: list[HostCandidate], only_if_needed: frozenset[int] = ONLY_IF_NEEDED
) -> set[tuple[int, str]]:
    """The (job_id, hostname) pairs :func:`match_entries` decides, as the spec states results."""
    by_entry = {e.entry_id: e for e in entries}
    hostnames = {h.id: h.hostname for h in hosts}
    result = match_entries(entries, hosts, only_if_needed)
    return {(by_entry[e].job_id, hostnames[h]) for e, h in result.items()}


# ---------------------------------------------------------------------------
# Matching: §4.2 S1-S11
# ---------------------------------------------------------------------------
def test_S1_explicit_host_entries_get_their_hosts() -> None:
    entries = [entry(1, 1, host=1), entry(2, 2, host=2)]
    assert scheduled(entries, lab()) == {(1, "host1"), (2, "host2")}


def test_S1_metahost_entries_get_a_host_carrying_their_label() -> None:
    entries = [entry(1, 1, meta=LABEL1), entry(2, 2, meta=LABEL2)]
    assert scheduled(entries, lab()) == {(1, "host1"), (2, "host2")}


def test_S2_higher_priority_then_earlier_job_wins_explicit_hosts() -> None:
    entries = [
        entry(1, 1, host=1),
        entry(2, 2, host=2),
        entry(3, 3, host=1), entry(4, 3, host=2),
        entry(5, 4, host=1, priority=1),
    ]
    assert scheduled(entries, lab()) == {(4, "host1"), (2, "host2")}


def test_S2_higher_priority_then_earlier_job_wins_metahosts() -> None:
    entries = [
        entry(1, 1, meta=LABEL1),
        entry(2, 2, meta=LABEL2),
        entry(3, 3, meta=LABEL1, deps={LABEL1, LABEL2}),
        entry(4, 4, meta=LABEL1, priority=1),
    ]
    assert scheduled(entries, lab()) == {(4, "host1"), (2, "host2")}


def test_S2_metahost_needing_label1_and_label2_together_is_never_scheduled() -> None:
    assert scheduled([entry(3, 3, meta=LABEL1, deps={LABEL1, LABEL2})], lab()) == set()


@pytest.mark.parametrize("kind", ["explicit", "metahost"])
@pytest.mark.parametrize(
    "scenario, change",
    [
        ("S3 host not Ready (still leased)", {"leased": True}),
        ("S3 host Ready but locked", {"locked": True}),
        ("S4 host busy with another job (leased)", {"leased": True}),
    ],
)
def test_S3_S4_host_must_be_unleased_and_unlocked(kind: str, scenario: str, change: dict[str, bool]) -> None:
    job = entry(1, 1, host=1) if kind == "explicit" else entry(1, 1, meta=LABEL1)
    assert scheduled([job], lab(host1=change)) == set()


def test_S3_invalid_host_is_used_by_explicit_entries_only() -> None:
    hosts = lab(host1={"invalid": True})
    assert scheduled([entry(1, 1, host=1)], hosts) == {(1, "host1")}
    assert scheduled([entry(1, 1, meta=LABEL1)], hosts) == set()


@pytest.mark.parametrize("kind", ["explicit", "metahost"])
def test_S5_host_sharing_no_acl_with_the_owner_is_not_scheduled(kind: str) -> None:
    job = entry(1, 1, host=1) if kind == "explicit" else entry(1, 1, meta=LABEL1)
    assert scheduled([job], lab(host1={"acl_ids": frozenset()})) == set()
    assert scheduled([job], lab(host1={"acl_ids": frozenset({OTHER_ACL})})) == set()


def test_S6_one_time_host_ignores_acls() -> None:
    hosts = lab(host1={"acl_ids": frozenset(), "invalid": True})
    assert scheduled([entry(1, 1, host=1)], hosts) == {(1, "host1")}


def test_S7_explicit_hosts_are_scheduled_when_every_host_is_invalid() -> None:
    hosts = [dataclasses.replace(h, invalid=True) for h in lab()]
    entries = [entry(1, 1, host=1), entry(2, 2, host=2)]
    assert scheduled(entries, hosts) == {(1, "host1"), (2, "host2")}


def test_S8_explicit_host_entry_beats_earlier_metahost_entry_of_same_priority() -> None:
    entries = [entry(1, 1, meta=LABEL1), entry(2, 2, host=1)]
    assert scheduled(entries, lab()) == {(2, "host1")}


def test_S9_hostless_entries_are_never_matched_and_come_last_in_their_priority() -> None:
    hostless = entry(1, 1)
    entries = [hostless, entry(2, 2, meta=LABEL6), entry(3, 3, host=1)]
    assert match_entries(entries, lab(), ONLY_IF_NEEDED).keys() == {2, 3}
    assert [e.entry_id for e in pending_order(entries)] == [3, 2, 1]


def test_S11_no_ready_hosts_means_nothing_is_scheduled() -> None:
    # Repair Failed hosts are never released, so they stay leased.
    hosts = [dataclasses.replace(h, leased=True) for h in lab()]
    assert scheduled([entry(1, 1, host=1), entry(2, 2, meta=LABEL6)], hosts) == set()


# ---------------------------------------------------------------------------
# Matching: §4.3 O1-O4 (upstream only_if_needed and blocks, restored here)
# ---------------------------------------------------------------------------
def hosts_with_label3_on_host1() -> list[HostCandidate]:
    return lab(host1={"label_ids": frozenset({LABEL1, LABEL3, PLATFORM})})


def test_O1_metahost_may_not_use_host_with_unrequested_only_if_needed_label() -> None:
    assert scheduled([entry(1, 1, meta=LABEL1)], hosts_with_label3_on_host1()) == set()


def test_O2_metahost_may_use_only_if_needed_host_when_label_is_a_dependency() -> None:
    job = entry(1, 1, meta=LABEL1, deps={LABEL1, LABEL3})
    assert scheduled([job], hosts_with_label3_on_host1()) == {(1, "host1")}


def test_O3_metahost_may_use_only_if_needed_host_when_label_is_the_metahost() -> None:
    job = entry(1, 1, meta=LABEL3, deps={LABEL3})
    assert scheduled([job], hosts_with_label3_on_host1()) == {(1, "host1")}


def test_O4_metahost_entry_may_not_reuse_a_host_blocked_for_its_job() -> None:
    # The job's explicit entry on host1 completed; its block row stays.
    assert scheduled([entry(2, 1, meta=LABEL1, blocked={1})], lab()) == set()


def test_only_if_needed_labels_do_not_restrict_explicit_hosts() -> None:
    assert scheduled([entry(1, 1, host=1)], hosts_with_label3_on_host1()) == {(1, "host1")}


def test_blocks_do_not_restrict_explicit_hosts() -> None:
    assert scheduled([entry(1, 1, host=1, blocked={1})], lab()) == {(1, "host1")}


# ---------------------------------------------------------------------------
# Matching: dependencies, priority across kinds, preference and determinism
# ---------------------------------------------------------------------------
def test_H5_explicit_host_lacking_a_dependency_is_not_scheduled() -> None:
    assert scheduled([entry(1, 1, host=1, deps={LABEL2})], lab()) == set()
    assert scheduled([entry(1, 1, host=1, deps={LABEL1})], lab()) == {(1, "host1")}


def test_metahost_label_constrains_the_host_even_when_not_a_dependency() -> None:
    # §6.1 #5: the ChromeOS rdb ignored meta_host; upstream did not.
    assert scheduled([entry(1, 1, meta=LABEL7, deps=set())], lab()) == {(1, "host7")}


def test_metahost_label_constrains_the_host_alongside_unrelated_dependencies() -> None:
    assert scheduled([entry(1, 1, meta=LABEL7, deps={LABEL6})], lab()) == {(1, "host7")}


def test_metahost_dependencies_narrow_the_metahost_label() -> None:
    assert scheduled([entry(1, 1, meta=LABEL6, deps={LABEL6, LABEL7})], lab()) == {(1, "host7")}


def test_higher_priority_metahost_takes_the_host_from_lower_priority_explicit_entry() -> None:
    entries = [entry(1, 1, host=1, priority=40), entry(2, 2, meta=LABEL1, priority=50)]
    assert scheduled(entries, lab()) == {(2, "host1")}


def test_each_host_goes_to_at_most_one_entry() -> None:
    entries = [entry(n, n, meta=LABEL7) for n in range(1, 6)]
    result = match_entries(entries, lab(), ONLY_IF_NEEDED)
    assert result == {1: 7, 2: 8, 3: 9}


def test_explicit_entry_naming_an_unknown_host_gets_nothing() -> None:
    assert scheduled([entry(1, 1, host=42)], lab()) == set()


def test_metahost_prefers_host_already_carrying_the_requested_build() -> None:
    build = 500
    hosts = lab(host8={"label_ids": frozenset({LABEL6, LABEL7, PLATFORM, build})})
    entries = [entry(1, 1, meta=LABEL6, preferred={build}), entry(2, 2, meta=LABEL6, preferred={build})]
    assert match_entries(entries, hosts, ONLY_IF_NEEDED) == {1: 8, 2: 5}


def test_metahost_prefers_host_with_more_of_the_preferred_labels() -> None:
    build, firmware = 500, 501
    hosts = lab(
        host5={"label_ids": frozenset({LABEL6, PLATFORM, build})},
        host9={"label_ids": frozenset({LABEL6, PLATFORM, build, firmware})},
    )
    assert match_entries([entry(1, 1, meta=LABEL6, preferred={build, firmware})], hosts, ONLY_IF_NEEDED) == {1: 9}


def test_ties_between_hosts_go_to_natural_hostname_order() -> None:
    hosts = [host(10, {LABEL1}), host(2, {LABEL1}, hostname="Host2"), host(3, {LABEL1}, hostname="host03")]
    entries = [entry(n, n, meta=LABEL1) for n in (1, 2, 3)]
    assert match_entries(entries, hosts, ONLY_IF_NEEDED) == {1: 2, 2: 3, 3: 10}


def test_pending_order_priority_then_kind_then_parent_then_job_then_entry() -> None:
    entries = [
        entry(1, 1, meta=LABEL1, priority=40),
        entry(2, 9, host=5, priority=40, parent=7),
        entry(3, 8, host=6, priority=40, parent=3),
        entry(4, 6, host=9, priority=40),                 # no parent sorts as parent 0
        entry(5, 5, priority=80),                         # hostless, but higher priority
        entry(7, 4, host=2, priority=40, parent=3),
        entry(6, 4, host=1, priority=40, parent=3),
        entry(8, 2, priority=40),
    ]
    assert [e.entry_id for e in pending_order(entries)] == [5, 4, 6, 7, 3, 2, 1, 8]


def test_500_metahost_entries_each_get_a_distinct_eligible_host() -> None:
    boards = [1000 + b for b in range(5)]
    build = 2000
    hosts = [
        host(n, {boards[n % 5]} | ({build} if n % 2 == 0 else set()))
        for n in range(1, 501)
    ]
    entries = [
        entry(n, n, meta=boards[n % 5], priority=(n % 3) * 10, preferred={build}, parent=n % 7 or None)
        for n in range(1, 501)
    ]
    result = match_entries(entries, hosts, frozenset())

    by_id = {h.id: h for h in hosts}
    assert len(result) == 500
    assert len(set(result.values())) == 500
    for e in entries:
        chosen = by_id[result[e.entry_id]]
        assert e.meta_host_id in chosen.label_ids and not chosen.acl_ids.isdisjoint(e.acl_ids)
    # Each board has 50 hosts on the build: the first 50 entries served for it get them.
    served = {board: [by_id[h] for e, h in result.items() if entries[e - 1].meta_host_id == board] for board in boards}
    for board_hosts in served.values():
        assert all(build in h.label_ids for h in board_hosts[:50])
        assert not any(build in h.label_ids for h in board_hosts[50:])


# ---------------------------------------------------------------------------
# Pre-job task selection: §3.3 table, M7, provisioning
# ---------------------------------------------------------------------------
NEVER, IF_DIRTY, ALWAYS = RebootBefore.NEVER, RebootBefore.IF_DIRTY, RebootBefore.ALWAYS
ANY = (True, False)

# reboot_before, do-not-verify host, run_reset, run_verify, host dirty -> tasks (spec §3.3 table)
TableRow = tuple[tuple[int, ...], tuple[bool, ...], tuple[bool, ...], tuple[bool, ...], tuple[bool, ...], list[str]]
PREJOB_TABLE: list[TableRow] = [
    ((NEVER,), (False,), (True,), ANY, ANY, [Task.VERIFY]),
    ((NEVER,), (False,), (False,), (True,), ANY, [Task.VERIFY]),
    ((NEVER,), (False,), (False,), (False,), ANY, []),
    ((NEVER,), (True,), ANY, ANY, ANY, []),
    ((IF_DIRTY, ALWAYS), (False,), (True,), ANY, ANY, [Task.RESET]),
    ((ALWAYS,), (False,), (False,), (True,), ANY, [Task.RESET]),
    ((ALWAYS,), (False,), (False,), (False,), ANY, [Task.CLEANUP]),
    ((IF_DIRTY,), (False,), (False,), (True,), (True,), [Task.RESET]),
    ((IF_DIRTY,), (False,), (False,), (False,), (True,), [Task.CLEANUP]),
    ((IF_DIRTY,), (False,), (False,), (True,), (False,), [Task.VERIFY]),
    ((IF_DIRTY,), (False,), (False,), (False,), (False,), []),
    ((ALWAYS,), (True,), ANY, ANY, ANY, [Task.CLEANUP]),
    ((IF_DIRTY,), (True,), ANY, ANY, (True,), [Task.CLEANUP]),
    ((IF_DIRTY,), (True,), ANY, ANY, (False,), []),
]
PREJOB_CASES = [
    (*combo, tasks)
    for *columns, tasks in PREJOB_TABLE
    for combo in itertools.product(*columns)
]


def test_prejob_table_covers_every_combination_exactly_once() -> None:
    combos = [case[:5] for case in PREJOB_CASES]
    assert sorted(combos) == sorted(itertools.product((NEVER, IF_DIRTY, ALWAYS), ANY, ANY, ANY, ANY))


@pytest.mark.parametrize("reboot_before, dnv, run_reset, run_verify, dirty, expected", PREJOB_CASES)
def test_prejob_tasks_follow_the_spec_table(
    reboot_before: int, dnv: bool, run_reset: bool, run_verify: bool, dirty: bool, expected: list[str]
) -> None:
    tasks = prejob_tasks(
        reboot_before=reboot_before, run_verify=run_verify, run_reset=run_reset, host_dirty=dirty,
        host_protection=Protection.DO_NOT_VERIFY if dnv else Protection.NO_PROTECTION,
        job_label_names=frozenset({"board:x"}), host_label_names=frozenset({"board:x"}),
    )
    assert tasks == expected


def default_prejob(**overrides: Any) -> list[str]:
    """prejob_tasks for the §4.0 fixture job (reboot Never, run_reset, no verify) on a dirty host."""
    args: dict[str, Any] = dict(
        reboot_before=NEVER, run_verify=False, run_reset=True, host_dirty=True,
        host_protection=Protection.NO_PROTECTION,
        job_label_names=frozenset({"board:x"}), host_label_names=frozenset({"board:x", "pool:a"}),
    )
    args.update(overrides)
    return prejob_tasks(**args)


def test_M7_fixture_job_gets_the_weakened_reset_verify() -> None:
    assert default_prejob() == [Task.VERIFY]


@pytest.mark.parametrize("dirty", [True, False])
def test_M7_reboot_if_dirty_with_run_reset_resets_dirty_and_clean_hosts(dirty: bool) -> None:
    assert default_prejob(reboot_before=IF_DIRTY, host_dirty=dirty) == [Task.RESET]


def test_M7_reboot_always_resets() -> None:
    assert default_prejob(reboot_before=ALWAYS, host_dirty=False) == [Task.RESET]


@pytest.mark.parametrize("reboot_before", [NEVER, IF_DIRTY, ALWAYS])
@pytest.mark.parametrize("protection", [Protection.NO_PROTECTION, Protection.DO_NOT_VERIFY])
def test_provision_replaces_reset_verify_and_cleanup_when_host_lacks_the_build(
    reboot_before: int, protection: int
) -> None:
    tasks = default_prejob(
        reboot_before=reboot_before, run_verify=True, host_protection=protection,
        job_label_names=frozenset({"board:x", "cros-version:R99-1"}),
        host_label_names=frozenset({"board:x", "cros-version:R98-1"}),
    )
    assert tasks == [Task.PROVISION]


def test_no_provision_when_host_already_has_the_build() -> None:
    tasks = default_prejob(
        job_label_names=frozenset({"board:x", "cros-version:R99-1"}),
        host_label_names=frozenset({"board:x", "cros-version:R99-1"}),
    )
    assert tasks == [Task.VERIFY]


def test_skip_provision_label_disables_provisioning() -> None:
    tasks = default_prejob(
        job_label_names=frozenset({"board:x", "cros-version:R99-1", "skip_provision"}),
        host_label_names=frozenset({"board:x"}),
    )
    assert tasks == [Task.VERIFY]


def test_missing_labels_that_are_not_provisionable_do_not_provision() -> None:
    tasks = default_prejob(job_label_names=frozenset({"board:y", "pool:z"}), host_label_names=frozenset())
    assert tasks == [Task.VERIFY]


def test_provision_labels_are_the_missing_provisionable_labels_sorted() -> None:
    job = frozenset({"board:x", "fwrw-version:F1", "cros-version:R99-1", "cheets-version:A7", "fw-version:9"})
    host_labels = frozenset({"board:x", "cheets-version:A7", "cros-version:R98-1"})
    assert provision_labels(job, host_labels) == ["cros-version:R99-1", "fw-version:9", "fwrw-version:F1"]
    assert provision_labels(job, job) == []


# ---------------------------------------------------------------------------
# Pre-job failure: §3.4 step 3, with §6.1 #4 fixed
# ---------------------------------------------------------------------------
REQUEUE_AND_REPAIR = PrejobFailure(fail_entry=False, requeue=True, repair=True, host_repair_failed=False)
FAIL_AND_REPAIR = PrejobFailure(fail_entry=True, requeue=False, repair=True, host_repair_failed=False)
FAIL_AND_GIVE_UP_HOST = PrejobFailure(fail_entry=True, requeue=False, repair=False, host_repair_failed=True)
REQUEUE_AND_GIVE_UP_HOST = PrejobFailure(fail_entry=False, requeue=True, repair=False, host_repair_failed=True)


@pytest.mark.parametrize(
    "provisions, max_retries, repairs, repair_limit, metahost, expected",
    [
        pytest.param(0, 0, 0, 2, False, REQUEUE_AND_REPAIR, id="verify failed first time: requeue, repair host"),
        pytest.param(0, 0, 1, 2, True, REQUEUE_AND_REPAIR, id="metahost under the repair limit: requeue, repair"),
        pytest.param(1, 0, 0, 2, False, FAIL_AND_REPAIR, id="provision failed with no retries: fail, still repair"),
        pytest.param(1, 0, 0, 2, True, FAIL_AND_REPAIR, id="metahost provision failed with no retries: fail"),
        pytest.param(1, 1, 0, 2, False, REQUEUE_AND_REPAIR, id="provision failed within retries: requeue"),
        pytest.param(2, 1, 0, 2, True, FAIL_AND_REPAIR, id="provision retries used up: fail"),
        pytest.param(0, 0, 2, 2, False, FAIL_AND_GIVE_UP_HOST, id="repair limit hit: host Repair Failed, entry fails"),
        pytest.param(0, 0, 1, 1, True, REQUEUE_AND_GIVE_UP_HOST, id="6.1#4 metahost repair limit hit: host Repair Failed, look elsewhere"),
        pytest.param(2, 1, 1, 1, True, FAIL_AND_GIVE_UP_HOST, id="provision retries and repair limit both used up"),
    ],
)
def test_prejob_failure_decides_entry_and_host_fate(
    provisions: int, max_retries: int, repairs: int, repair_limit: int, metahost: bool, expected: PrejobFailure
) -> None:
    decision = prejob_failure(
        provision_attempts=provisions, max_provision_retries=max_retries,
        repairs_for_entry_on_host=repairs, max_repair_limit=repair_limit, is_metahost=metahost,
    )
    assert decision == expected


def test_metahost_entry_cycling_through_repairs_gives_the_host_up_at_the_limit() -> None:
    """§6.1 #4: with limit 2 the third failure on the same host stops repairing it."""
    fates = [
        prejob_failure(provision_attempts=0, max_provision_retries=0, repairs_for_entry_on_host=n,
                       max_repair_limit=2, is_metahost=True)
        for n in range(3)
    ]
    assert [f.repair for f in fates] == [True, True, False]
    assert [f.host_repair_failed for f in fates] == [False, False, True]
    assert all(f.requeue and not f.fail_entry for f in fates)


# ---------------------------------------------------------------------------
# Post-job: §3.7 Gathering steps 3-6, final status, crash info
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "aborted, reboot_after, run_reset, final_success, tests_failed, expected",
    [
        pytest.param(False, RebootAfter.NEVER, True, True, 0, (False, False), id="passing job: host straight to Ready"),
        pytest.param(True, RebootAfter.NEVER, True, False, 0, (True, False), id="aborted job: reboot"),
        pytest.param(False, RebootAfter.ALWAYS, True, True, 0, (True, False), id="reboot_after Always"),
        pytest.param(False, RebootAfter.IF_ALL_TESTS_PASSED, True, True, 0, (True, False), id="reboot if all passed, all passed"),
        pytest.param(False, RebootAfter.IF_ALL_TESTS_PASSED, True, True, 2, (True, False), id="tests failed, job resets before: reboot"),
        pytest.param(False, RebootAfter.IF_ALL_TESTS_PASSED, True, False, 0, (False, False), id="reboot if all passed, job failed"),
        pytest.param(False, RebootAfter.NEVER, False, False, 0, (False, True), id="failed job without run_reset: reset"),
        pytest.param(False, RebootAfter.NEVER, False, True, 3, (False, True), id="failed tests without run_reset: reset not reboot"),
        pytest.param(False, RebootAfter.NEVER, True, False, -1, (False, False), id="lost process, run_reset job: nothing"),
        pytest.param(True, RebootAfter.NEVER, False, False, -1, (True, True), id="aborted job without run_reset: both"),
    ],
)
def test_postjob_tasks_choose_cleanup_and_reset(
    aborted: bool, reboot_after: int, run_reset: bool, final_success: bool, tests_failed: int,
    expected: tuple[bool, bool],
) -> None:
    decision = postjob_tasks(
        aborted=aborted, reboot_after=reboot_after, run_reset=run_reset,
        final_success=final_success, tests_failed=tests_failed,
    )
    assert decision == expected


@pytest.mark.parametrize(
    "aborted, exit_status, expected",
    [
        (False, 0, Status.COMPLETED),
        (False, 256, Status.FAILED),
        (False, 271, Status.FAILED),
        (False, None, Status.FAILED),
        (True, 0, Status.ABORTED),
        (True, None, Status.ABORTED),
    ],
)
def test_final_status_aborted_beats_exit_status(aborted: bool, exit_status: int | None, expected: str) -> None:
    assert final_status(aborted=aborted, exit_status=exit_status) == expected


@pytest.mark.parametrize(
    "exit_status, expected",
    [(0, False), (256, False), (271, True), (9, True), (None, True)],
    ids=["success", "exit 1", "exit 1 + SIGTERM", "SIGKILL", "lost process"],
)
def test_crashinfo_is_gathered_only_for_signalled_or_unknown_exits(exit_status: int | None, expected: bool) -> None:
    assert needs_crashinfo(exit_status) is expected


# ---------------------------------------------------------------------------
# Throttling: §4.2 T1-T4, §4.5 DM, paired work, parsers
# ---------------------------------------------------------------------------
def one_drone(capacity: int, active: int = 0) -> list[DroneSlot]:
    return [DroneSlot(hostname="drone1", max_processes=capacity, active_processes=active)]


def work(key: object, processes: int = 1, owner: str = "autotest_system", **fields: Any) -> StartRequest:
    return StartRequest(key=key, num_processes=processes, owner=owner, **fields)


def admitted_keys(requests: list[StartRequest], drones: list[DroneSlot]) -> list[object]:
    return [key for key, _ in admit(requests, drones)]


def test_T1_total_capacity_admits_only_what_fits() -> None:
    requests = [work(n) for n in range(4)]
    assert admit(requests, one_drone(3)) == [(0, "drone1"), (1, "drone1"), (2, "drone1")]


def test_T2_synchronous_job_takes_capacity_first() -> None:
    assert admitted_keys([work(0, 3), work(1, 1)], one_drone(3)) == [0]


def test_T3_large_job_is_not_starved_by_smaller_later_work() -> None:
    assert admitted_keys([work(0, 1), work(1, 3), work(2, 1)], one_drone(3)) == [0]
    # agent0 finished: agent1 starts, agent2 must still wait.
    assert admitted_keys([work(1, 3), work(2, 1)], one_drone(3)) == [1]


def test_T4_zero_process_work_always_starts() -> None:
    requests = [work(0), work(1), work(2), work(3), work(4, processes=0)]
    assert admitted_keys(requests, one_drone(3)) == [0, 1, 2, 4]


def test_zero_process_work_starts_even_with_no_usable_drone() -> None:
    drones = [DroneSlot("drone1", 10, 0, enabled=False)]
    assert admit([work("parse", 0)], drones) == [("parse", None)]


def test_DM_least_loaded_fraction_wins() -> None:
    drones = [DroneSlot("big", 100, 60), DroneSlot("small", 10, 5)]
    assert admit([work("job")], drones) == [("job", "small")]


def test_DM_ties_go_to_the_larger_drone_then_hostname() -> None:
    drones = [DroneSlot("d2", 10, 5), DroneSlot("d1", 20, 10), DroneSlot("d0", 20, 10)]
    assert admit([work("job")], drones) == [("job", "d0")]


def test_DM_full_drones_are_skipped_and_capacity_is_never_combined() -> None:
    drones = [DroneSlot("d1", 4, 2), DroneSlot("d2", 4, 1), DroneSlot("d3", 10, 9)]
    assert admit([work("three", 3)], drones) == [("three", "d2")]
    assert admit([work("four", 4)], drones) == []


def test_DM_capacity_taken_earlier_in_the_tick_counts_for_later_work() -> None:
    drones = [DroneSlot("d1", 4, 0), DroneSlot("d2", 4, 0)]
    assert admit([work("a", 3), work("b", 3), work("c", 1)], drones) == [("a", "d1"), ("b", "d2"), ("c", "d1")]


def test_DM_user_restricted_drone_serves_only_its_users() -> None:
    drones = [DroneSlot("private", 10, 0, allowed_users=frozenset({"alice"})), DroneSlot("shared", 10, 8)]
    assert admit([work("a", owner="alice"), work("b", owner="bob")], drones) == [("a", "private"), ("b", "shared")]
    assert admit([work("c", 3, owner="bob")], drones) == []


def test_DM_allowed_drones_limit_the_choice() -> None:
    drones = [DroneSlot("d1", 10, 0), DroneSlot("d2", 10, 5)]
    assert admit([work("job", allowed_drones=frozenset({"d2"}))], drones) == [("job", "d2")]


def test_DM_empty_allowed_set_never_starts_but_does_not_block_later_work() -> None:
    """Unlike the original, work no drone could ever take does not stall the lab."""
    requests = [work("nowhere", allowed_drones=frozenset()), work("later")]
    assert admit(requests, one_drone(10)) == [("later", "drone1")]


def test_work_bigger_than_any_drone_does_not_block_later_work() -> None:
    requests = [work("huge", 11), work("later")]
    assert admit(requests, one_drone(10)) == [("later", "drone1")]


def test_disabled_drone_gets_no_new_work() -> None:
    drones = [DroneSlot("off", 10, 0, enabled=False), DroneSlot("on", 10, 9)]
    assert admit([work("a"), work("b")], drones) == [("a", "on")]


def test_paired_work_runs_on_its_pinned_drone_even_if_disabled() -> None:
    drones = [DroneSlot("job-drone", 10, 4, enabled=False), DroneSlot("idle", 10, 0)]
    assert admit([work("gather", 2, pinned_drone="job-drone")], drones) == [("gather", "job-drone")]


def test_paired_work_waits_when_its_pinned_drone_is_full() -> None:
    drones = [DroneSlot("job-drone", 10, 9), DroneSlot("idle", 10, 0)]
    assert admit([work("gather", 2, pinned_drone="job-drone"), work("next")], drones) == []


def test_zero_process_paired_work_is_placed_on_its_pinned_drone() -> None:
    drones = [DroneSlot("job-drone", 10, 10), DroneSlot("idle", 10, 0)]
    assert admit([work("parse", 0, pinned_drone="job-drone")], drones) == [("parse", "job-drone")]


def test_negative_process_count_is_rejected() -> None:
    with pytest.raises(ValueError):
        work("bad", -1)


@pytest.mark.parametrize(
    "running, limit, waiting, expected",
    [(0, 100, 5, 5), (98, 100, 5, 2), (100, 100, 5, 0), (120, 100, 5, 0), (0, 100, 0, 0), (-3, 2, 10, 2)],
    ids=["room for all", "room for some", "at the limit", "over the limit", "nothing waiting", "drifted counter"],
)
def test_parse_admission_keeps_parsers_under_the_limit(running: int, limit: int, waiting: int, expected: int) -> None:
    assert parse_admission(running, limit, waiting) == expected


# ---------------------------------------------------------------------------
# The matcher's shortcuts (rarest-label index, dropping taken hosts, remembering
# requests that found no host) change nothing: it agrees with a plain scan of
# every host for every entry, on random labs crowded enough to run out of hosts.
# ---------------------------------------------------------------------------
def _plain_match(entries: list[EntryRequest], hosts: list[HostCandidate], only_if_needed: frozenset[int]) -> dict:
    from afe.models import Host

    ordered = sorted((h for h in hosts if h.available), key=lambda h: Host.sort_key(h.hostname))
    taken: set[int] = set()
    result: dict[int, int] = {}
    for entry in pending_order(entries):
        chosen = None
        if entry.host_id is not None:
            host = next((h for h in ordered if h.id == entry.host_id), None)
            if (host is not None and host.id not in taken and entry.dependency_ids <= host.label_ids
                    and (host.invalid or not host.acl_ids.isdisjoint(entry.acl_ids))):
                chosen = host
        elif entry.meta_host_id is not None:
            required = entry.dependency_ids | {entry.meta_host_id}
            eligible = [h for h in ordered if not h.invalid and h.id not in taken and h.id not in entry.blocked_host_ids
                        and not h.acl_ids.isdisjoint(entry.acl_ids) and required <= h.label_ids
                        and (only_if_needed - required).isdisjoint(h.label_ids)]
            if eligible:
                chosen = max(eligible, key=lambda h: (len(entry.preferred_ids & h.label_ids), -ordered.index(h)))
        if chosen is not None:
            taken.add(chosen.id)
            result[entry.entry_id] = chosen.id
    return result


@pytest.mark.parametrize("window", [64, 4])
@pytest.mark.parametrize("seed", range(60))
def test_the_matcher_agrees_with_a_plain_scan_of_every_host(seed: int, window: int, monkeypatch) -> None:
    import random

    from scheduler import matching

    monkeypatch.setattr(matching._HostPool, "COMPACT_WINDOW", window)
    rng = random.Random(seed)
    labels = list(range(1, 9))
    hosts = [
        HostCandidate(id=i, hostname=f"host{i}", leased=rng.random() < 0.1, locked=rng.random() < 0.1,
                      invalid=rng.random() < 0.05, label_ids=frozenset(rng.sample(labels, rng.randint(1, 4))),
                      acl_ids=frozenset(rng.sample([100, 101, 102], rng.randint(0, 2))))
        for i in range(1, rng.randint(3, 120))
    ]
    acl_choices = [frozenset({100}), frozenset({101}), frozenset({100, 102})]
    entries = []
    for n in range(rng.randint(1, 200)):
        explicit = rng.random() < 0.3
        entries.append(EntryRequest(
            entry_id=n + 1, job_id=rng.randint(1, 40), priority=rng.choice([0, 10, 20]),
            parent_job_id=rng.choice([None, 1, 2]),
            host_id=rng.randint(1, len(hosts) + 1) if explicit else None,
            meta_host_id=None if explicit else rng.choice(labels),
            dependency_ids=frozenset(rng.sample(labels, rng.randint(0, 2))),
            preferred_ids=frozenset(rng.sample(labels, rng.randint(0, 2))),
            acl_ids=rng.choice(acl_choices),
            blocked_host_ids=frozenset(rng.sample(range(1, len(hosts) + 1), rng.randint(0, min(6, len(hosts))))),
        ))
    only_if_needed = frozenset(rng.sample(labels, rng.randint(0, 2)))
    assert match_entries(entries, hosts, only_if_needed) == _plain_match(entries, hosts, only_if_needed)


# -- building the matcher's requests from bulk rows -------------------------------------------------


def test_a_jobs_dependencies_split_into_hard_labels_and_labels_to_provision() -> None:
    from scheduler.assign import RequestBuilder
    from scheduler.labels import LabelIndex

    index = LabelIndex({1: "board:x", 2: "cros-version:r1", 3: "skip_provision", 4: "bluetooth"}, set())
    build = RequestBuilder(index, job_labels={7: {1, 2, 3, 4, 99}, 8: {4, 1}}, owner_acls={"alice": {5}},
                           blocks={8: {40}}).request
    first = build(entry_id=1, job_id=7, priority=0, parent_job_id=None, host_id=None, meta_host_id=1, owner="alice")
    # An unknown label (99) is still a hard dependency; special-action labels never are.
    assert first.dependency_ids == {1, 4, 99}
    assert first.preferred_ids == {2}
    assert first.blocked_host_ids == frozenset() and first.acl_ids == {5}
    second = build(entry_id=2, job_id=8, priority=0, parent_job_id=None, host_id=None, meta_host_id=1, owner="alice")
    assert second.dependency_ids == {1, 4} and second.preferred_ids == frozenset()
    assert second.blocked_host_ids == {40}
    # Equal sets are kept once.
    assert second.acl_ids is first.acl_ids


# -- what an idle tick may skip -----------------------------------------------------------------------


def test_a_last_run_stands_for_the_same_inputs_within_its_age() -> None:
    from datetime import datetime, timedelta

    from scheduler.unchanged import LastRun

    noon = datetime(2024, 5, 1, 12, 0)
    last = LastRun(max_age=timedelta(minutes=1))
    assert not last.still_holds(42, noon)  # never ran
    last.ran(42, noon)
    assert last.still_holds(42, noon + timedelta(seconds=59))
    assert not last.still_holds(43, noon + timedelta(seconds=1))  # other inputs
    assert not last.still_holds(42, noon + timedelta(minutes=1))  # too old: run again
    assert not last.still_holds(42, noon - timedelta(seconds=1))  # the clock went back
    last.ran(None, noon)  # a run whose result must not stand
    assert not last.still_holds(42, noon)
