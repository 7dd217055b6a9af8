"""The queue, visible: a waiting migration shows its place and the limit it waits for; aborting or
deleting a waiting one frees its place; maxInbound and the cluster-wide limit hold."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import HANDLERS, NS, host, migration, until, wait_phase, where

SLOW = {"memoryMiB": 4096}  # about 4 s at 1000 MiB/s: long enough to queue behind


def status(kube: ApiServer, name: str) -> dict[str, Any]:
    return dict((kube.read("domainmigrations", name, NS) or {}).get("status") or {})


def waiting(kube: ApiServer, name: str) -> bool:
    return status(kube, name).get("reason") == "WaitingForSlot"


async def test_waiting_migrations_show_their_place_and_an_abort_frees_it(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    domains = [{"name": n, **SLOW} for n in ("web", "db", "cache")]
    kube.apply(host("host-a", world, domains, linkMiBps=1000, limits={"maxOutbound": 1}))
    kube.apply(host("host-b", world, linkMiBps=1000))
    kube.apply(migration("web", domain="web"))
    await until(lambda: status(kube, "web").get("phase") in ("Validating", "Preparing", "Migrating"))
    kube.apply(migration("db", domain="db"))
    await until(lambda: waiting(kube, "db"))
    kube.apply(migration("cache", domain="cache"))
    await until(lambda: waiting(kube, "cache") and status(kube, "cache").get("queuePosition") == 2)
    assert status(kube, "db")["queuePosition"] == 1
    assert "maxOutbound is 1" in status(kube, "cache")["message"] and "place 2" in status(kube, "cache")["message"]
    kube.patch_object("domainmigrations", "db", {"spec": {"abort": True}}, NS)
    aborted = await wait_phase(kube, "db", {"Aborted", "Failed", "Succeeded"})
    assert aborted["status"]["phase"] == "Aborted" and "nothing moved" in aborted["status"]["message"]
    await until(lambda: status(kube, "cache").get("queuePosition") in (1, None))
    done = await wait_phase(kube, "cache", {"Succeeded", "Failed", "Aborted"}, within=40)
    assert done["status"]["phase"] == "Succeeded" and done["status"].get("queuePosition") is None
    assert where(world, "db") == {"host-a": "running"}


async def test_deleting_a_waiting_migration_frees_its_place(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    domains = [{"name": n, **SLOW} for n in ("web", "db", "cache")]
    kube.apply(host("host-a", world, domains, linkMiBps=1000, limits={"maxOutbound": 1}))
    kube.apply(host("host-b", world, linkMiBps=1000))
    for name in ("web", "db", "cache"):
        kube.apply(migration(name, domain=name))
        await until(lambda n=name: status(kube, n).get("phase") is not None)  # type: ignore[misc]
    await until(lambda: status(kube, "cache").get("queuePosition") == 2)
    kube.delete_object("domainmigrations", "db", NS)
    await until(lambda: kube.read("domainmigrations", "db", NS) is None)
    await until(lambda: status(kube, "cache").get("queuePosition") in (1, None))
    assert (await wait_phase(kube, "cache", {"Succeeded"}, within=40))["status"]["phase"] == "Succeeded"
    assert where(world, "db") == {"host-a": "running"}


async def test_max_inbound_queues_migrations_to_one_host(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "web", **SLOW}], linkMiBps=1000))
    kube.apply(host("host-c", world, [{"name": "db", **SLOW}], linkMiBps=1000))
    kube.apply(host("host-b", world, linkMiBps=1000, limits={"maxInbound": 1}))
    kube.apply(migration("web", domain="web"))
    await until(lambda: status(kube, "web").get("phase") in ("Validating", "Preparing", "Migrating"))
    kube.apply(migration("db", domain="db", source="host-c"))
    await until(lambda: waiting(kube, "db"))
    assert "1 migrations inbound to host-b already run (maxInbound is 1)" in status(kube, "db")["message"]
    assert status(kube, "db")["queuePosition"] == 1
    assert (await wait_phase(kube, "db", {"Succeeded"}, within=40))["status"]["phase"] == "Succeeded"


@pytest.fixture
async def one_at_a_time(
    kube: ApiServer, operator_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[KopfOperator]:
    monkeypatch.setenv("DOMIG_MAX_PARALLEL", "1")  # the handlers module is executed afresh per operator
    async with KopfOperator(kube, HANDLERS) as op:
        yield op


async def test_the_cluster_wide_limit_queues_across_hosts(
    kube: ApiServer, world: str, one_at_a_time: KopfOperator
) -> None:
    kube.apply(host("host-a", world, [{"name": "web", **SLOW}], linkMiBps=1000))
    kube.apply(host("host-c", world, [{"name": "db", **SLOW}], linkMiBps=1000))
    kube.apply(host("host-b", world, linkMiBps=1000))
    kube.apply(host("host-d", world, linkMiBps=1000))
    kube.apply(migration("web", domain="web"))
    await until(lambda: status(kube, "web").get("phase") in ("Validating", "Preparing", "Migrating"))
    kube.apply(migration("db", domain="db", source="host-c", destination="host-d"))
    await until(lambda: waiting(kube, "db"))
    assert "in the cluster already run (the cluster-wide limit is 1)" in status(kube, "db")["message"]
    assert (await wait_phase(kube, "db", {"Succeeded"}, within=40))["status"]["phase"] == "Succeeded"


async def test_a_migration_deep_in_the_queue_writes_its_place_when_it_has_halved_not_at_every_start(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    """Twelve wait behind one another (maxOutbound: 1); the last one's place goes 12, 11, ... 1, and
    its status is written when the place has halved (12, 6, 3, 1 at most), not twelve times: at
    10,000 waiting, every start would otherwise rewrite every waiting migration's status."""
    count = 13
    domains = [{"name": f"vm-{i:02d}", "memoryMiB": 4096 if i == 0 else 16} for i in range(count)]  # one slow
    kube.apply(host("host-a", world, domains, linkMiBps=1000, limits={"maxOutbound": 1}))
    kube.apply(host("host-b", world, linkMiBps=1000))
    for i in range(count):
        kube.apply(migration(f"m-{i:02d}", domain=f"vm-{i:02d}"))
        await until(lambda i=i: status(kube, f"m-{i:02d}").get("phase") is not None)  # type: ignore[misc]
    last = f"m-{count - 1:02d}"
    done = await wait_phase(kube, last, {"Succeeded", "Failed", "Aborted"}, within=60)
    assert done["status"]["phase"] == "Succeeded" and done["status"].get("queuePosition") is None
    places = [
        (r.data.get("status") or {}).get("queuePosition")
        for r in kube.log()
        if r.name == last and r.subresource == "status" and isinstance(r.data, dict)
    ]
    shown = [p for p in places if p is not None]
    assert shown[0] >= 6, places  # it started deep (the first one takes 4 s)
    changes = [(earlier, later) for earlier, later in itertools.pairwise(shown) if later != earlier]
    assert all(later <= earlier // 2 for earlier, later in changes), places
    assert len(shown) <= 6, places


async def test_a_waiting_migration_holds_no_task_of_its_own(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    """Waiting costs a small object in the waiting room, not a daemon: 10,000 waiting migrations
    each held a kopf daemon (and its tasks) before, most of the operator's memory."""
    many = 40
    domains = [{"name": f"vm-{i}", "memoryMiB": 16384} for i in range(many + 1)]
    kube.apply(host("host-a", world, domains, linkMiBps=100, limits={"maxOutbound": 1}))
    kube.apply(host("host-b", world, linkMiBps=100))
    kube.apply(migration("first", domain="vm-0"))
    await until(lambda: status(kube, "first").get("phase") == "Migrating", within=30)
    await asyncio.sleep(6)  # kopf's per-object workers end after 5 s without events (its idle_timeout)
    before = len(asyncio.all_tasks())
    for i in range(1, many + 1):
        kube.apply(migration(f"m-{i}", domain=f"vm-{i}"))
    await until(lambda: all(waiting(kube, f"m-{i}") for i in range(1, many + 1)), within=60)
    await asyncio.sleep(6)
    assert status(kube, f"m-{many}")["queuePosition"] == many
    assert len(asyncio.all_tasks()) - before < 5
    kube.patch_object("domainmigrations", "first", {"spec": {"abort": True}}, NS)
    assert (await wait_phase(kube, "first", {"Aborted", "Failed", "Succeeded"}, within=30))["status"][
        "phase"
    ] == "Aborted"
    await until(lambda: status(kube, "m-1").get("phase") not in (None, "Pending"), within=30)
