"""The agent families: each says what it wants to start, and starts what was admitted.

A family asks for drone capacity with :class:`~scheduler.throttle.StartRequest`
whose key is ``(Family, id)``; the dispatcher hands each family's admitted
items, each with the drone chosen for it, to that family's start function
(``dispatcher.STARTERS``).
"""
from __future__ import annotations

import enum


class Family(enum.Enum):
    """Who starts a piece of work."""

    JOB = "job"
    SPECIAL_TASK = "special task"
    GATHER = "gathering"
    PARSE = "parsing"
