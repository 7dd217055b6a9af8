"""One host's domains, held in memory: what ``xm list`` would show."""

from __future__ import annotations

import enum
import time
import uuid as uuidlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from xendsim.errors import VmError, XendError, XendInvalidDomain
from xendsim.sxp import Encodable

DOM0_NAME = "Domain-0"
MIGRATING_PREFIX = "migrating-"


class Power(enum.Enum):
    """xend's six state flags ``rbpscd``, one set at a time; HALTED has none."""

    RUNNING = "r-----"
    BLOCKED = "-b----"
    PAUSED = "--p---"
    SHUTDOWN = "---s--"
    CRASHED = "----c-"
    DYING = "-----d"
    HALTED = "------"

    @classmethod
    def parse(cls, text: str) -> Power:
        """Accept a name (``running``) or the flag string (``-b----``)."""
        for member in cls:
            if text.lower() == member.name.lower() or text == member.value:
                return member
        raise ValueError(f"unknown domain state {text!r}")

    @property
    def active(self) -> bool:
        """Running in xend's sense (DOM_STATE_RUNNING covered running and blocked)."""
        return self in (Power.RUNNING, Power.BLOCKED)


@dataclass
class DomainSpec:
    """A domain as configured: ``name=web,memory=256,vcpus=2,state=blocked``."""

    name: str
    memory: int = 256
    maxmem: int | None = None
    vcpus: int = 1
    uuid: str | None = None
    state: Power = Power.RUNNING
    managed: bool = False

    @classmethod
    def parse(cls, text: str) -> DomainSpec:
        fields = dict(part.split("=", 1) for part in text.split(",") if part)
        return cls.from_mapping(fields)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> DomainSpec:
        unknown = set(data) - {"name", "memory", "maxmem", "vcpus", "uuid", "state", "managed"}
        if unknown:
            raise ValueError(f"unknown domain field(s): {', '.join(sorted(unknown))}")
        if "name" not in data:
            raise ValueError("a domain needs a name")
        maxmem = data.get("maxmem")
        uuid = data.get("uuid")
        return cls(
            name=str(data["name"]),
            memory=int(str(data.get("memory", 256))),
            maxmem=int(str(maxmem)) if maxmem is not None else None,
            vcpus=int(str(data.get("vcpus", 1))),
            uuid=str(uuid) if uuid is not None else None,
            state=Power.parse(str(data.get("state", "running"))),
            managed=str(data.get("managed", "0")).lower() in ("1", "true", "yes"),
        )


@dataclass
class Domain:
    name: str
    domid: int | None
    uuid: str
    memory: int
    maxmem: int
    vcpus: int
    state: Power
    managed: bool = False
    started_at: float = field(default_factory=time.monotonic)
    migrating: bool = False

    @property
    def is_dom0(self) -> bool:
        return self.domid == 0

    def sxpr(self) -> list[Encodable]:
        """The ``(domain ...)`` record of ``GET /xend/domain/<name>``."""
        record: list[Encodable] = ["domain"]
        if self.domid is not None:
            # libvirt reads a missing domid as an inactive (halted, managed) domain.
            record.append(["domid", self.domid])
        up_time = 0.0 if self.state is Power.HALTED else time.monotonic() - self.started_at
        record += [
            ["uuid", self.uuid],
            ["vcpus", self.vcpus],
            ["memory", self.memory],
            ["maxmem", self.maxmem],
            ["name", self.name],
            ["state", self.state.value],
            ["cpu_time", round(up_time * 0.01 * self.vcpus, 2)],
            ["online_vcpus", self.vcpus if self.domid is not None else 0],
            ["up_time", round(up_time, 2)],
        ]
        return record


@dataclass
class HostState:
    """The domains of one host, Domain-0 included, keyed by name."""

    total_memory: int = 16384
    dom0_memory: int = 1024
    domains: dict[str, Domain] = field(default_factory=dict)
    _next_domid: int = 1

    def __post_init__(self) -> None:
        if DOM0_NAME not in self.domains:
            self.domains[DOM0_NAME] = Domain(
                name=DOM0_NAME,
                domid=0,
                uuid="00000000-0000-0000-0000-000000000000",
                memory=self.dom0_memory,
                maxmem=self.dom0_memory,
                vcpus=1,
                state=Power.RUNNING,
            )

    def __iter__(self) -> Iterator[Domain]:
        return iter(list(self.domains.values()))

    def get(self, name: str) -> Domain | None:
        return self.domains.get(name)

    def lookup(self, key: str) -> Domain:
        """By name, then domid, then uuid, as xend's domain_lookup_nr did."""
        if key in self.domains:
            return self.domains[key]
        for domain in self.domains.values():
            if domain.domid is not None and key.isdigit() and domain.domid == int(key):
                return domain
            if domain.uuid == key:
                return domain
        raise XendInvalidDomain(key)

    @property
    def free_memory(self) -> int:
        used = sum(d.memory for d in self.domains.values() if d.state is not Power.HALTED)
        return self.total_memory - used

    def _check_room(self, spec: DomainSpec) -> None:
        if spec.state is not Power.HALTED and spec.memory > self.free_memory:
            raise XendError(f"I need {spec.memory * 1024} KiB, but only {self.free_memory * 1024} KiB are free")

    def add(self, spec: DomainSpec) -> Domain:
        if spec.name in self.domains:
            existing = self.domains[spec.name]
            raise XendError(f"Domain '{spec.name}' already exists with ID '{existing.domid}'")
        self._check_room(spec)
        halted = spec.state is Power.HALTED
        domain = Domain(
            name=spec.name,
            domid=None if halted else self._take_domid(),
            uuid=spec.uuid or str(uuidlib.uuid4()),
            memory=spec.memory,
            maxmem=spec.maxmem if spec.maxmem is not None else spec.memory,
            vcpus=spec.vcpus,
            state=spec.state,
            managed=spec.managed or halted,
        )
        self.domains[domain.name] = domain
        return domain

    def receive(self, spec: DomainSpec) -> Domain:
        """The domain of an incoming migration. xend 3.1 and later refuse a name only when another
        VM holds it (XendDomainInfo._checkName compares UUIDs); the VM's own halted managed
        definition takes the incoming domain, which stays managed (XendDomain.add_domain
        re-registers it), so a domain migrated away and back is defined here as before."""
        existing = self.domains.get(spec.name)
        if existing is None:
            return self.add(spec)
        if existing.uuid != spec.uuid:
            where = f" as domain {existing.domid}" if existing.domid is not None else ""
            raise VmError(f"VM name '{spec.name}' already exists{where}")
        if existing.state is not Power.HALTED:
            # Real xend would start a second copy of a VM that runs here; that is nobody's test,
            # so refuse it as xend's non-relocating restore did.
            raise XendError(f"Domain '{spec.name}' already exists with ID '{existing.domid}'")
        self._check_room(spec)
        existing.domid = self._take_domid()
        existing.memory, existing.vcpus, existing.state = spec.memory, spec.vcpus, spec.state
        existing.maxmem = spec.maxmem if spec.maxmem is not None else spec.memory
        existing.started_at = time.monotonic()
        return existing

    def _take_domid(self) -> int:
        domid = self._next_domid
        self._next_domid += 1
        return domid

    def rename(self, domain: Domain, new_name: str) -> None:
        if new_name in self.domains and self.domains[new_name] is not domain:
            raise XendError(f"Domain '{new_name}' already exists")
        del self.domains[domain.name]
        domain.name = new_name
        self.domains[new_name] = domain

    def remove(self, domain: Domain) -> None:
        if self.domains.get(domain.name) is domain:
            del self.domains[domain.name]

    def destroy(self, domain: Domain) -> None:
        """Kill it: a managed domain stays defined (halted), any other disappears."""
        if domain.managed:
            domain.state = Power.HALTED
            domain.domid = None
        else:
            self.remove(domain)

    def names(self) -> list[str]:
        return [d.name for d in self.domains.values() if d.state is not Power.HALTED]
