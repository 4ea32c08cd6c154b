"""Labels as the scheduler reads them: names, kinds, and who carries which, in bulk."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

from afe.models import PROVISION_PREFIXES, Host, Job, Label

# Labels that ask for a host action rather than describe a host; never a hard dependency.
SPECIAL_ACTION_LABELS = frozenset({"skip_provision", "modem_repair", "rpm", "cleanup-reboot"})


@dataclass
class LabelIndex:
    """Label names and kinds by id, for the labels a tick looks at."""

    names: dict[int, str]
    platforms: set[int]

    def split_dependencies(self, label_ids: frozenset[int]) -> tuple[frozenset[int], frozenset[int]]:
        """A job's dependency labels as (hard dependencies, provisionable labels): set operations,
        not a name test per label (a tick splits the labels of thousands of jobs)."""
        return label_ids - self._not_hard, label_ids & self._provisionable

    @cached_property
    def _provisionable(self) -> frozenset[int]:
        return frozenset(pk for pk, name in self.names.items() if name.startswith(PROVISION_PREFIXES))

    @cached_property
    def _not_hard(self) -> frozenset[int]:
        """Provisionable and special-action labels (an unknown label id counts as a hard dependency)."""
        return self._provisionable | {pk for pk, name in self.names.items() if name in SPECIAL_ACTION_LABELS}


def load_label_index(label_ids: set[int]) -> LabelIndex:
    """The names and platform flags of these labels, in one query."""
    rows = Label.objects.filter(pk__in=label_ids).values_list("id", "name", "platform")
    return LabelIndex({pk: name for pk, name, _ in rows}, {pk for pk, _, platform in rows if platform})


def job_label_names(job_ids: set[int]) -> dict[int, set[str]]:
    """Per job: the names of its dependency labels."""
    names: dict[int, set[str]] = defaultdict(set)
    for job_id, name in Job.dependency_labels.through.objects.filter(job_id__in=job_ids).values_list("job_id", "label__name"):
        names[job_id].add(name)
    return names


def host_label_names(host_ids: set[int]) -> dict[int, tuple[str | None, set[str]]]:
    """Per host: its platform label name and its other label names."""
    found: dict[int, tuple[str | None, set[str]]] = {}
    rows = Host.labels.through.objects.filter(host_id__in=host_ids).values_list("host_id", "label__name", "label__platform")
    for host_id, name, platform in rows:
        current_platform, labels = found.get(host_id, (None, set()))
        if platform and current_platform is None:
            current_platform = name
        else:
            labels.add(name)
        found[host_id] = (current_platform, labels)
    return found
