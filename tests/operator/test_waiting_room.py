"""The waiting room on its own: it looks only while this replica's daemons run (kopf stops them
all when the replica pauses for another that leads), and a look at a migration whose host is
missing says so once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf

from controller.backends.registry import DriverTable
from controller.engine.admission import Admission
from controller.operator.config import OperatorConfig
from controller.operator.context import Context, Indexes
from controller.operator.kube import Kube
from controller.operator.waiting import WaitingRoom


class StatusLog:
    """Kube's status patch, recorded: all the waiting room writes."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def patch_status(self, plural: str, name: str, namespace: str | None, patch: dict[str, Any]) -> None:
        self.patches.append((name, patch))


def room_with(hosts: dict[str, Any]) -> tuple[WaitingRoom, StatusLog]:
    log = StatusLog()
    indexes = Indexes(hosts=hosts, active={}, policies={}, namespace_labels={})
    ctx = Context(
        config=OperatorConfig(host_retry=0.2),
        kube=cast(Kube, log),
        drivers=DriverTable(),
        admission=Admission(5, lambda name: cast(Any, None)),
        indexes=indexes,
    )
    return WaitingRoom(ctx), log


def body(name: str, source: str) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "domig.dev/v1alpha1",
            "kind": "DomainMigration",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "generation": 1},
            "spec": {"domain": "web", "source": source, "destination": "host-b"},
        }
    )


LOGGER = logging.getLogger("test")


async def test_a_paused_replica_looks_at_nothing_until_its_daemons_run_again() -> None:
    # A host of another namespace's list: its index entry is all the room needs to be "closed".
    room, log = room_with({"host-z": [{"metadata": {"name": "host-z"}, "spec": {"driver": "test"}}]})
    room.see(None, body("m", "host-a"), LOGGER)
    await asyncio.sleep(0.3)
    assert log.patches == []  # no presence daemon runs: paused
    room.opened("host-z")
    for _ in range(100):
        if log.patches:
            break
        await asyncio.sleep(0.02)
    assert [(name, patch["reason"]) for name, patch in log.patches] == [("m", "HostNotFound")]
    assert "no HypervisorHost named 'host-a'" in log.patches[0][1]["message"]
    room.closed("host-z")
    room.see(None, body("n", "host-a"), LOGGER)
    await asyncio.sleep(0.6)  # three host_retry periods: "m" would be looked at again if open
    assert [name for name, _ in log.patches] == ["m"]
    room.stop()


async def test_with_no_host_at_all_it_says_so_wherever_it_runs() -> None:
    room, log = room_with({})
    room.see(None, body("m", "host-a"), LOGGER)
    for _ in range(100):
        if log.patches:
            break
        await asyncio.sleep(0.02)
    assert [(name, patch["phase"], patch["reason"]) for name, patch in log.patches] == [
        ("m", "Pending", "HostNotFound")
    ]
    room.stop()


async def test_one_that_admission_lets_start_is_looked_at_before_any_newcomer() -> None:
    """Ten thousand created at once each wait for a first look; one admitted meanwhile must not
    wait behind them all, its slot held (the 10,000 run stood still for two minutes so)."""
    room, log = room_with({"host-z": [{"metadata": {"name": "host-z"}, "spec": {"driver": "test"}}]})
    room = WaitingRoom(room.ctx, at_once=1)  # one look at a time: the order shows
    for i in range(30):
        room.see(None, body(f"m-{i:02d}", "host-a"), LOGGER)
    room.waiters["default/m-29"].set()  # admission's signal
    room.opened("host-z")
    for _ in range(100):
        if len(log.patches) >= 2:
            break
        await asyncio.sleep(0.02)
    assert [name for name, _ in log.patches[:2]] == ["m-29", "m-00"]
    room.stop()
