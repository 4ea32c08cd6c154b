"""The AFE data model, table for table compatible with Autotest's schema."""
from .base import SoftDeleteModel
from .drones import Drone, DroneSet, Shard
from .entries import AbortedHostQueueEntry, HostQueueEntry, IneligibleHostQueue
from .hosts import Host, HostAttribute, Protection
from .job_arguments import JobArguments
from .jobs import ControlType, Job, JobKeyval, Priority
from .labels import PROVISION_PREFIXES, AtomicGroup, Label
from .pending import HostQueueEntryPending
from .reasons import EntryReason, SpecialTaskReason
from .special_tasks import SpecialTask
from .tokens import ApiToken
from .tko import (  # the TKO results tables (tko_*)
    STATUS_IDS, TkoIterationAttribute, TkoIterationPerfValue, TkoIterationResult, TkoJob, TkoJobKeyval,
    TkoKernel, TkoMachine, TkoPatch, TkoStatus, TkoTaskReference, TkoTest, TkoTestAttribute, TkoTestLabel,
    TkoTestLabelTest,
)
from .users import EVERYONE, SYSTEM_USER_LOGIN, AclGroup, RebootAfter, RebootBefore, User

__all__ = [
    "EVERYONE", "PROVISION_PREFIXES", "SYSTEM_USER_LOGIN",
    "AbortedHostQueueEntry", "AclGroup", "ApiToken", "EntryReason", "SpecialTaskReason", "AtomicGroup", "ControlType", "Drone", "DroneSet",
    "Host", "HostAttribute", "HostQueueEntry", "HostQueueEntryPending", "IneligibleHostQueue", "Job", "JobKeyval",
    "Label", "Priority", "Protection", "RebootAfter", "RebootBefore", "Shard",
    "SoftDeleteModel", "SpecialTask", "User", "JobArguments",
    "STATUS_IDS", "TkoIterationAttribute", "TkoIterationPerfValue", "TkoIterationResult", "TkoJob",
    "TkoJobKeyval", "TkoKernel", "TkoMachine", "TkoPatch", "TkoStatus", "TkoTaskReference", "TkoTest",
    "TkoTestAttribute", "TkoTestLabel", "TkoTestLabelTest",
]
