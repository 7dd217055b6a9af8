"""MigrationPolicy through the operator: selected by namespace labels, applied at admission."""

from __future__ import annotations

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import NS, host, migration, wait_phase, where

SPINNER = [{"name": "web", "memoryMiB": 1024, "dirtyRateMiBps": 1500}]


def policy(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "domig.dev/v1alpha1", "kind": "MigrationPolicy", "metadata": {"name": name}, "spec": spec}


async def test_a_policy_for_the_namespace_lets_a_stuck_guest_finish_by_post_copy(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.patch_object("namespaces", NS, {"metadata": {"labels": {"env": "prod"}}})
    kube.apply(policy("prod", selectors={"namespaceSelector": {"env": "prod"}}, allowPostCopy=True, progressTimeout=3))
    kube.apply(policy("other", selectors={"namespaceSelector": {"env": "dev"}}, bandwidthPerMigration=1))
    kube.apply(host("host-a", world, SPINNER))
    kube.apply(host("host-b", world))
    kube.apply(migration("m"))
    done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=40)
    status = done["status"]
    assert status["phase"] == "Succeeded", status["message"]
    assert status["policy"] == "prod" and status["appliedPolicy"]["allowPostCopy"] is True
    assert status["progress"]["mode"] == "PostCopy"
    assert where(world) == {"host-a": "shutoff", "host-b": "running"}


async def test_without_a_matching_policy_the_same_guest_stalls(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(policy("prod", selectors={"namespaceSelector": {"env": "prod"}}, allowPostCopy=True))
    kube.apply(host("host-a", world, SPINNER))
    kube.apply(host("host-b", world))
    kube.apply(migration("m", timeouts={"progress": 3}))
    done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=40)
    assert (done["status"]["phase"], done["status"]["reason"]) == ("Failed", "Stalled")
    assert "policy" not in done["status"] or done["status"]["policy"] is None
    assert where(world) == {"host-a": "running"}
