"""Entries that run together: one job, one execution subdirectory, one autoserv."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from afe.models import HostQueueEntry, Job
from drones.models import Process


@dataclass
class EntryGroup:
    job: Job
    execution_subdir: str
    entries: list[HostQueueEntry] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, str]:
        return self.job.pk, self.execution_subdir

    @property
    def execution_path(self) -> str:
        return f"{self.job.tag()}/{self.execution_subdir}"

    @property
    def entry_ids(self) -> list[int]:
        return [e.pk for e in self.entries]

    @property
    def host_ids(self) -> list[int]:
        return [e.host_id for e in self.entries if e.host_id is not None]

    @property
    def hostnames(self) -> list[str]:
        return [e.host.hostname for e in self.entries if e.host_id is not None]

    @property
    def is_hostless(self) -> bool:
        return all(e.is_hostless() for e in self.entries)

    @property
    def aborted(self) -> bool:
        return any(e.aborted for e in self.entries)

    @property
    def status(self) -> str:
        return self.entries[0].status


def group_entries(entries: Iterable[HostQueueEntry]) -> list[EntryGroup]:
    """Group entries by (job, execution subdir), keeping the order of first appearance.

    Entries of one group in different statuses (a half-applied change) are
    split by status so each part moves on its own.
    """
    groups: dict[tuple[int, str, str], EntryGroup] = {}
    for entry in entries:
        key = (entry.job_id, entry.execution_subdir, entry.status)
        if key not in groups:
            groups[key] = EntryGroup(entry.job, entry.execution_subdir)
        groups[key].entries.append(entry)
    return list(groups.values())


def latest_processes(job_ids: Iterable[int], kinds: Iterable[str]) -> dict[tuple[int, str, str], Process]:
    """The newest process of each (job, execution subdir, kind), in one query."""
    latest: dict[tuple[int, str, str], Process] = {}
    for process in Process.objects.filter(job_id__in=set(job_ids), kind__in=list(kinds)).order_by("id"):
        latest[(process.job_id, process.execution_subdir, process.kind)] = process
    return latest
