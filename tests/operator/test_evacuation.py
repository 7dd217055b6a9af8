"""Emptying a host: spec.evacuate makes one DomainMigration per domain, placed within every limit,
counted in the host's status; what cannot be placed is said and the rest go on; evacuate back to
false aborts what runs and leaves every domain running on one host."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from controller.operator.host_evacuation import FROM
from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import NS, host, until, world_state

SIZES = (256, 512, 1024, 2048)  # MiB: twenty domains of these sizes take 19,200 MiB
COUNT = 20
DESTINATIONS = {"host-b": 6144, "host-c": 8192, "host-d": 8192}  # 22,528 MiB: room, but not a lot


def status_of(kube: ApiServer, name: str) -> dict[str, Any]:
    return dict((kube.read("hypervisorhosts", name) or {}).get("status") or {})


def evacuation(kube: ApiServer, name: str = "host-a") -> dict[str, Any]:
    return dict(((kube.read("hypervisorhosts", name) or {}).get("status") or {}).get("evacuation") or {})


def active_memory(state: dict[str, Any], name: str) -> int:
    domains = state["hosts"].get(name, {}).get("domains", {}).values()
    return sum(d["memoryMiB"] for d in domains if d["state"] in ("running", "paused"))


def running_where(state: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, record in state["hosts"].items():
        for domain, d in record["domains"].items():
            if d["state"] in ("running", "paused"):
                found.setdefault(domain, []).append(name)
    return found


async def test_a_host_is_emptied_within_the_limits_and_nothing_is_overcommitted(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    domains = [{"name": f"vm-{i:02d}", "memoryMiB": SIZES[i % 4]} for i in range(COUNT)]
    kube.apply(host("host-a", world, domains, linkMiBps=4000, limits={"maxOutbound": 2}))
    for name, size in DESTINATIONS.items():
        kube.apply(host(name, world, memoryMiB=size, linkMiBps=4000, limits={"maxInbound": 2}))
    await until(lambda: all(status_of(kube, n).get("reachable") for n in DESTINATIONS))
    kube.patch_object("hypervisorhosts", "host-a", {"spec": {"evacuate": True}})
    most_out, most_in, fullest = 0, Counter[str](), Counter[str]()
    async with asyncio.timeout(120):
        while evacuation(kube).get("phase") not in ("Completed", "Incomplete"):
            state = world_state(world)
            jobs = [j for j in state["jobs"].values() if not j.get("settled")]
            most_out = max(most_out, sum(1 for j in jobs if j["source"] == "host-a"))
            for name in DESTINATIONS:
                most_in[name] = max(most_in[name], sum(1 for j in jobs if j["destination"] == name))
                fullest[name] = max(fullest[name], active_memory(state, name))
            await asyncio.sleep(0.05)
    assert evacuation(kube)["phase"] == "Completed", evacuation(kube)["message"]
    state = world_state(world)
    placed = running_where(state)
    assert sorted(placed) == [d["name"] for d in domains]
    assert all(len(hosts) == 1 and hosts[0] != "host-a" for hosts in placed.values()), placed
    assert "vm-00" not in state["hosts"]["host-a"]["domains"]  # undefineSource: nothing left to start twice
    assert 1 <= most_out <= 2 and all(n <= 2 for n in most_in.values()), (most_out, most_in)
    for name, size in DESTINATIONS.items():
        assert fullest[name] <= size and active_memory(state, name) <= size, (name, fullest[name], size)
    said = evacuation(kube)
    counts = (said["total"], said["done"], said["inFlight"], said["failed"], said["unplaceable"])
    assert counts == (COUNT, COUNT, 0, 0, 0)
    assert said["message"] == f"the host runs no domain: {COUNT} of {COUNT} moved"
    entries = {e["domain"]: e for e in said["migrations"]}
    assert set(entries) == {d["name"] for d in domains}
    assert all(e["phase"] == "Succeeded" and e["destination"] == placed[d][0] for d, e in entries.items())
    made = kube.list_objects("domainmigrations", NS)
    assert len(made) == COUNT and all(m["metadata"]["labels"][FROM] == "host-a" for m in made)
    owners = {o["kind"] + "/" + o["name"] for m in made for o in m["metadata"].get("ownerReferences", [])}
    assert owners == {"HypervisorHost/host-a"}
    assert all("destination" not in m["spec"] for m in made)  # the user's spec stays as made: placed in status


async def test_a_domain_that_fits_nowhere_is_said_and_the_rest_go(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    domains = [{"name": "small", "memoryMiB": 512}, {"name": "huge", "memoryMiB": 16384}, {"name": "mid"}]
    kube.apply(host("host-a", world, domains))
    kube.apply(host("host-b", world, memoryMiB=4096))
    kube.apply(host("host-c", world, memoryMiB=4096))
    kube.apply(host("host-a", world, domains, evacuate=True))
    await until(lambda: evacuation(kube).get("phase") == "Incomplete", within=40)
    said = evacuation(kube)
    assert (said["total"], said["done"], said["unplaceable"], said["inFlight"]) == (3, 2, 1, 0)
    assert "huge cannot be placed (0/3 hosts fit: 2 not enough memory, 1 the source" in said["message"], said
    assert running_where(world_state(world))["huge"] == ["host-a"]
    # Room appears (a bigger host joins): the waiting migration goes, and the evacuation completes.
    kube.apply(host("host-d", world, memoryMiB=32768))
    await until(lambda: evacuation(kube).get("phase") == "Completed", within=40)
    assert running_where(world_state(world))["huge"] == ["host-d"]


async def test_cancelling_aborts_what_runs_and_every_domain_runs_on_one_host(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    domains = [{"name": f"vm-{i}", "memoryMiB": 4096} for i in range(4)]  # 4 s each at 1000 MiB/s
    kube.apply(host("host-a", world, domains, limits={"maxOutbound": 1}))
    kube.apply(host("host-b", world, memoryMiB=65536))
    kube.patch_object("hypervisorhosts", "host-a", {"spec": {"evacuate": True}})
    await until(lambda: evacuation(kube).get("inFlight") == 4 and len(kube.list_objects("domainmigrations", NS)) == 4)
    await until(
        lambda: any(
            (m.get("status") or {}).get("phase") == "Migrating" for m in kube.list_objects("domainmigrations", NS)
        )
    )
    kube.patch_object("hypervisorhosts", "host-a", {"spec": {"evacuate": False}})
    await until(
        lambda: evacuation(kube).get("phase") == "Cancelled" and evacuation(kube).get("inFlight") == 0, within=40
    )
    phases = Counter((m.get("status") or {}).get("phase") for m in kube.list_objects("domainmigrations", NS))
    assert phases["Aborted"] >= 3 and phases["Aborted"] + phases["Succeeded"] == 4, phases
    placed = running_where(world_state(world))
    assert sorted(placed) == [d["name"] for d in domains] and all(len(h) == 1 for h in placed.values()), placed
    assert "cancelled:" in evacuation(kube)["message"]
