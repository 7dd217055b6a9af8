"""Weighing the HypervisorHosts for a migration without spec.destination: what the guest needs,
and which hosts could take it, asked live (the probe's figures may be half a minute old)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from controller.api.hypervisor_host import HypervisorHost
from controller.api.status import HostFit
from controller.backends.protocol import BackendError, Connection
from controller.engine.admission import Ticket
from controller.engine.placement import Guest, Room, Why, sift
from controller.operator.context import Context
from controller.operator.host_resources import HostProblem, candidate, hosts_in, lookup, resolve


@dataclass(frozen=True)
class GuestInfo:
    memory_bytes: int
    cpu: str | None  # the guest's CPU as its driver describes it, for the destination to compare


async def connect(ctx: Context, host: HypervisorHost) -> Connection:
    config = await resolve(host, ctx.kube)
    return await ctx.drivers.get(config.driver).connect(config)


async def read_guest(ctx: Context, source: HypervisorHost, domain: str) -> GuestInfo | None:
    """The guest's memory and CPU on its source; None when the source does not define it."""
    conn = await connect(ctx, source)
    try:
        info = await conn.lookup(domain)
        if info is None:
            return None
        return GuestInfo(info.memory_bytes, await conn.guest_cpu(info.name))
    finally:
        await conn.close()


@dataclass
class Weigher:
    """One migration's view of the hosts, kept while it waits: a host's CPU verdict is asked once."""

    ctx: Context
    namespace: str
    source: str
    selector: dict[str, str]
    guest: GuestInfo
    cpu_verdicts: dict[str, bool | None] = field(default_factory=dict)

    async def weigh(self, ticket: Ticket) -> Ticket:
        """The ticket with the hosts worth asking and those ruled out; fresh free-memory readings
        of the former go to admission, which chooses among them."""
        hosts = hosts_in(self.ctx.indexes.hosts)
        source = lookup(self.ctx.indexes.hosts, self.source)
        driver = source.spec.driver if source is not None else ""
        guest = Guest(self.source, driver, self.namespace, self.guest.memory_bytes, self.selector)
        open_hosts, ruled_out = sift(guest, [candidate(host) for host in hosts])
        choices: list[str] = []
        for name in open_hosts:
            host = lookup(self.ctx.indexes.hosts, name)
            assert host is not None
            why = await self._ask(host)
            if why is None:
                choices.append(name)
            else:
                ruled_out.append(HostFit(host=name, fits=False, reason=why.value))
        return replace(ticket, memory_bytes=self.guest.memory_bytes, choices=tuple(choices), ruled_out=tuple(ruled_out))

    async def _ask(self, host: HypervisorHost) -> Why | None:
        admission = self.ctx.admission
        last = admission.rooms.get(host.name)
        fresh = last is not None and admission.clock() - last.read_at < self.ctx.config.host_retry / 2
        if fresh and host.name in self.cpu_verdicts:
            return Why.cpu if self.cpu_verdicts[host.name] is False else None
        try:
            conn = await connect(self.ctx, host)
        except (BackendError, HostProblem):
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
