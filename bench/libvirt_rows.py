"""The libvirt rows of `make bench`: one guest between two real libvirtd daemons, four ways.

An idle 1 GiB guest (the harness's, KVM when /dev/kvm is usable) is migrated back and forth by a
bare libvirt-python call (migrate3, or migrateToURI3 for peer-to-peer), by `virsh migrate` with
the same flags, by `domig migrate` (the command, as a process), by what that command runs (the
engine, in this process, as `domig migrate` sets it up: what the command costs beyond its
start-up and exit) and by the operator (a
DomainMigration created in the emulated API server, until its Succeeded condition is True), each
in managed and peer-to-peer mode. The ways take turns within each round and the order rotates
from round to round, so each meets both directions and the machine's load alike; ratios are
against virsh in the same mode, from the same run. Then the convergence row: the busy guest of
tests/libvirt/test_convergence.py through the engine, with no policy and with one that allows
post-copy, against the bound its RAM ÷ the bandwidth sets.

    python -m bench.libvirt_rows [--runs 7] [--json bench-libvirt.json] [--no-operator] [--no-convergence]

Needs root, libvirtd and QEMU (scripts/install-libvirt.sh) and the fixed ports of tests/harness
(on a shared machine: under `flock /tmp/domig-fixed-ports.lock`). Without them it says why and
returns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
MODES = ("managed", "peer-to-peer")
TOOLS = ("libvirt-python", "virsh", "domig migrate", "domig's engine", "operator")
GUEST_MIB = 1024
FLAGS = ["live", "persistDest", "undefineSource"]
VIRSH_FLAGS = ["--live", "--persistent", "--undefinesource"]
BUSY_BANDWIDTH = 10  # MiB/s: what the convergence test uses; its guest rewrites 64 MiB of 128


@dataclass
class Samples:
    tool: str
    mode: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p90(self) -> float:
        if len(self.seconds) < 2:
            return self.seconds[0]
        return statistics.quantiles(self.seconds, n=10, method="inclusive")[8]


def _compiled_env(work: Path) -> dict[str, str]:
    """The processes we start keep their compiled modules, as an installed domig has them: this
    machine's PYTHONDONTWRITEBYTECODE would otherwise make every start compile every module anew."""
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(work / "pycache")}


def _domig() -> list[str]:
    beside = Path(sys.executable).parent / "domig"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "controller.cli.main"]


class Bench:
    def __init__(self, hosts: Any, kvm: bool, work: Path) -> None:
        self.hosts = hosts
        self.kvm = kvm
        self.work = work
        self.guest = f"bench-{os.getpid()}"
        self.names = {hosts.a.uri: "host-a", hosts.b.uri: "host-b"}
        self.where = hosts.a
        self.serial = 0
        self.kube: Any = None
        self.env = _compiled_env(work)
        for mode in MODES:
            (work / f"hosts-{mode}.yaml").write_text(yaml.safe_dump_all(self.host_docs(mode, suffix="")))

    # -- the guest --------------------------------------------------------------------------------

    def define_guest(self) -> None:
        from tests.harness.guest import idle_domain_xml

        conn = self.hosts.a.open()
        try:
            conn.defineXML(idle_domain_xml(self.guest, kvm=self.kvm, memory_mib=GUEST_MIB)).create()
        finally:
            conn.close()
        time.sleep(2)  # let the firmware settle: the guest is idle from here on

    def other(self) -> Any:
        return self.hosts.b if self.where is self.hosts.a else self.hosts.a

    def host_docs(self, mode: str, suffix: str) -> list[dict[str, Any]]:
        docs = []
        for host in (self.hosts.a, self.hosts.b):
            spec = {
                "driver": "libvirt",
                "uri": host.uri,
                "migrationAddress": host.spec.migration_address,
                "peerToPeer": mode == "peer-to-peer",
            }
            name = self.names[host.uri] + suffix
            docs.append({"apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": name},
                         "spec": spec})  # fmt: skip
        return docs

    # -- the four ways ------------------------------------------------------------------------------

    def bare(self, mode: str) -> None:
        import libvirt

        source, destination = self.where, self.other()
        flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        params = {libvirt.VIR_MIGRATE_PARAM_URI: destination.migrate_uri}
        conn = libvirt.open(source.uri)
        try:
            dom = conn.lookupByName(self.guest)
            if mode == "peer-to-peer":
                dom.migrateToURI3(destination.uri, params, flags | libvirt.VIR_MIGRATE_PEER2PEER)
            else:
                dconn = libvirt.open(destination.uri)
                try:
                    dom.migrate3(dconn, params, flags)
                finally:
                    dconn.close()
        finally:
            conn.close()

    def virsh(self, mode: str) -> None:
        source, destination = self.where, self.other()
        p2p = ["--p2p"] if mode == "peer-to-peer" else []
        command = ["virsh", "-q", "-c", source.uri, "migrate", *VIRSH_FLAGS, *p2p, self.guest, destination.uri]
        subprocess.run([*command, destination.migrate_uri], check=True, capture_output=True, timeout=300)

    def spec(self, suffix: str = "") -> dict[str, Any]:
        return {
            "domain": self.guest,
            "source": self.names[self.where.uri] + suffix,
            "destination": self.names[self.other().uri] + suffix,
            "flags": FLAGS,
        }

    def domig(self, mode: str, extra: tuple[str, ...] = ()) -> None:
        self.serial += 1
        doc = {"apiVersion": "domig.dev/v1alpha1", "kind": "DomainMigration",
               "metadata": {"name": f"bench-{self.serial}"}, "spec": self.spec()}  # fmt: skip
        path = self.work / "migration.yaml"
        path.write_text(yaml.safe_dump(doc))
        hosts = self.work / f"hosts-{mode}.yaml"
        done = subprocess.run(
            [*_domig(), "migrate", "-f", str(path), "--hosts", str(hosts), "-o", "json", *extra],
            capture_output=True,
            timeout=300,
            text=True,
            env=self.env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"domig migrate exited {done.returncode}: {done.stdout[-800:]} {done.stderr[-800:]}")

    def engine(self, mode: str) -> None:
        """What `domig migrate` runs, in this process: the command less its start-up and exit."""
        from controller.api import load_migration
        from controller.backends.registry import DriverTable
        from controller.cli.documents import load_hosts_file
        from controller.engine import Engine, RunPolicy

        self.serial += 1
        migration = load_migration({"metadata": {"name": f"bench-{self.serial}"}, "spec": self.spec()})

        async def run() -> str:
            drivers = DriverTable()
            try:
                hosts = load_hosts_file(self.work / f"hosts-{mode}.yaml")
                engine = Engine(drivers, hosts, RunPolicy(poll_interval=0.25))  # as `domig migrate` sets it
                return (await engine.run(migration)).phase.value
            finally:
                await drivers.close()

        phase = asyncio.run(run())
        if phase != "Succeeded":
            raise RuntimeError(f"the engine's migration ended {phase}")

    def operator(self, mode: str) -> None:
        self.serial += 1
        name = f"bench-{self.serial}"
        suffix = "" if mode == "peer-to-peer" else "-managed"
        doc = {"apiVersion": "domig.dev/v1alpha1", "kind": "DomainMigration",
               "metadata": {"name": name, "namespace": "default"}, "spec": self.spec(suffix)}  # fmt: skip
        self.kube.create(doc)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status = (self.kube.read("domainmigrations", name, "default") or {}).get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            if conditions.get("Succeeded") == "True":
                return
            if status.get("phase") in ("Failed", "Aborted"):
                raise RuntimeError(f"the operator's migration {name} ended {status['phase']}: {status.get('message')}")
            time.sleep(0.01)
        raise RuntimeError(f"the operator's migration {name} did not end within 300 s")

    def timed(self, tool: str, mode: str) -> float:
        way: Callable[[str], None] = {
            "libvirt-python": self.bare,
            "virsh": self.virsh,
            "domig migrate": self.domig,
            "domig's engine": self.engine,
            "operator": self.operator,
        }[tool]
        started = time.perf_counter()
        way(mode)
        seconds = time.perf_counter() - started
        self.where = self.other()
        self.check_where()
        return seconds

    def check_where(self) -> None:
        """The guest runs where we think, and only there: a wrong figure is worse than none."""
        import libvirt

        for host in (self.hosts.a, self.hosts.b):
            conn = host.open()
            try:
                try:
                    running = conn.lookupByName(self.guest).isActive() == 1
                except libvirt.libvirtError:
                    running = False
            finally:
                conn.close()
            if running != (host is self.where):
                raise RuntimeError(f"after a migration the guest {'runs' if running else 'is not'} on {host.name}")


@contextmanager
def operator_running(bench: Bench) -> Iterator[None]:
    """The emulated API server, both pairs of hosts (peer-to-peer and managed), and the operator as
    a process of its own (`kopf run` of the operator's handlers, default settings)."""
    from tests.kube.emulator import ApiServer, KopfSubprocess

    crds = sorted((ROOT / "crds").glob("*.yaml"))
    with ApiServer(crds=crds) as kube:
        for doc in [*bench.host_docs("peer-to-peer", ""), *bench.host_docs("managed", "-managed")]:
            kube.apply(doc)
        bench.kube = kube
        handlers = ROOT / "controller" / "operator" / "handlers.py"
        with KopfSubprocess(kube, handlers, verbose=False, env=bench.env) as op:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                hosts = kube.list_objects("hypervisorhosts")
                if hosts and all((h.get("status") or {}).get("reachable") for h in hosts):
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"the operator never probed the hosts: {op.output[-2000:]}")
            yield


def alternate(bench: Bench, runs: int, tools: tuple[str, ...], console: Console) -> list[Samples]:
    ways = [(tool, mode) for mode in MODES for tool in tools]
    samples = {way: Samples(*way) for way in ways}
    for round_ in range(runs):
        # Rotate by one each round: every way meets both directions, and no way always goes first.
        order = ways[round_ % len(ways) :] + ways[: round_ % len(ways)]
        for way in order:
            samples[way].seconds.append(bench.timed(*way))
        console.print(f"[dim]round {round_ + 1}/{runs} done[/]")
    return list(samples.values())


async def convergence_rows(hosts: Any, kvm: bool) -> list[dict[str, Any]]:
    """The busy guest through the engine: no policy (the timeouts decide), then a policy allowing
    post-copy (its default schedule), against the bound: the guest's RAM ÷ the bandwidth."""
    from controller.api.migration_policy import MigrationPolicySpec
    from tests.libvirt.lab import Lab, migration

    lab = Lab(hosts, kvm)
    rows = []
    for label, policy in (
        ("no policy", None),
        ("policy: allowPostCopy, maxDowntimeMs 500", {"allowPostCopy": True, "maxDowntimeMs": 500}),
    ):
        name = lab.dirtying_guest("bench-busy")
        m = migration(name, params={"bandwidth": BUSY_BANDWIDTH}, timeouts={"progress": 30})
        if policy is not None:
            m.status.policy = "bench"
            m.status.applied_policy = MigrationPolicySpec.parse(policy).dump()
        status, _, seconds = await lab.run(m, p2p=True)
        memory = status.source.memory_bytes if status.source and status.source.memory_bytes else 128 * 1024**2
        rows.append(
            {
                "what": label,
                "outcome": f"{status.phase.value}/{status.reason.value if status.reason else ''}",
                "seconds": seconds,
                "bound_seconds": memory / (BUSY_BANDWIDTH * 1024**2),
                "steps": [f"{c.action}: {c.outcome}" for c in status.convergence],
            }
        )
        for host in hosts:
            host.destroy_all_domains()
    return rows


def table(samples: list[Samples], runs: int, kvm: bool) -> Table:
    kind = "KVM" if kvm else "TCG"
    out = Table(title=f"libvirt: idle {GUEST_MIB} MiB {kind} guest between two libvirtd daemons, {runs} runs each")
    for column in ("mode", "way", "median", "p90", "÷ virsh (median)", "÷ virsh (p90)", "min", "max"):
        out.add_column(column, justify="left" if column in ("mode", "way") else "right")
    virsh = {s.mode: s for s in samples if s.tool == "virsh"}
    for s in samples:
        ref = virsh[s.mode]
        out.add_row(
            s.mode,
            s.tool,
            f"{s.median:.2f} s",
            f"{s.p90:.2f} s",
            f"{s.median / ref.median:.2f}",
            f"{s.p90 / ref.p90:.2f}",
            f"{min(s.seconds):.2f} s",
            f"{max(s.seconds):.2f} s",
        )
    return out


def convergence_table(rows: list[dict[str, Any]]) -> Table:
    out = Table(title=f"convergence: the busy guest (rewrites 64 MiB of 128) at bandwidth {BUSY_BANDWIDTH} MiB/s")
    for column in ("policy", "outcome", "time", "bound (RAM ÷ bandwidth)", "÷ bound", "steps"):
        out.add_column(column)
    for row in rows:
        out.add_row(
            row["what"],
            row["outcome"],
            f"{row['seconds']:.1f} s",
            f"{row['bound_seconds']:.1f} s",
            f"{row['seconds'] / row['bound_seconds']:.2f}",
            ", ".join(row["steps"]) or "-",
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.libvirt_rows")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", default="bench-libvirt.json", help="where to write the figures")
    parser.add_argument("--no-operator", action="store_true")
    parser.add_argument("--no-convergence", action="store_true")
    args = parser.parse_args(argv)
    console = Console(width=132)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.harness.libvirtd import LibvirtHosts, kvm_usable, missing_prerequisites

    missing = missing_prerequisites()
    if missing or shutil.which("virsh") is None:
        console.print(f"[yellow]libvirt rows skipped:[/] {'; '.join(missing) or 'no virsh'}")
        return 0
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    kvm = kvm_usable() and os.environ.get("DOMIG_LIBVIRT_KVM", "") not in ("0", "no", "false")
    tools = tuple(t for t in TOOLS if not (args.no_operator and t == "operator"))
    result: dict[str, Any] = {"runs": args.runs, "guest_mib": GUEST_MIB, "kvm": kvm, "load": os.getloadavg()}
    with LibvirtHosts() as hosts, tempfile.TemporaryDirectory() as tmp:
        bench = Bench(hosts, kvm, Path(tmp))
        bench.define_guest()
        bench.domig("managed", ("--dry-run",))  # not timed: compiles what `domig migrate` loads, once
        if "operator" in tools:
            with operator_running(bench):
                samples = alternate(bench, args.runs, tools, console)
        else:
            samples = alternate(bench, args.runs, tools, console)
        console.print(table(samples, args.runs, kvm))
        result["migrations"] = [
            {"mode": s.mode, "way": s.tool, "seconds": s.seconds, "median": s.median, "p90": s.p90} for s in samples
        ]
        hosts.a.destroy_all_domains()
        hosts.b.destroy_all_domains()
        if not args.no_convergence:
            rows = asyncio.run(convergence_rows(hosts, kvm))
            console.print(convergence_table(rows))
            result["convergence"] = rows
    result["load_after"] = os.getloadavg()
    Path(args.json).write_text(json.dumps(result, indent=2))
    console.print(f"[dim]figures written to {args.json}; load average {result['load']} → {result['load_after']}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
