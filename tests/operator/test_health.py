"""Health that settles: kstatus and Argo CD say what the outcome is, whatever is edited when.

Each case runs the operator for real and reads the object as Flux (kstatus) and Argo CD (the
health Lua of manifests/argocd) would: `observedGeneration` catches up with every edit within
seconds, Current/Healthy for Succeeded, Failed/Degraded for Failed and Aborted, InProgress/
Progressing only while it runs or waits.
"""

from __future__ import annotations

from typing import Any

from tests.deploy.test_manifests import argo_health
from tests.health.kstatus import kstatus
from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import HANDLERS, NS, host, migration, until, wait_phase

WEB = [{"name": "web", "memoryMiB": 1024, "dirtyRateMiBps": 10}]
SLOW = [{"name": "web", "memoryMiB": 8192, "dirtyRateMiBps": 10}]


def health(kube: ApiServer, name: str) -> tuple[str, str, dict[str, Any]]:
    obj = kube.read("domainmigrations", name, NS)
    assert obj is not None
    return kstatus(obj)[0], argo_health("DomainMigration", obj)[0], obj


def settled(kube: ApiServer, name: str) -> bool:
    obj = kube.read("domainmigrations", name, NS) or {}
    status = obj.get("status") or {}
    generation = obj["metadata"]["generation"]
    return status.get("observedGeneration") == generation and all(
        c.get("observedGeneration") == generation for c in status.get("conditions") or []
    )


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj["status"]["conditions"]}


async def test_succeeded_is_current_and_healthy_and_stays_so_after_edits(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, WEB))
    kube.apply(host("host-b", world))
    kube.apply(migration("m"))
    await wait_phase(kube, "m", {"Succeeded"})
    await until(lambda: settled(kube, "m"))
    assert health(kube, "m")[:2] == ("Current", "Healthy")
    ready_since = {c["type"]: c["lastTransitionTime"] for c in health(kube, "m")[2]["status"]["conditions"]}

    # A live field after the end: seen, nothing to do.
    kube.patch_object("domainmigrations", "m", {"spec": {"params": {"bandwidth": 50}}}, NS)
    await until(lambda: settled(kube, "m"), within=5)
    assert health(kube, "m")[:2] == ("Current", "Healthy")

    # A field that cannot change: seen, refused in a condition, the outcome unchanged.
    kube.patch_object("domainmigrations", "m", {"spec": {"domain": "other"}}, NS)
    await until(lambda: settled(kube, "m"), within=5)
    status, argo, obj = health(kube, "m")
    assert (status, argo) == ("Current", "Healthy"), obj["status"]
    assert conditions(obj)["Ready"] == "True" and conditions(obj)["SpecChangeRefused"] == "True"
    assert obj["metadata"]["generation"] == 3 and obj["status"]["observedGeneration"] == 3
    # Conditions that did not flip keep their transition times.
    after = {c["type"]: c["lastTransitionTime"] for c in obj["status"]["conditions"]}
    kept = {kind: since for kind, since in ready_since.items() if kind != "SpecChangeRefused"}  # it flipped
    assert {kind: after[kind] for kind in kept} == kept


async def test_failed_is_failed_and_degraded_and_an_edit_does_not_hide_it(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, WEB))
    kube.apply(host("host-b", world))
    kube.apply(migration("m", domain="absent"))
    await wait_phase(kube, "m", {"Failed"})
    await until(lambda: settled(kube, "m"))
    assert health(kube, "m")[:2] == ("Failed", "Degraded")
    kube.patch_object("domainmigrations", "m", {"spec": {"abort": True}}, NS)
    await until(lambda: settled(kube, "m"), within=5)
    assert health(kube, "m")[:2] == ("Failed", "Degraded")


async def test_a_running_migration_observes_its_edits_and_stays_in_progress(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, SLOW, linkMiBps=200))
    kube.apply(host("host-b", world, linkMiBps=200))
    kube.apply(migration("m"))
    await wait_phase(kube, "m", {"Migrating"})
    assert health(kube, "m")[:2] == ("InProgress", "Progressing")
    kube.patch_object("domainmigrations", "m", {"spec": {"params": {"bandwidth": 100}}}, NS)
    await until(lambda: settled(kube, "m"), within=5)
    kube.patch_object("domainmigrations", "m", {"spec": {"destination": "host-c"}}, NS)
    await until(lambda: settled(kube, "m"), within=5)
    status, argo, obj = health(kube, "m")
    assert (status, argo) == ("InProgress", "Progressing")
    assert conditions(obj)["SpecChangeRefused"] == "True" and conditions(obj)["Reconciling"] == "True"
    kube.patch_object("domainmigrations", "m", {"spec": {"abort": True}}, NS)
    await wait_phase(kube, "m", {"Aborted"})
    await until(lambda: settled(kube, "m"), within=5)
    assert health(kube, "m")[:2] == ("Failed", "Degraded")


async def test_a_waiting_migration_observes_its_edits(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, WEB))
    kube.apply(migration("m"))  # host-b does not exist yet: Pending
    await until(
        lambda: (kube.read("domainmigrations", "m", NS) or {}).get("status", {}).get("reason") == "HostNotFound"
    )
    assert health(kube, "m")[:2] == ("InProgress", "Progressing")
    kube.patch_object("domainmigrations", "m", {"spec": {"params": {"downtime": 300}}}, NS)
    await until(lambda: settled(kube, "m"), within=5)
    assert health(kube, "m")[:2] == ("InProgress", "Progressing")


async def test_an_edit_made_while_no_operator_runs_is_observed_at_start(
    kube: ApiServer, world: str, operator_env: dict[str, str]
) -> None:
    kube.apply(host("host-a", world, WEB))
    kube.apply(host("host-b", world))
    async with KopfOperator(kube, HANDLERS):
        kube.apply(migration("m"))
        await wait_phase(kube, "m", {"Succeeded"})
        await until(lambda: settled(kube, "m"))
    kube.patch_object("domainmigrations", "m", {"spec": {"flags": ["live", "persistDest"]}}, NS)
    assert health(kube, "m")[:2] == ("InProgress", "Progressing")  # generation 2 not observed yet
    async with KopfOperator(kube, HANDLERS):
        await until(lambda: settled(kube, "m"), within=10)
        assert health(kube, "m")[:2] == ("Current", "Healthy")
