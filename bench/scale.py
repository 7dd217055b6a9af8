"""Scale: N DomainMigrations over 50 test-driver hosts through the operator, and control-plane latency.

The operator runs as its own process (`domig operator --standalone`), so its peak RSS and CPU are
its own; the emulated API server (tests/kube/emulator) runs in this process, in its thread, and
sees every request, which it counts by verb and subresource. Hosts use the test driver's
in-memory world (`test:///default`), which lives in the operator's process.

Latency is "resource created -> migrate call issued": the engine saves the migrate-call marker
(status.migrationStartTime) before it calls migrate, so the arrival of that status patch at the API
server is the moment of the call, to within one response. It is measured on an idle operator (its
slots free), each created once the one before has made its call: in the scale run itself a
migration waits in the queue for a cluster slot, which is admission doing its job, not latency.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import attrs
import kmock

from tests.kube.emulator import ApiServer

ROOT = Path(__file__).resolve().parents[1]
CRDS = sorted((ROOT / "crds").glob("*.yaml"))
RESULTS = ROOT / "bench" / "last-scale.json"
NS = "default"
HOSTS = 50
CLUSTER_LIMIT = 200
GUEST_MIB = 64  # at the test driver's 1000 MiB/s, a 64 ms copy: the operator's cost shows, not the copy's
LATENCY_SAMPLES = 50
WRITES = ("create", "patch", "update", "delete")
TICK = os.sysconf("SC_CLK_TCK")


@attrs.define(kw_only=True, eq=False)
class CountingApiServer(ApiServer):
    """The emulator, counting what it serves, and when each migration's migrate-call marker lands."""

    tally: Counter[tuple[str, str, str]] = attrs.field(factory=Counter, init=False)
    marked: dict[str, float] = attrs.field(factory=dict, init=False)  # name -> when the marker landed
    handling: float = attrs.field(default=0.0, init=False)  # seconds spent serving (not streaming watches)
    last_phase: dict[str, Any] = attrs.field(factory=dict, init=False)
    status_kinds: Counter[str] = attrs.field(factory=Counter, init=False)  # status patches by what they said
    followed: dict[str, list[tuple[float, str]]] = attrs.field(factory=dict, init=False)  # name -> requests

    async def _handle(self, request: kmock.Request) -> Any:
        arrived = time.perf_counter()
        res = request.resource
        plural = (res.plural if res is not None else None) or "-"
        verb = _verb(request)
        self.tally[(verb, plural, request.subresource or "")] += 1
        if plural == "domainmigrations" and request.name in self.followed:
            said = request.data if isinstance(request.data, dict) else {}
            phase = (said.get("status") or {}).get("phase") or ""
            self.followed[str(request.name)].append((time.time(), f"{verb} {request.subresource or ''} {phase}"))
        if plural == "domainmigrations" and request.subresource == "status" and isinstance(request.data, dict):
            status = request.data.get("status") or {}
            name = str(request.name)
            phase, before = status.get("phase"), self.last_phase.get(name)
            if status.get("migrationStartTime") and name not in self.marked:
                self.marked[name] = time.time()
                kind = "marker"
            elif phase != before:
                kind = "transition"
            else:
                kind = "waiting" if phase == "Pending" else "same phase (progress, observedGeneration)"
            self.last_phase[name] = phase
            self.status_kinds[kind] += 1
        try:
            return await super()._handle(request)
        finally:
            self.handling += time.perf_counter() - arrived

    def forget_requests(self) -> None:
        """kmock keeps every request (and each reaction its own list): 250,000 of them weigh gigabytes.
        The emulator's plain reactions do not look back at them (handler.py `_sees`)."""
        self._requests.clear()
        for payload in self._payloads:
            payload._requests.clear()

    def phases(self) -> Counter[str]:
        """By the last phase each migration's status patches said: walking the stored objects once a
        second (kmock's history views, 10,000 of them) took a third of the emulator's time."""
        return Counter(
            str(phase or "-") for phase in list(self.last_phase.values())
        )  # one C-level copy: the serving thread writes it


def _verb(request: kmock.Request) -> str:
    action = request.action
    method = str(request.method.value).upper()
    if action == kmock.action.WATCH:
        return "watch"
    if action == kmock.action.LIST:
        return "list"
    if action == kmock.action.FETCH:
        return "get"
    if action == kmock.action.CREATE:
        return "create"
    if method == "PUT":
        return "update"
    return {"PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


def host(index: int, domains: int) -> dict[str, Any]:
    names = [{"name": f"vm-{index:02d}-{d:04d}", "memoryMiB": GUEST_MIB} for d in range(domains)]
    return {
        "apiVersion": "domig.dev/v1alpha1",
        "kind": "HypervisorHost",
        "metadata": {"name": f"host-{index:02d}"},
        "spec": {"driver": "test", "uri": "test:///default", "test": {"linkMiBps": 1000, "domains": names}},
    }


def migration(name: str, domain: str, source: int, destination: int) -> dict[str, Any]:
    return {
        "apiVersion": "domig.dev/v1alpha1",
        "kind": "DomainMigration",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "domain": domain,
            "source": f"host-{source:02d}",
            "destination": f"host-{destination:02d}",
            "flags": ["live"],
        },
    }


@dataclass
class Usage:
    cpu_seconds: float
    peak_rss_mib: float


def usage_of(pid: int) -> Usage:
    """What the operator used so far: user+system CPU, and its high-water mark of resident memory."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM"))
    return Usage(cpu, int(hwm.split()[1]) / 1024)


@contextlib.contextmanager
def operator(api: ApiServer, logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "KUBECONFIG": str(api.kubeconfig),
        "DOMIG_MAX_PARALLEL": str(CLUSTER_LIMIT),
        # To compare with another checkout (e.g. main before a change): its operator, this bench.
        "PYTHONPATH": os.environ.get("BENCH_OPERATOR_ROOT", str(ROOT)),
    }
    command = [sys.executable, "-m", "controller.cli.main", "operator", "--standalone"]
    with logs.open("ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=env["PYTHONPATH"])
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(check: Any, within: float, what: str, proc: subprocess.Popen[bytes], every: float = 0.5) -> None:
    deadline = time.monotonic() + within
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within:.0f} s")
        time.sleep(every)


@dataclass
class Scale:
    n: int
    succeeded: int
    phases: dict[str, int]
    create_s: float  # creating the N resources
    wall_s: float  # first creation -> all Succeeded
    operator_cpu_s: float  # during the run
    operator_peak_rss_mib: float
    emulator_cpu_s: float  # this process (the emulator's serving, the creation and the polling)
    emulator_serving_s: float  # of which inside the emulator's request handling
    requests: dict[str, float]  # per migration, by "verb resource[/subresource]"
    writes_per_migration: float  # DomainMigration writes besides progress, Events excluded (see `writes`)
    status_patches_per_migration: float
    events_per_migration: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    # False: stopped at the deadline; the per-migration figures are then per migration ended so far.
    complete: bool = True
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (seconds since the first creation, Succeeded)
    # Status patches per migration by what they said: a new phase, the migrate-call marker, a waiting
    # migration's new place or reason (Pending again), or the same phase again (progress, observedGeneration).
    status_patches: dict[str, float] = field(default_factory=dict)

    @property
    def ended(self) -> int:
        return (
            self.n if self.complete else max(1, sum(self.phases.get(p, 0) for p in ("Succeeded", "Failed", "Aborted")))
        )

    @property
    def rate(self) -> float | None:
        """Migrations Succeeded per second between a tenth and nine tenths of them: the steady pace."""
        low, high = 0.1 * self.ended, 0.9 * self.ended
        inside = [(t, k) for t, k in self.timeline if low <= k <= high]
        if len(inside) < 2 or inside[-1][0] == inside[0][0]:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    @property
    def wall_per_migration_ms(self) -> float:
        return 1000 * self.wall_s / self.ended

    @property
    def cpu_per_migration_ms(self) -> float:
        return 1000 * self.operator_cpu_s / self.ended


def writes(tally: Counter[tuple[str, str, str]], n: int) -> tuple[float, float, float]:
    """(API writes to DomainMigrations per migration, of which status patches, Events per migration).

    Progress patches (the engine's throttled reports while it copies) are not told apart by the API
    server; with a 64 ms copy and reports at most every 2 s there are none beyond the phase changes."""
    mine = sum(c for (verb, plural, _), c in tally.items() if verb in WRITES and plural == "domainmigrations")
    status = sum(
        c
        for (verb, plural, sub), c in tally.items()
        if verb == "patch" and (plural, sub) == ("domainmigrations", "status")
    )
    events = sum(c for (verb, plural, _), c in tally.items() if verb == "create" and plural == "events")
    return mine / n, status / n, events / n


def run_scale(n: int, workdir: Path, deadline: float | None = None) -> Scale:
    """`deadline`: seconds after which to stop waiting and report what ended by then (complete=False)."""
    per_host = -(-n // HOSTS)
    timeline: list[tuple[float, int]] = []
    with CountingApiServer(crds=CRDS) as api:
        for i in range(HOSTS):
            api.create(host(i, per_host))
        with operator(api, workdir / f"operator-{n}.log") as proc:
            wait_until(lambda: _ready(api) == HOSTS, 120, "the hosts Ready", proc)
            api.tally.clear()
            api.status_kinds.clear()
            api.handling = 0.0
            before, mine_before = usage_of(proc.pid), resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            for k in range(n):
                source, d = k % HOSTS, k // HOSTS
                api.create(migration(f"m-{k:05d}", f"vm-{source:02d}-{d:04d}", source, (source + 1) % HOSTS))
                if k % 500 == 499:
                    api.forget_requests()
                    timeline.append((round(time.perf_counter() - start, 1), api.phases()["Succeeded"]))
            created = time.perf_counter()
            phases: Counter[str] = Counter()
            give_up = float("inf") if deadline is None else start + deadline

            def done() -> bool:
                nonlocal phases
                api.forget_requests()
                phases = api.phases()
                now = time.perf_counter()
                if not timeline or now - start - timeline[-1][0] >= 5:
                    timeline.append((round(now - start, 1), phases["Succeeded"]))
                return phases["Succeeded"] + phases["Failed"] + phases["Aborted"] >= n or now > give_up

            wait_until(done, 600 + 0.5 * n, f"{n} migrations ended", proc, every=2.0)
            wall = time.perf_counter() - start
            timeline.append((round(wall, 1), phases["Succeeded"]))
            after, mine_after = usage_of(proc.pid), resource.getrusage(resource.RUSAGE_SELF)
            tally = Counter(api.tally)
            kinds = Counter(api.status_kinds)
            serving = api.handling
            complete = phases["Succeeded"] + phases["Failed"] + phases["Aborted"] >= n
            if complete:
                settle(proc)
            latency = measure_latency(api, proc, per_host) if complete else {}
    ended = n if complete else max(1, phases["Succeeded"] + phases["Failed"] + phases["Aborted"])
    mine = writes(tally, ended)
    by_kind = Counter[str]()
    for (verb, plural, sub), count in tally.items():
        by_kind[f"{verb} {plural}{'/' + sub if sub else ''}"] += count
    return Scale(
        n=n,
        succeeded=phases["Succeeded"],
        phases=dict(phases),
        create_s=created - start,
        wall_s=wall,
        operator_cpu_s=after.cpu_seconds - before.cpu_seconds,
        operator_peak_rss_mib=after.peak_rss_mib,
        emulator_cpu_s=(mine_after.ru_utime + mine_after.ru_stime) - (mine_before.ru_utime + mine_before.ru_stime),
        emulator_serving_s=serving,
        requests={k: round(v / ended, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        writes_per_migration=mine[0],
        status_patches_per_migration=mine[1],
        events_per_migration=mine[2],
        latency_ms=latency,
        complete=complete,
        timeline=timeline,
        status_patches={k: round(v / ended, 3) for k, v in kinds.most_common()},
    )


def _ready(api: ApiServer) -> int:
    return sum(1 for h in api.list_objects("hypervisorhosts") if (h.get("status") or {}).get("reachable"))


def settle(proc: subprocess.Popen[bytes], within: float = 120.0) -> None:
    """Until the operator is idle (under a tenth of a core for a second): the last migration's
    Succeeded is not the end of its work (kopf's finalizer removals, the last events), and a sample
    taken meanwhile measures that backlog, not a user's wait."""
    give_up = time.monotonic() + within
    while time.monotonic() < give_up:
        before = usage_of(proc.pid).cpu_seconds
        time.sleep(1.0)
        if usage_of(proc.pid).cpu_seconds - before < 0.1:
            return


def measure_latency(api: CountingApiServer, proc: subprocess.Popen[bytes], per_host: int) -> dict[str, float]:
    """Migrate some domains back, one at a time on the now idle operator: each is created once the
    one before has made its migrate call (what one user's `kubectl create` waits for)."""
    created: dict[str, float] = {}
    for k in range(min(LATENCY_SAMPLES, per_host * HOSTS)):
        source, d = k % HOSTS, k // HOSTS
        name = f"back-{k:05d}"
        api.followed[name] = []
        api.create(migration(name, f"vm-{source:02d}-{d:04d}", (source + 1) % HOSTS, source))
        created[name] = time.time()
        wait_until(lambda n=name: n in api.marked, 60, f"{name}'s migrate call", proc, every=0.005)
        time.sleep(0.05)
    samples = sorted(1000 * (api.marked[name] - at) for name, at in created.items())
    for name in list(created)[:: max(1, len(created) // 4)]:  # where the time goes, for a few
        steps = ", ".join(f"{1000 * (t - created[name]):.0f} ms {what}" for t, what in api.followed[name])
        print(f"{name}: {steps}", file=sys.stderr)
    return {
        "p50": round(statistics.median(samples), 1),
        "p99": round(samples[min(len(samples) - 1, int(0.99 * len(samples)))], 1),
        "max": round(samples[-1], 1),
        "samples": len(samples),
    }


def table_rows(results: list[Scale]) -> list[tuple[str, str, str]]:
    rows = []
    for r in results:
        label = f"scale {r.n:,}"
        rows += [
            (
                f"{label}: Succeeded" + ("" if r.complete else " (stopped at the deadline)"),
                f"{r.succeeded:,} / {r.n:,}",
                json.dumps(r.phases),
            ),
            (f"{label}: steady rate", f"{r.rate:.1f} / s" if r.rate else "-", "from 10 % to 90 % Succeeded"),
            (
                f"{label}: wall (create {r.create_s:.0f} s)",
                f"{r.wall_s:,.1f} s",
                f"{r.wall_per_migration_ms:.1f} ms/migration",
            ),
            (f"{label}: operator CPU", f"{r.operator_cpu_s:,.1f} s", f"{r.cpu_per_migration_ms:.1f} ms/migration"),
            (f"{label}: operator peak RSS", f"{r.operator_peak_rss_mib:,.0f} MiB", "VmHWM"),
            (
                f"{label}: emulator CPU (serving)",
                f"{r.emulator_cpu_s:,.1f} s ({r.emulator_serving_s:,.1f} s)",
                "this process",
            ),
            (
                f"{label}: writes / migration",
                f"{r.writes_per_migration:.2f}",
                f"{r.status_patches_per_migration:.2f} status patches",
            ),
            (f"{label}: Events / migration", f"{r.events_per_migration:.2f}", "create events"),
            (
                f"{label}: latency created -> migrate",
                f"p50 {r.latency_ms.get('p50', 0):.0f} ms, p99 {r.latency_ms.get('p99', 0):.0f} ms",
                f"{r.latency_ms.get('samples', 0)} samples, idle",
            ),
        ]
        rows += [(f"{label}: {kind}", f"{per:.2f}", "requests / migration") for kind, per in r.requests.items()]
        rows += [
            (f"{label}: status patch: {kind}", f"{per:.2f}", "per migration") for kind, per in r.status_patches.items()
        ]
    return rows


def main(sizes: list[int], deadline: float | None = None) -> list[tuple[str, str, str]]:
    results = []
    logs = Path(tempfile.gettempdir()) / "domig-scale"  # the operator's log of the last run of each size
    logs.mkdir(exist_ok=True)
    if True:
        for n in sizes:
            (logs / f"operator-{n}.log").unlink(missing_ok=True)
            result = run_scale(n, logs, deadline)
            results.append(result)
            print(f"scale {n}: {json.dumps(asdict(result))}", file=sys.stderr, flush=True)
    RESULTS.write_text(
        json.dumps(
            [
                {
                    **asdict(r),
                    "wall_per_migration_ms": r.wall_per_migration_ms,
                    "cpu_per_migration_ms": r.cpu_per_migration_ms,
                    "rate_per_s": r.rate,
                }
                for r in results
            ],
            indent=1,
        )
    )
    return table_rows(results)
