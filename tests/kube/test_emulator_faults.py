"""The emulator's fault injection (emulator/faults.py): what a client sees is what a real API server sends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kmock
import pytest

from .emulator import ApiServer
from .emulator.faults import CONCURRENT_WRITES, Faults, Tripwire
from .test_emulator import JSONPATCH, MERGE, TOYS, toy


@pytest.fixture()
async def client(kube: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(kube.server_url) as session:
        yield session


async def test_500_is_an_apiserver_status_and_stores_nothing(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    kube.create(toy())
    kube.faults = Faults(seed=1, read_errors=1.0, write_errors=1.0)
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 2}}, headers=MERGE)
    assert rsp.status == 500
    assert await rsp.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Internal error occurred: etcdserver: leader changed",
        "reason": "InternalError",
        "details": {"causes": [{"message": "etcdserver: leader changed"}]},
        "code": 500,
    }
    assert (await client.get(f"{TOYS}/t1")).status == 500
    kube.faults = None
    assert kube.read("toys", "t1", "default")["spec"]["replicas"] == 1
    assert not kube.server_errors  # injected: not the emulator's own failure


async def test_a_conflict_is_a_real_concurrent_write(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    rv = kube.create(toy())["metadata"]["resourceVersion"]
    faults = kube.faults = Faults(seed=1, conflicts=1.0)
    # No precondition: a real server cannot refuse it for a conflict, and neither do we.
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 2}}, headers=MERGE)
    assert rsp.status == 200 and not faults.injected
    rv = (await rsp.json())["metadata"]["resourceVersion"]
    # A merge patch naming the resourceVersion: another writer came first, so 409.
    rsp = await client.patch(
        f"{TOYS}/t1", json={"metadata": {"resourceVersion": rv}, "spec": {"replicas": 3}}, headers=MERGE
    )
    assert rsp.status == 409 and (await rsp.json())["reason"] == "Conflict"
    stored = kube.read("toys", "t1", "default")
    assert stored["spec"]["replicas"] == 2 and stored["metadata"]["annotations"][CONCURRENT_WRITES] == "1"
    assert int(stored["metadata"]["resourceVersion"]) > int(rv)
    # kopf's JSON patch tests the resourceVersion: the test fails, and a real server says 422.
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": stored["metadata"]["resourceVersion"]},
           {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]  # fmt: skip
    rsp = await client.patch(f"{TOYS}/t1", json=ops, headers=JSONPATCH)
    assert rsp.status == 422
    assert not kube.read("toys", "t1", "default")["metadata"].get("finalizers")
    # A generated name that is taken.
    rsp = await client.post(TOYS, json={**toy(), "metadata": {"generateName": "t-"}})
    body = await rsp.json()
    assert rsp.status == 409 and body["reason"] == "AlreadyExists" and body["details"]["name"].startswith("t-")
    assert dict(faults.injected) == {
        "409 Conflict (resourceVersion)": 1,
        "422 conflict (JSON patch test)": 1,
        "409 AlreadyExists (generateName)": 1,
    }


async def test_watches_are_dropped_mid_stream_and_expired(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    for i in range(10):
        kube.create(toy(f"t{i}"))
    kube.faults = Faults(seed=3, watch_drops=0.3)
    rsp = await client.get("/apis/example.domig.dev/v1/toys?watch=true")
    seen = 0
    with pytest.raises(aiohttp.ClientPayloadError):
        async for _ in rsp.content:  # the 10 initial ADDED events, cut before one of them
            seen += 1
    assert seen < 10 and kube.faults.injected["watch dropped"] == 1
    kube.faults = Faults(seed=3, watch_expiries=1.0)
    rsp = await client.get("/apis/example.domig.dev/v1/toys?watch=true&resourceVersion=1")
    [event] = [json.loads(line) async for line in rsp.content]
    assert event["type"] == "ERROR" and event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
    assert not kube.server_errors


def test_the_seed_decides(kube: ApiServer) -> None:
    def decisions(seed: int) -> list[Any]:
        faults = Faults(seed=seed, read_errors=0.3, write_errors=0.3)
        request = kmock.Request(method="GET", action=kmock.action.LIST)
        return [faults.decide(request) for _ in range(50)]

    assert decisions(7) == decisions(7) != decisions(8)
    assert 5 < decisions(7).count("error") < 30


async def test_a_tripwire_acts_once_before_or_after_the_write(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    kube.create(toy())
    seen: list[int | None] = []

    def replicas() -> None:
        seen.append((kube.read("toys", "t1", "default") or {})["spec"]["replicas"])

    def patches(request: kmock.Request) -> bool:
        return request.method == kmock.method.PATCH

    kube.tripwires.append(Tripwire(patches, replicas))  # before: the request is not served
    with pytest.raises(aiohttp.ClientError):
        await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 2}}, headers=MERGE)
    kube.tripwires.append(Tripwire(patches, replicas, after=True))
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 3}}, headers=MERGE)
    assert rsp.status == 200
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 4}}, headers=MERGE)  # both fired already
    assert rsp.status == 200
    assert seen == [1, 3]
