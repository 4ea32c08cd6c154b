"""Which waiting work may start this tick, and on which drone (pure; no database).

Spec §3.14 (throttling and the starvation rule) and §3.16 (drone choice).
The caller lists the work that wants to start, in the order the agents are
visited, and the drones with their current load; :func:`admit` answers with
what starts where. Parsers, which use no drone capacity, are limited
separately by :func:`parse_admission`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DroneSlot:
    """A drone and its load at the start of the tick.

    ``allowed_users`` None means any owner may use it; otherwise only those
    logins. A disabled drone gets no new work, except paired work pinned to it.
    """

    hostname: str
    max_processes: int
    active_processes: int
    enabled: bool = True
    allowed_users: frozenset[str] | None = None

    def usable_by(self, owner: str) -> bool:
        """Whether work owned by ``owner`` may run here (ignoring enablement and load)."""
        return self.allowed_users is None or owner in self.allowed_users


@dataclass(frozen=True)
class StartRequest:
    """Work that wants to start: a job, a special task or a post-job step.

    ``num_processes`` is the drone capacity it needs (0 for parsers).
    ``allowed_drones`` None means any drone (no drone set, no subnet rule); an
    empty set means none, so the work cannot start. ``pinned_drone`` names the
    drone it must run on (paired post-job work runs where the job ran).
    """

    key: object
    num_processes: int
    owner: str
    allowed_drones: frozenset[str] | None = None
    pinned_drone: str | None = None

    def __post_init__(self) -> None:
        if self.num_processes < 0:
            raise ValueError(f"num_processes must not be negative, got {self.num_processes}")


def admit(requests: Sequence[StartRequest], drones: Sequence[DroneSlot]) -> list[tuple[object, str | None]]:
    """Decide which requests start now; returns ``(key, drone hostname)`` per admitted request.

    Requests are visited in the given order and the result keeps that order;
    requests left out must wait for a later tick. Capacity taken by an
    admission counts against later requests of the same call.

    * A request with no processes is always admitted; its drone is its pinned
      drone, else the least-loaded drone it could use, else ``None``.
    * Once a request with processes is refused for lack of room, no later
      request with processes is admitted this tick (so small work cannot
      starve a big synchronous job). A request that no drone could ever take
      (none usable, or none big enough) waits without blocking the others:
      one misconfigured job must not stop the lab.
    * A request with processes starts only on one drone with room for all of
      them (``active + n <= max``; capacity on several drones is never
      combined). A pinned request may use only its pinned drone, which needs
      room but may be disabled; the user and allowed-drone restrictions were
      applied when the job started and are not re-applied. Otherwise the drone
      must be enabled, usable by the owner and allowed; the least-loaded one
      (see :func:`_load_key`) is chosen.
    """
    active = {drone.hostname: drone.active_processes for drone in drones}
    admitted: list[tuple[object, str | None]] = []
    refused_one = False
    for request in requests:
        if request.num_processes == 0:
            admitted.append((request.key, _placement_without_processes(request, drones, active)))
            continue
        if refused_one:
            continue
        drone = _best_fitting_drone(request, drones, active)
        if drone is None:
            refused_one = _could_ever_fit(request, drones)
            continue
        active[drone.hostname] += request.num_processes
        admitted.append((request.key, drone.hostname))
    return admitted


def parse_admission(running_parsers: int, max_parse_processes: int, waiting: int) -> int:
    """How many of ``waiting`` parse steps may start now (spec §3.7, Parsing).

    Parsers may start while fewer than ``max_parse_processes`` run; returns a
    number between 0 and ``waiting``. A negative running count (the original's
    counter could drift there, §6.1 #9) is treated as 0, so the limit holds.
    """
    return max(0, min(waiting, max_parse_processes - max(running_parsers, 0)))


def _usable(request: StartRequest, drone: DroneSlot) -> bool:
    """Whether ``request`` may run on ``drone`` at all, load aside."""
    if request.pinned_drone is not None:
        return drone.hostname == request.pinned_drone
    allowed = request.allowed_drones is None or drone.hostname in request.allowed_drones
    return drone.enabled and drone.usable_by(request.owner) and allowed


def _load_key(drone: DroneSlot, active: Mapping[str, int]) -> tuple[float, int, str]:
    """Sort key, least loaded first: fraction in use, then the larger drone, then hostname.

    A drone with no capacity counts as full.
    """
    used = active[drone.hostname] / drone.max_processes if drone.max_processes > 0 else 1.0
    return used, -drone.max_processes, drone.hostname


def _could_ever_fit(request: StartRequest, drones: Sequence[DroneSlot]) -> bool:
    """Whether some usable drone is big enough for the request once it has room."""
    return any(_usable(request, drone) and request.num_processes <= drone.max_processes for drone in drones)


def _best_fitting_drone(
    request: StartRequest, drones: Sequence[DroneSlot], active: Mapping[str, int]
) -> DroneSlot | None:
    """The least-loaded usable drone with room for the whole request, or None."""
    fitting = [
        drone
        for drone in drones
        if _usable(request, drone) and active[drone.hostname] + request.num_processes <= drone.max_processes
    ]
    return min(fitting, key=lambda drone: _load_key(drone, active), default=None)


def _placement_without_processes(
    request: StartRequest, drones: Sequence[DroneSlot], active: Mapping[str, int]
) -> str | None:
    """Where work needing no capacity runs: the pinned drone (even if unknown to
    ``drones``), else the least-loaded usable drone, else None."""
    if request.pinned_drone is not None:
        return request.pinned_drone
    usable = [drone for drone in drones if _usable(request, drone)]
    best = min(usable, key=lambda drone: _load_key(drone, active), default=None)
    return best.hostname if best is not None else None
