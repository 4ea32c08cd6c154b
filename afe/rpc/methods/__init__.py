"""The methods of the AFE and TKO endpoints, one module per topic."""
from __future__ import annotations

from ..registry import Registry
from . import acls, entries, hosts, jobs, labels, misc, pending, special_tasks, tko, users

AFE_METHODS = Registry([hosts, labels, acls, users, jobs, entries, special_tasks, misc, pending])
TKO_METHODS = Registry([tko])
