"""`domig evacuate HOST` as a user runs it: a real process over a JSON world that the test reads
while it runs, as the hypervisors see it, to check limits and memory at every moment."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.cli.worlds import ROOT, domig, host, read_world, running_on, write_hosts

SIZES = [2048, 1536, 1024, 768, 512, 256]  # MiB
DESTINATIONS = ("host-b", "host-c", "host-d")
ROOM_MIB = 8192  # each destination's: 24 GiB for the 21.5 GiB of the 20 guests, so placement must pack
LINK_MIBPS = 2000  # a 2 GiB guest takes a second: long enough for the sampling to see who runs at once


def guests(count: int = 20) -> list[dict[str, Any]]:
    return [{"name": f"vm-{i:02d}", "memoryMiB": SIZES[i % len(SIZES)], "dirtyRateMiBps": 50} for i in range(count)]


@dataclass
class Sampled:
    """The most seen at once: migrations in flight, by source and destination, and each
    destination's memory held by its running guests."""

    samples: int = 0
    in_flight: int = 0
    outbound: Counter[str] = field(default_factory=Counter)
    inbound: Counter[str] = field(default_factory=Counter)
    memory_mib: Counter[str] = field(default_factory=Counter)

    def take(self, state: dict[str, Any]) -> None:
        self.samples += 1
        jobs = [job for job in state["jobs"].values() if not job.get("settled")]
        self.in_flight = max(self.in_flight, len(jobs))
        for side, seen in (("source", self.outbound), ("destination", self.inbound)):
            for name, count in Counter(job[side] for job in jobs).items():
                seen[name] = max(seen[name], count)
        for name, record in state["hosts"].items():
            held = sum(d["memoryMiB"] for d in record["domains"].values() if d["state"] in ("running", "paused"))
            self.memory_mib[name] = max(self.memory_mib[name], held)


def evacuate_sampled(world: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Sampled, float]:
    """Run `domig evacuate`, sampling the world every few milliseconds until it exits."""
    sampled = Sampled()
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli.main", "evacuate", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            sampled.take(read_world(world))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        stop.set()
        sampler.join()
    took = time.monotonic() - began
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), sampled, took


@pytest.mark.parametrize(
    ("outbound", "parallel", "most"),
    [(2, 5, 2), (None, 5, 5)],
    ids=["maxOutbound 2", "maxInbound 2 and --max-parallel 5"],
)
def test_twenty_domains_leave_within_the_limits_and_the_room(
    tmp_path: Path, outbound: int | None, parallel: int, most: int
) -> None:
    world = tmp_path / "world.json"
    hosts = write_hosts(
        tmp_path,
        [
            host(
                "host-a",
                world,
                65536,
                guests(),
                link_mibps=LINK_MIBPS,
                limits={"maxOutbound": outbound} if outbound else {},
            ),
            *(host(name, world, ROOM_MIB, link_mibps=LINK_MIBPS, limits={"maxInbound": 2}) for name in DESTINATIONS),
        ],
    )
    done, sampled, took = evacuate_sampled(world, "host-a", "--hosts", str(hosts), "--max-parallel", str(parallel))
    print(f"{took:.1f}s, {sampled.samples} samples: {sampled}")  # what the report quotes (pytest -s)
    assert done.returncode == 0, done.stderr
    assert running_on(world, "host-a") == {}
    landed = {name: running_on(world, name) for name in DESTINATIONS}
    assert sorted(n for names in landed.values() for n in names) == [g["name"] for g in guests()]
    # The limits held at every sample, and were reached (the sampling could see them).
    assert sampled.in_flight == most
    assert sampled.outbound["host-a"] <= (outbound or parallel)
    assert all(sampled.inbound[name] <= 2 for name in DESTINATIONS)
    assert max(sampled.inbound.values()) == 2 or most == 2
    # No destination ever held more than it has.
    assert sum(g["memoryMiB"] for g in guests()) == 22016
    assert all(sampled.memory_mib[name] <= ROOM_MIB for name in DESTINATIONS), sampled.memory_mib
    # What the user reads: a line as each starts and ends, the table, the count.
    assert done.stderr.count("start vm-") == 20 and done.stderr.count("end   vm-") == 20
    assert "evacuated 20 of 20 domains from host-a" in done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert rows[0] == ["DOMAIN", "DESTINATION", "OUTCOME", "MESSAGE"]
    assert {(row[0], row[1], row[2]) for row in rows[1:]} == {
        (name, destination, "Succeeded") for destination, names in landed.items() for name in names
    }


def test_a_domain_too_big_for_any_host_is_reported_and_the_rest_move(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    hosts = write_hosts(
        tmp_path,
        [
            host("host-a", world, 65536, [*guests(5), {"name": "db-1", "memoryMiB": 16384}]),
            *(host(name, world, 8192) for name in DESTINATIONS),
            host("host-e", world, 65536, maintenance=True),
        ],
    )
    done = domig("evacuate", "host-a", "--hosts", str(hosts), "-o", "json")
    assert done.returncode == 1, done.stderr
    evacuation = json.loads(done.stdout)
    assert (evacuation["phase"], evacuation["total"], evacuation["done"], evacuation["unplaceable"]) == (
        "Incomplete", 6, 5, 1,
    )  # fmt: skip
    [big] = [row for row in evacuation["migrations"] if row["domain"] == "db-1"]
    assert big["phase"] == "Unplaceable" and "destination" not in big
    assert big["message"] == "0/5 hosts fit: 3 not enough memory, 1 in maintenance, 1 the source"
    summary = (
        "evacuated 5 of 6 domains from host-a; 1 cannot be placed: "
        "db-1 (0/5 hosts fit: 3 not enough memory, 1 in maintenance, 1 the source)"
    )
    assert summary in done.stderr and evacuation["message"] == summary
    assert running_on(world, "host-a") == {"db-1": 16384}
    assert sum(len(running_on(world, name)) for name in DESTINATIONS) == 5


def test_dry_run_plans_and_moves_nothing(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    # Room for two 2 GiB guests in all: the plan must count what it "sent", though nothing moved.
    hosts = write_hosts(
        tmp_path,
        [
            host("host-a", world, 65536, [{"name": f"big-{i}", "memoryMiB": 2048} for i in range(3)]),
            host("host-b", world, 2048),
            host("host-c", world, 2048),
        ],
    )
    done = domig("evacuate", "host-a", "--hosts", str(hosts), "--dry-run", "-o", "yaml")
    assert done.returncode == 1, done.stderr
    assert "dry run: would evacuate 2 of 3 domains from host-a; 1 cannot be placed: big-2" in done.stderr
    assert "big-0 to host-b" in done.stderr and "big-1 to host-c" in done.stderr
    assert "reason: DryRun" not in done.stdout and "phase: Incomplete" in done.stdout
    assert running_on(world, "host-a") == {"big-0": 2048, "big-1": 2048, "big-2": 2048}
    assert read_world(world)["jobs"] == {}


def test_ctrl_c_aborts_and_every_domain_still_runs_somewhere(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    slow = [{"name": f"vm-{i}", "memoryMiB": 2048} for i in range(4)]
    hosts = write_hosts(
        tmp_path,
        [
            host("host-a", world, 65536, slow, link_mibps=1000, limits={"maxOutbound": 1}),
            host("host-b", world, 65536, link_mibps=1000),
        ],
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli.main", "evacuate", "host-a", "--hosts", str(hosts)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not any(not job.get("settled") for job in read_world(world)["jobs"].values()):
        assert time.monotonic() < deadline, "no migration started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    assert "every domain still runs, on host-a or where it moved" in err
    assert "NotStarted" in out and "Aborted" in out
    everywhere = {**running_on(world, "host-a"), **running_on(world, "host-b")}
    assert sorted(everywhere) == [d["name"] for d in slow]
    assert all(job.get("settled") for job in read_world(world)["jobs"].values())


def test_a_host_with_nothing_running_says_so(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    hosts = write_hosts(
        tmp_path, [host("host-a", world, 8192, [{"name": "off", "running": False}]), host("host-b", world)]
    )
    done = domig("evacuate", "host-a", "--hosts", str(hosts))
    assert done.returncode == 0 and "host-a runs no domain: nothing to evacuate" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["host-z"], "domig: invalid: HOST: no host named 'host-z' in {hosts} (known: host-a, host-b)"),
        (["host-a", "--max-parallel", "0"], "domig: invalid: --max-parallel: must be at least 1, got 0"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, args: list[str], said: str) -> None:
    world = tmp_path / "world.json"
    hosts = write_hosts(tmp_path, [host("host-a", world, 8192, guests(1)), host("host-b", world)])
    done = domig("evacuate", *args, "--hosts", str(hosts))
    assert done.returncode == 2 and said.format(hosts=hosts) in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_broken_hosts_file_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "hosts.yaml"
    broken.write_text("kind: HypervisorHost\nmetadata: {name: host-a}\nspec: {driver: warp, uri: x}\n")
    done = domig("evacuate", "host-a", "--hosts", str(broken))
    assert done.returncode == 2 and f"domig: invalid: {broken} (document 1): spec.driver" in done.stderr
    missing = domig("evacuate", "host-a", "--hosts", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2 and "absent.yaml: cannot read: No such file or directory" in missing.stderr
    assert "Traceback" not in done.stderr + missing.stderr


def test_an_unreachable_host_is_named(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    hosts = write_hosts(tmp_path, [host("host-a", world, faults={"unreachable": True}), host("host-b", world)])
    done = domig("evacuate", "host-a", "--hosts", str(hosts))
    assert done.returncode == 1 and "cannot list the domains of host-a" in done.stderr
    assert "Traceback" not in done.stderr
