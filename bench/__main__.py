"""How fast the pieces the operator leans on are: the test driver's model, its file world, the engine;
then the libvirt rows (bench/libvirt_rows.py): one guest migrated four ways between real daemons.

Figures are wall time on this machine (2 cores); they are for comparing changes, not promises.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from controller.api import load_migration
from controller.backends.protocol import HostConfig
from controller.backends.registry import DriverTable
from controller.backends.test.driver import TestDriver
from controller.backends.test.model import MiB, Plan, evaluate
from controller.engine import Engine, RunPolicy, StaticHosts


def per_call(fn: Callable[[], object], seconds: float = 0.5) -> tuple[float, int]:
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls, calls


def model_rows() -> list[tuple[str, str, str]]:
    rows = []
    converging = Plan(start=0, memory=16 * 1024 * MiB, dirty_bps=200 * MiB, link_bps=1000 * MiB)
    spinning = Plan(start=0, memory=1024 * MiB, dirty_bps=1500 * MiB, link_bps=1000 * MiB)
    for label, plan, at in (
        ("model: 16 GiB guest that converges, t=60 s", converging, 60.0),
        ("model: guest that never converges, t=10 min", spinning, 600.0),
        ("model: guest that never converges, t=1 h", spinning, 3600.0),
    ):
        seconds, calls = per_call(lambda p=plan, t=at: evaluate(p, t))  # type: ignore[misc]
        rows.append((label, f"{seconds * 1e6:,.0f} µs", f"{calls:,} calls"))
    return rows


async def world_rows() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"test://{Path(tmp) / 'state.json'}"
        driver = TestDriver()
        domains = [{"name": f"vm{i}", "memoryMiB": 1024} for i in range(100)]
        conn = await driver.connect(HostConfig("a", "test", uri, options={"domains": domains}))
        start, n = time.perf_counter(), 200
        for i in range(n):
            await conn.lookup(f"vm{i % 100}")
        lookup = (time.perf_counter() - start) / n
    return [("file world: lookup among 100 domains (lock, read, write)", f"{lookup * 1e3:,.2f} ms", f"{n} calls")]


async def engine_rows() -> list[tuple[str, str, str]]:
    driver = TestDriver()
    web = {"domains": [{"name": "web", "memoryMiB": 64}], "linkMiBps": 64000}
    hosts = StaticHosts(
        [
            HostConfig("a", "test", "test:///default", options=web),
            HostConfig("b", "test", "test:///default", options={"linkMiBps": 64000}),
        ]
    )
    engine = Engine(DriverTable({"test": driver}), hosts, RunPolicy(poll_interval=0.001))
    doc = {"metadata": {"name": "m"}, "spec": {"domain": "web", "source": "a", "destination": "b", "flags": ["live"]}}
    tracemalloc.start()
    start = time.perf_counter()
    status = await engine.run(load_migration(doc))
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert status.phase.value == "Succeeded"
    return [
        ("engine: one whole migration, test driver, 1 ms polls", f"{elapsed * 1e3:,.1f} ms", status.phase.value),
        ("engine: peak Python memory during it", f"{peak / 1024:,.0f} KiB", "tracemalloc"),
    ]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=("pieces", "scale", "libvirt"), help="run only these parts")
    parser.add_argument(
        "--sizes", default="1000,10000", help="scale: how many DomainMigrations, comma-separated (default: 1000,10000)"
    )
    parser.add_argument(
        "--deadline", type=float, help="scale: stop waiting after this many seconds and report what ended by then"
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()
    only = set(args.only or ("pieces", "scale", "libvirt"))
    table = Table(title="domig benchmarks")
    table.add_column("what")
    table.add_column("time / size", justify="right")
    table.add_column("sample", justify="right")
    rows: list[tuple[str, str, str]] = []
    if "pieces" in only:
        rows += [*model_rows(), *asyncio.run(world_rows()), *asyncio.run(engine_rows())]
    if "scale" in only:
        from bench import scale  # the emulated API server: only when asked for

        rows += scale.main([int(size) for size in args.sizes.split(",") if size], args.deadline)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    if "libvirt" in only:
        # Real daemons: says why and returns when libvirt, QEMU or root is missing.
        from bench import libvirt_rows

        libvirt_rows.main([])


if __name__ == "__main__":
    main()
