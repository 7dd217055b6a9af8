"""The engine over the two real daemons: host configs, guests, a recording sink, where a guest runs."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.api import DomainMigration, DomainMigrationStatus, load_migration
from controller.backends.protocol import HostConfig
from controller.backends.registry import DriverTable
from controller.engine import Controls, Engine, RunPolicy, StaticHosts, Transition
from tests.harness.guest import build_dirtying_disk, dirtying_domain_xml, idle_domain_xml
from tests.harness.integrity import IntegrityReport, check_domain, pass_counter, wait_for_passes
from tests.harness.libvirtd import LibvirtHost, LibvirtHosts

A, B = "host-a", "host-b"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def host_configs(
    hosts: LibvirtHosts,
    *,
    p2p: bool | None = False,
    addresses: bool = True,
    uris: tuple[str, str] | None = None,
    options: dict[str, Any] | None = None,
) -> list[HostConfig]:
    """`p2p`: the hosts' peerToPeer; None leaves it unset (peer-to-peer, managed when it cannot be).
    ``uris`` replaces the daemons' plain-TCP URIs (TLS, ssh); ``options`` the host options."""
    if options is None:
        options = {} if p2p is None else {"peerToPeer": p2p}
    uri_a, uri_b = uris if uris is not None else hosts.uris
    return [
        HostConfig(A, "libvirt", uri_a, hosts.a.spec.migration_address if addresses else None, options=options),
        HostConfig(B, "libvirt", uri_b, hosts.b.spec.migration_address if addresses else None, options=options),
    ]


def migration(domain: str, **spec: Any) -> DomainMigration:
    base: dict[str, Any] = {
        "domain": domain,
        "source": A,
        "destination": B,
        "flags": ["live", "persistDest", "undefineSource"],
    }
    base.update(spec)
    return load_migration({"metadata": {"name": f"m-{domain}", "generation": 1}, "spec": base})


Hook = Callable[[DomainMigrationStatus], Awaitable[None] | None]


@dataclass
class Recorder:
    """The sink: keeps a copy of every status, and runs `on_status` (once it returns True, never again)."""

    statuses: list[DomainMigrationStatus] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    when: Callable[[DomainMigrationStatus], bool] | None = None
    then: Hook | None = None
    fired_at: float | None = None

    async def __call__(self, status: DomainMigrationStatus, transition: Transition | None) -> None:
        self.statuses.append(status.model_copy(deep=True))
        if transition is not None:
            self.transitions.append(transition)
        if self.fired_at is None and self.when is not None and self.when(status):
            self.fired_at = time.monotonic()
            if self.then is not None:
                result = self.then(status)
                if result is not None:
                    await result

    def migrating(self) -> list[DomainMigrationStatus]:
        return [s for s in self.statuses if s.phase.value == "Migrating" and s.progress is not None]


def copying(status: DomainMigrationStatus) -> bool:
    """The job runs and has sent data (the first Migrating status comes before the migrate call)."""
    p = status.progress
    return status.phase.value == "Migrating" and p is not None and (p.data_processed_bytes or 0) > 0


def iteration_at_least(n: int) -> Callable[[DomainMigrationStatus], bool]:
    def check(status: DomainMigrationStatus) -> bool:
        p = status.progress
        return p is not None and (p.iteration or 0) >= n and (p.data_processed_bytes or 0) > 0

    return check


@dataclass
class Lab:
    hosts: LibvirtHosts
    kvm: bool
    policy: RunPolicy = field(default_factory=lambda: RunPolicy(poll_interval=0.2))

    def engine(
        self,
        *,
        p2p: bool | None = False,
        addresses: bool = True,
        uris: tuple[str, str] | None = None,
        options: dict[str, Any] | None = None,
        **policy: Any,
    ) -> Engine:
        from controller.backends.libvirt.driver import LibvirtDriver

        pol = RunPolicy(**{**self.policy.__dict__, **policy})
        configs = host_configs(self.hosts, p2p=p2p, addresses=addresses, uris=uris, options=options)
        return Engine(DriverTable({"libvirt": LibvirtDriver()}), StaticHosts(configs), pol)

    async def run(
        self,
        m: DomainMigration,
        recorder: Recorder | None = None,
        controls: Controls | None = None,
        **engine: Any,
    ) -> tuple[DomainMigrationStatus, Recorder, float]:
        recorder = recorder or Recorder()
        eng = self.engine(**engine)
        started = time.monotonic()
        try:
            status = await eng.run(m, recorder, controls)
        finally:
            await eng.drivers.close()
        return status, recorder, time.monotonic() - started

    # -- guests ------------------------------------------------------------------------------------

    def idle_guest(self, prefix: str = "idle", cpu: str = "") -> str:
        name = unique(prefix)
        conn = self.hosts.a.open()
        try:
            conn.defineXML(idle_domain_xml(name, kvm=self.kvm, cpu=cpu)).create()
        finally:
            conn.close()
        return name

    def dirtying_guest(self, prefix: str = "dirty") -> str:
        name = unique(prefix)
        disk = build_dirtying_disk(self.hosts.workdir(name) / "boot.img")
        conn = self.hosts.a.open()
        try:
            dom = conn.defineXML(dirtying_domain_xml(name, disk, kvm=self.kvm))
            dom.create()
            wait_for_passes(dom, self.hosts.workdir(name) / "counter.bin", minimum=1, timeout=60)
        finally:
            conn.close()
        return name

    # -- where things are ---------------------------------------------------------------------------

    def state_on(self, host: LibvirtHost, name: str) -> tuple[int, int] | None:
        """The domain's (state, reason) there, None where it is not defined."""
        import libvirt

        conn = host.open()
        try:
            state, reason = conn.lookupByName(name).state()
            return int(state), int(reason)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        finally:
            conn.close()

    def states(self, name: str) -> dict[str, tuple[int, int] | None]:
        return {A: self.state_on(self.hosts.a, name), B: self.state_on(self.hosts.b, name)}

    def running_on(self, name: str) -> list[str]:
        import libvirt

        return [h for h, s in self.states(name).items() if s is not None and s[0] == libvirt.VIR_DOMAIN_RUNNING]

    def guest_advances(self, host: LibvirtHost, name: str) -> bool:
        """The dirtying guest's pass counter moves: it really runs there."""
        conn = host.open()
        try:
            dom = conn.lookupByName(name)
            scratch = self.hosts.workdir(name) / "counter.bin"
            before = pass_counter(dom, scratch)
            wait_for_passes(dom, scratch, minimum=before + 1, timeout=30)
            return True
        finally:
            conn.close()

    def integrity(self, host: LibvirtHost, name: str) -> IntegrityReport:
        conn = host.open()
        try:
            dom = conn.lookupByName(name)
            return check_domain(dom, self.hosts.workdir(name) / "dump.bin")
        finally:
            conn.close()

    def max_downtime(self, name: str) -> int:
        conn = self.hosts.a.open()
        try:
            return int(conn.lookupByName(name).migrateGetMaxDowntime(0))
        finally:
            conn.close()

    def qemu_pid(self, host: LibvirtHost, name: str) -> int:
        return int(Path(host.root / "run" / "qemu" / f"{name}.pid").read_text().strip())


async def kill_qemu(lab: Lab, host: LibvirtHost, name: str) -> None:
    os.kill(lab.qemu_pid(host, name), signal.SIGKILL)
    await asyncio.sleep(0)


def report(label: str, **values: object) -> None:
    text = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    print(f"\n[libvirt-backend] {label}: {text}")
