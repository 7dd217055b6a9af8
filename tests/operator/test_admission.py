"""One migration per domain, host and cluster limits, and hosts that are missing or closed."""

from __future__ import annotations

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import NS, host, migration, until, wait_phase, world_state

TWO = [{"name": "web", "memoryMiB": 4096}, {"name": "db", "memoryMiB": 4096}]


def phase_of(kube: ApiServer, name: str) -> tuple[str | None, str | None]:
    status = (kube.read("domainmigrations", name, NS) or {}).get("status", {})
    return status.get("phase"), status.get("reason")


async def test_a_second_migration_of_the_same_domain_is_busy(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 8192}], linkMiBps=500))
    kube.apply(host("host-b", world, linkMiBps=500))
    kube.apply(migration("first"))
    await until(lambda: phase_of(kube, "first")[0] == "Migrating")
    kube.apply(migration("second"))
    done = await wait_phase(kube, "second", {"Failed"})
    assert done["status"]["reason"] == "Busy"
    assert "already being migrated by DomainMigration default/first" in done["status"]["message"]
    assert (await wait_phase(kube, "first", {"Succeeded"}, within=40))["status"]["phase"] == "Succeeded"
    assert world_state(world)["migrateCalls"] == 1


async def test_host_limits_queue_migrations_first_come_first_served(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, TWO, linkMiBps=1000, limits={"maxOutbound": 1}))
    kube.apply(host("host-b", world, linkMiBps=1000))
    kube.apply(migration("web", domain="web"))
    await until(lambda: phase_of(kube, "web")[0] in ("Validating", "Preparing", "Migrating"))
    kube.apply(migration("db", domain="db"))
    await until(lambda: phase_of(kube, "db") == ("Pending", "WaitingForSlot"))
    message = kube.read("domainmigrations", "db", NS)["status"]["message"]  # type: ignore[index]
    assert "1 migrations outbound from host-a already run (maxOutbound is 1)" in message
    conditions = {c["type"]: c["status"] for c in kube.read("domainmigrations", "db", NS)["status"]["conditions"]}  # type: ignore[index]
    assert conditions["Reconciling"] == "True" and conditions["Ready"] == "False"
    first = await wait_phase(kube, "web", {"Succeeded"}, within=30)
    second = await wait_phase(kube, "db", {"Succeeded"}, within=30)
    started = {
        name: next(t["time"] for t in obj["status"]["phaseTransitionTimestamps"] if t["phase"] == "Validating")
        for name, obj in (("web", first), ("db", second))
    }
    ended = next(t["time"] for t in first["status"]["phaseTransitionTimestamps"] if t["phase"] == "Succeeded")
    assert started["db"] >= ended > started["web"]


async def test_a_missing_host_keeps_it_pending_until_it_appears(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 256}]))
    kube.apply(migration("m"))
    await until(lambda: phase_of(kube, "m") == ("Pending", "HostNotFound"))
    assert (
        "spec.destination: no HypervisorHost named 'host-b'"
        in kube.read("domainmigrations", "m", NS)["status"]["message"]
    )  # type: ignore[index]
    kube.apply(host("host-b", world))
    assert (await wait_phase(kube, "m", {"Succeeded"}))["status"]["phase"] == "Succeeded"


async def test_a_host_that_does_not_allow_the_namespace(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 256}]))
    kube.apply(host("host-b", world, allowedNamespaces=["prod"]))
    kube.apply(migration("m"))
    done = await wait_phase(kube, "m", {"Failed"})
    assert done["status"]["reason"] == "NamespaceNotAllowed"
    assert "does not allow namespace default (allowedNamespaces: prod)" in done["status"]["message"]
    assert world_state(world)["migrateCalls"] == 0


async def test_hosts_are_probed_and_an_unreachable_one_is_not_ready(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, TWO))
    kube.apply(host("host-x", world, faults={"unreachable": True}))  # spec.test.faults

    def probed(name: str) -> dict[str, object] | None:
        status = (kube.read("hypervisorhosts", name) or {}).get("status", {})
        return status if "lastProbeTime" in status else None

    a = await until(lambda: probed("host-a"))
    assert a["reachable"] is True and a["hostname"] == "host-a" and a["domainCount"] == 2
    assert a["conditions"][0]["type"] == "Ready" and a["conditions"][0]["status"] == "True"  # type: ignore[index]
    x = await until(lambda: probed("host-x"))
    assert x["reachable"] is False and x["conditions"][0]["status"] == "False"  # type: ignore[index]
    assert "cannot connect to host-x" in x["message"]  # type: ignore[operator]
    kube.apply(migration("m", domain="web", destination="host-x"))
    await until(lambda: phase_of(kube, "m") == ("Pending", "HostNotReady"))


async def test_a_host_in_maintenance_takes_no_new_migrations_until_it_ends(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 256}]))
    kube.apply(host("host-b", world, maintenance=True))
    kube.apply(migration("m"))
    await until(lambda: phase_of(kube, "m") == ("Pending", "HostInMaintenance"))
    message = kube.read("domainmigrations", "m", NS)["status"]["message"]  # type: ignore[index]
    assert "HypervisorHost host-b is in maintenance (spec.maintenance)" in message
    assert world_state(world).get("migrateCalls", 0) == 0
    kube.patch_object("hypervisorhosts", "host-b", {"spec": {"maintenance": False}})
    done = await wait_phase(kube, "m", {"Succeeded", "Failed"}, within=30)
    assert done["status"]["phase"] == "Succeeded"


async def test_domains_may_leave_a_host_in_maintenance(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 256}], maintenance=True))
    kube.apply(host("host-b", world))
    kube.apply(migration("m"))
    assert (await wait_phase(kube, "m", {"Succeeded", "Failed"}, within=30))["status"]["phase"] == "Succeeded"
