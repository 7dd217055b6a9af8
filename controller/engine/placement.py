"""Choosing a destination: which hosts could take a guest, which one does, and why not the others.

The operator weighs HypervisorHost resources, `domig migrate` a hosts file; both rule hosts out
for the same reasons in the same words, and count them as `kubectl describe pod` does:
"0/5 hosts fit: 2 not enough memory, 1 in maintenance, 2 other driver".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from controller.api.status import HostFit, Placement


class Why(StrEnum):
    """Why a host does not take the guest, as the count in the message says it."""

    source = "the source"
    other_driver = "other driver"
    selector = "not matching destinationSelector"
    namespace = "namespace not allowed"
    maintenance = "in maintenance"
    not_ready = "not ready"
    cpu = "CPU incompatible"
    memory = "not enough memory"
    inbound = "at maxInbound"


@dataclass(frozen=True)
class Candidate:
    """What placement knows of one host without asking it."""

    name: str
    driver: str
    labels: Mapping[str, str] = field(default_factory=dict)
    closed: bool = False  # maintenance or evacuation
    ready: bool = True
    allowed_namespaces: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Guest:
    """What is to be placed: a domain leaving its source."""

    source: str
    driver: str
    namespace: str = ""
    memory_bytes: int = 0
    selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Room:
    """A host's free memory as read at `read_at` (time.monotonic()); None: its driver cannot tell."""

    free_bytes: int | None
    read_at: float


def rule_out(guest: Guest, host: Candidate) -> Why | None:
    """What rules the host out before anybody asks it anything."""
    if host.name == guest.source:
        return Why.source
    if host.driver != guest.driver:
        return Why.other_driver
    if any(host.labels.get(key) != value for key, value in guest.selector.items()):
        return Why.selector
    if host.allowed_namespaces is not None and guest.namespace not in host.allowed_namespaces:
        return Why.namespace
    if host.closed:
        return Why.maintenance
    if not host.ready:
        return Why.not_ready
    return None


def sift(guest: Guest, hosts: Iterable[Candidate]) -> tuple[list[str], list[HostFit]]:
    """The hosts worth asking, in name order, and those ruled out, with why."""
    open_hosts: list[str] = []
    out: list[HostFit] = []
    for host in sorted(hosts, key=lambda h: h.name):
        why = rule_out(guest, host)
        if why is None:
            open_hosts.append(host.name)
        else:
            out.append(HostFit(host=host.name, fits=False, reason=why.value))
    return open_hosts, out


def gib(value: int) -> str:
    return f"{value / 1024**3:.1f} GiB"


@dataclass(frozen=True)
class Load:
    """One open host as admission sees it now."""

    name: str
    room: Room | None  # its last reading
    incoming_bytes: int  # what is on its way in (or arrived since the reading)
    in_flight: int  # migrations to and from it past admission
    inbound_full: bool  # at its maxInbound

    def free_after(self) -> int | None:
        if self.room is None or self.room.free_bytes is None:
            return None
        return self.room.free_bytes - self.incoming_bytes


def choose(need_bytes: int, loads: Iterable[Load], ruled_out: Iterable[HostFit] = ()) -> Placement:
    """The open host with room and the fewest migrations in flight, then the most memory left,
    then the first by name; or none, with every host's reason."""
    fits: list[HostFit] = list(ruled_out)
    ranked: list[tuple[tuple[int, int, str], str]] = []
    for load in loads:
        after = load.free_after()
        if load.inbound_full:
            fits.append(HostFit(host=load.name, fits=False, reason=Why.inbound.value))
        elif after is not None and after < need_bytes:
            fits.append(HostFit(host=load.name, fits=False, reason=Why.memory.value))
        else:
            room = f"{gib(after)} free after what is on its way in" if after is not None else "free memory not told"
            said = f"{room}, {load.in_flight} migration(s) in flight"
            fits.append(HostFit(host=load.name, fits=True, reason=said))
            # Unknown room ranks after any known room: a host that says nothing is the last resort.
            ranked.append(((load.in_flight, -(after if after is not None else -1), load.name), said))
    fits.sort(key=lambda fit: fit.host)
    total = len(fits)
    if not ranked:
        return Placement(destination=None, message=none_fit(fits), hosts=fits)
    (_, _, chosen), said = min(ranked)
    message = f"{chosen}: {said} ({len(ranked)}/{total} hosts fit)"
    return Placement(destination=chosen, message=message, hosts=fits)


def none_fit(fits: list[HostFit]) -> str:
    """The counts of why, most first: "0/5 hosts fit: 2 not enough memory, 1 in maintenance"."""
    counts = Counter(fit.reason for fit in fits)
    said = ", ".join(f"{n} {why}" for why, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return f"0/{len(fits)} hosts fit" + (f": {said}" if said else "")


def waits_for_slot(placement: Placement) -> bool:
    """No host fits now, but one would once a migration to it ends."""
    return placement.destination is None and any(fit.reason == Why.inbound.value for fit in placement.hosts)
