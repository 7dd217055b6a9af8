"""The test driver's world: hosts, their domains and the migration jobs between them.

It lives in memory (`test:///default`) or in a JSON file shared by processes
(`test:///path/state.json`), changed only under a lock, so an operator killed mid-migration
and started again finds the job where a hypervisor would have it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.backends.test.model import MiB, Plan, Snapshot, evaluate

if TYPE_CHECKING:
    from filelock import FileLock

State = dict[str, Any]
Clock = Callable[[], float]


def empty_state() -> State:
    return {"hosts": {}, "jobs": {}, "open": [], "migrateCalls": 0}


def domain_record(spec: Mapping[str, Any]) -> dict[str, Any]:
    import uuid as uuidlib

    return {
        "name": spec["name"],
        "uuid": spec.get("uuid") or str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"domig-test:{spec['name']}")),
        "memoryMiB": int(spec.get("memoryMiB", 1024)),
        "dirtyRateMiBps": float(spec.get("dirtyRateMiBps", 0.0)),
        "state": "running" if spec.get("running", True) else "shutoff",
        "persistent": bool(spec.get("persistent", True)),
        "cpuModel": spec.get("cpuModel"),
    }


def job_key(host: str, domain: str) -> str:
    return f"{host}/{domain}"


class World:
    """One test world; `txn()` yields its state settled to now, and saves what changed."""

    def __init__(self, path: Path | None, clock: Clock | None = None) -> None:
        self.path = path
        self.clock: Clock = clock or time.time
        self._memory: State = empty_state()
        self._lock: FileLock | None = None
        if path is not None:
            # Only a shared world locks: an in-memory one (`domig demo`) need not load filelock.
            from filelock import FileLock

            self._lock = FileLock(str(path) + ".lock", timeout=30)

    @contextmanager
    def txn(self) -> Iterator[State]:
        if self._lock is None or self.path is None:
            settle(self._memory, self.clock())
            yield self._memory
            return
        with self._lock:
            state = json.loads(self.path.read_text()) if self.path.exists() else empty_state()
            settle(state, self.clock())
            yield state
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
            os.replace(tmp, self.path)

    def read(self) -> State:
        with self.txn() as state:
            copy: State = json.loads(json.dumps(state))
            return copy


def plan_of(job: Mapping[str, Any]) -> Plan:
    data = dict(job["plan"])
    for key in ("bandwidth", "downtime"):
        data[key] = [tuple(pair) for pair in data[key]]
    if data.get("auto_converge") is not None:
        data["auto_converge"] = tuple(data["auto_converge"])
    return Plan(**data)


def store_plan(job: dict[str, Any], plan: Plan) -> None:
    job["plan"] = asdict(plan)


def snapshot_of(job: Mapping[str, Any], now: float) -> Snapshot:
    return evaluate(plan_of(job), now)


def open_jobs(state: State) -> list[str]:
    """The keys of the jobs not settled yet. Kept in the state, so that settling and listing look
    at the jobs that run, not at every job ever made (10,000 of them in a scale run)."""
    found = state.get("open")
    if found is None:  # a state written before the list was kept
        found = state["open"] = [key for key, job in state["jobs"].items() if not job.get("settled")]
    return list(found)


def add_job(state: State, key: str, job: dict[str, Any]) -> None:
    open_jobs(state)
    state["jobs"][key] = job
    if key not in state["open"]:
        state["open"].append(key)


def settle(state: State, now: float) -> None:
    """Apply the effects of every job that has finished by `now` to the hosts' domains."""
    still = []
    for key in open_jobs(state):
        job = state["jobs"].get(key)
        if job is None or job.get("settled"):
            continue
        snap = snapshot_of(job, now)
        if snap.outcome in ("active", "postcopy"):
            still.append(key)
            continue
        _finish(state, job, snap)
    state["open"] = still


def _finish(state: State, job: dict[str, Any], snap: Snapshot) -> None:
    source = state["hosts"][job["source"]]["domains"]
    destination = state["hosts"][job["destination"]]["domains"]
    record = source.get(job["domain"])
    flags = set(job["flags"])
    job.update(settled=True, outcome=snap.outcome, finishedAt=snap.time)
    if record is None:  # removed by hand meanwhile; nothing left to move
        return
    if snap.outcome == "completed":
        # Arriving on its own shut-off definition, the domain keeps it: libvirt swaps only the live state.
        kept = destination.get(job["target"])
        defined = kept is not None and kept["uuid"] == record["uuid"] and kept["persistent"]
        moved = dict(record, name=job["target"], persistent="persistDest" in flags or job["offline"] or defined)
        moved["state"] = "shutoff" if job["offline"] else ("paused" if "paused" in flags else "running")
        destination[job["target"]] = moved
        if "undefineSource" in flags or not record["persistent"]:
            del source[job["domain"]]
        else:
            record["state"] = "shutoff"
    elif snap.outcome == "cancelled":
        record["state"] = job.get("stateBefore", "running")
    elif snap.failed_side == "source":
        record["state"] = "crashed"
        job["error"] = "the source domain's process died during migration"
    elif snap.postcopy:
        # Post-copy lost its destination: the source holds stale memory and must not run.
        record["state"] = "paused"
        job["error"] = "destination died during post-copy; the domain cannot be recovered"
    else:
        record["state"] = job.get("stateBefore", "running")
        job["error"] = "the destination died during migration"


def memory_bytes(record: Mapping[str, Any]) -> int:
    return int(record["memoryMiB"]) * MiB
