"""Weighing hosts for a migration without a destination: what the guest needs, and which hosts
could take it, asked live (a probe's figures may be half a minute old). The operator hands it
HypervisorHost resources, `domig` a hosts file; admission then chooses among what it found."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from controller.api.hypervisor_host import HypervisorHost
from controller.api.status import HostFit
from controller.backends.protocol import BackendError, Connection
from controller.engine.admission import Admission, Ticket
from controller.engine.placement import Candidate, Guest, Room, Why, sift

Connect = Callable[[HypervisorHost], Awaitable[Connection]]


@dataclass(frozen=True)
class GuestInfo:
    memory_bytes: int
    cpu: str | None  # the guest's CPU as its driver describes it, for the destination to compare


async def read_guest(conn: Connection, domain: str) -> GuestInfo | None:
    """The guest's memory and CPU on its source; None when the source does not define it."""
    info = await conn.lookup(domain)
    if info is None:
        return None
    return GuestInfo(info.memory_bytes, await conn.guest_cpu(info.name))


def candidate(host: HypervisorHost) -> Candidate:
    allowed = host.spec.allowed_namespaces
    return Candidate(
        name=host.name,
        driver=host.spec.driver,
        labels=dict(host.metadata.labels),
        closed=host.spec.closed,
        ready=host.status.reachable is not False,
        allowed_namespaces=tuple(allowed) if allowed is not None else None,
    )


@dataclass
class Weigher:
    """One migration's view of the hosts, kept while it waits: a host's CPU verdict is asked once,
    its free memory again once the last reading is older than `fresh_for` seconds."""

    hosts: Callable[[], Sequence[HypervisorHost]]
    connect: Connect
    admission: Admission
    source: str
    guest: GuestInfo
    namespace: str = ""
    selector: dict[str, str] = field(default_factory=dict)
    fresh_for: float = 1.0
    cpu_verdicts: dict[str, bool | None] = field(default_factory=dict)

    async def weigh(self, ticket: Ticket) -> Ticket:
        """The ticket with the hosts worth asking and those ruled out, with why."""
        hosts = {host.name: host for host in self.hosts()}
        source = hosts.get(self.source)
        driver = source.spec.driver if source is not None else ""
        guest = Guest(self.source, driver, self.namespace, self.guest.memory_bytes, self.selector)
        open_hosts, ruled_out = sift(guest, [candidate(host) for host in hosts.values()])
        choices: list[str] = []
        for name in open_hosts:
            why = await self._ask(hosts[name])
            if why is None:
                choices.append(name)
            else:
                ruled_out.append(HostFit(host=name, fits=False, reason=why.value))
        return replace(ticket, memory_bytes=self.guest.memory_bytes, choices=tuple(choices), ruled_out=tuple(ruled_out))

    async def _ask(self, host: HypervisorHost) -> Why | None:
        admission = self.admission
        last = admission.rooms.get(host.name)
        fresh = last is not None and admission.clock() - last.read_at < self.fresh_for
        if not (fresh and host.name in self.cpu_verdicts):
            try:
                conn = await self.connect(host)
            except BackendError:
                return Why.not_ready
            try:
                if host.name not in self.cpu_verdicts:
                    verdict = await conn.cpu_fits(self.guest.cpu) if self.guest.cpu is not None else None
                    self.cpu_verdicts[host.name] = verdict[0] if verdict is not None else None
                read_at = admission.clock()
                admission.read_room(host.name, Room((await conn.capacity()).memory_free_bytes, read_at))
            except BackendError:
                return Why.not_ready
            finally:
                await conn.close()
        return Why.cpu if self.cpu_verdicts[host.name] is False else None
