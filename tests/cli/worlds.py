"""Hosts files on the test driver over one JSON world, and what that world holds: a test reads
the hypervisors' own state while `domig` runs, as an operator of the hosts would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from controller.backends.test.world import World

ROOT = Path(__file__).resolve().parents[2]


def host(
    name: str,
    world: Path,
    memory_mib: int = 65536,
    domains: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    link_mibps: int = 20000,
    faults: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    test = {"linkMiBps": link_mibps, "memoryMiB": memory_mib, "domains": domains or [], "faults": faults or {}}
    return {
        "apiVersion": "domig.dev/v1alpha1",
        "kind": "HypervisorHost",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"driver": "test", "uri": f"test://{world}", "test": test, **spec},
    }


def write_hosts(tmp_path: Path, hosts: list[dict[str, Any]]) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump_all(hosts))
    return path


def read_world(world: Path) -> dict[str, Any]:
    """The world settled to now, as the driver itself sees it (under its lock); empty until the
    first connection made it."""
    if not world.exists():
        return {"hosts": {}, "jobs": {}}
    return World(world).read()


def running_on(world: Path, name: str) -> dict[str, int]:
    """The domains running (or paused) on a host, with their memory in MiB."""
    domains = read_world(world)["hosts"].get(name, {}).get("domains", {})
    return {d["name"]: d["memoryMiB"] for d in domains.values() if d["state"] in ("running", "paused")}


def domig(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli.main", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
