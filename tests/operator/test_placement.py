"""A migration without spec.destination: the operator chooses a host with room, says why in the
Scheduled condition, and when nothing fits says why host by host, waits, and starts once one does."""

from __future__ import annotations

from typing import Any

from controller.backends.test.driver import TestDriver
from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import NS, host, migration, until, wait_phase, where


def status(kube: ApiServer, name: str) -> dict[str, Any]:
    return dict((kube.read("domainmigrations", name, NS) or {}).get("status") or {})


def condition(kube: ApiServer, name: str, kind: str) -> dict[str, Any]:
    return next((c for c in status(kube, name).get("conditions", []) if c["type"] == kind), {})


def running_on(world: str, domain: str = "web") -> list[str]:
    return sorted(h for h, state in where(world, domain).items() if state == "running")


def unplaced(name: str, **spec: Any) -> dict[str, Any]:
    document = migration(name, **spec)
    del document["spec"]["destination"]
    return document


async def test_no_destination_lands_on_the_host_with_room(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 2048, "cpuModel": "EPYC"}]))
    kube.apply(host("host-b", world, memoryMiB=1024))  # too small
    kube.apply(host("host-c", world, memoryMiB=8192))
    kube.apply(host("host-d", world, memoryMiB=16384, maintenance=True))  # the most room, but closed
    kube.apply(host("host-e", world, memoryMiB=16384, cpuModel="Skylake-Server"))  # room, another CPU
    kube.apply(unplaced("web"))
    done = await wait_phase(kube, "web", {"Succeeded", "Failed", "Aborted"})
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    assert running_on(world) == ["host-c"]
    assert done["status"]["destination"] == "host-c"
    scheduled = condition(kube, "web", "Scheduled")
    assert scheduled["status"] == "True" and scheduled["message"].startswith("host-c: ")
    fits = {fit["host"]: fit for fit in done["status"]["placement"]["hosts"]}
    assert fits["host-b"] == {"host": "host-b", "fits": False, "reason": "not enough memory"}
    assert fits["host-d"]["reason"] == "in maintenance" and fits["host-a"]["reason"] == "the source"
    assert fits["host-e"]["reason"] == "CPU incompatible"
    assert fits["host-c"]["fits"] is True
    # The user's spec still names no destination, and no change is said to be refused.
    assert "destination" not in kube.read("domainmigrations", "web", NS)["spec"]
    assert condition(kube, "web", "SpecChangeRefused").get("status") != "True"
    # Edited afterwards (an annotation-free label edit bumps nothing; a live field does): still no refusal.
    kube.patch_object("domainmigrations", "web", {"spec": {"abort": True}}, NS)
    await until(lambda: status(kube, "web").get("observedGeneration") == 2)
    assert condition(kube, "web", "SpecChangeRefused").get("status") != "True"


async def test_a_selector_narrows_the_choice(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "web"}]))
    for name, rack in (("host-b", "r1"), ("host-c", "r2"), ("host-d", "r2")):
        document = host(name, world)
        document["metadata"]["labels"] = {"rack": rack}
        kube.apply(document)
    kube.apply(unplaced("web", destinationSelector={"rack": "r2"}))
    done = await wait_phase(kube, "web", {"Succeeded", "Failed", "Aborted"})
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    # Equal room and no migrations in flight on either: the first by name.
    assert done["status"]["destination"] == "host-c" and running_on(world) == ["host-c"]
    fits = {fit["host"]: fit["reason"] for fit in done["status"]["placement"]["hosts"]}
    assert fits["host-b"] == "not matching destinationSelector"


async def test_fitting_nowhere_waits_with_each_hosts_reason_and_starts_when_memory_frees(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 2048}]))
    kube.apply(host("host-b", world, memoryMiB=1024))
    kube.apply(host("host-c", world, [{"name": "big", "memoryMiB": 3072}], memoryMiB=4096))
    kube.apply(host("host-d", world, memoryMiB=8192, maintenance=True))
    kube.apply(
        {
            "apiVersion": "domig.dev/v1alpha1",
            "kind": "HypervisorHost",
            "metadata": {"name": "xen-1"},
            "spec": {"driver": "xend", "uri": "http://127.0.0.1:9/"},
        }
    )
    kube.apply(unplaced("web"))
    await until(lambda: status(kube, "web").get("reason") == "Unschedulable")
    said = status(kube, "web")
    assert said["phase"] == "Pending"
    assert said["message"].startswith(
        "0/5 hosts fit: 2 not enough memory, 1 in maintenance, 1 other driver, 1 the source"
    ), said["message"]
    scheduled = condition(kube, "web", "Scheduled")
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
    assert running_on(world) == ["host-a"]
    # Somebody shuts down `big` on host-c: 4 GiB free there now, and the waiting migration goes.
    with TestDriver().world(world).txn() as state:
        state["hosts"]["host-c"]["domains"]["big"]["state"] = "shutoff"
    done = await wait_phase(kube, "web", {"Succeeded", "Failed", "Aborted"})
    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    assert running_on(world) == ["host-c"]
    assert condition(kube, "web", "Scheduled")["status"] == "True"


async def test_a_guest_missing_from_its_source_fails_before_any_choice(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, [{"name": "web"}]))
    kube.apply(host("host-b", world))
    kube.apply(unplaced("ghost", domain="ghost"))
    done = await wait_phase(kube, "ghost", {"Succeeded", "Failed", "Aborted"})
    assert done["status"]["phase"] == "Failed" and done["status"]["reason"] == "DomainNotFound"
    assert done["status"]["message"] == "ghost is not defined on host-a"
