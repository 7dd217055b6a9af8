"""`allowedNamespaces` on a HypervisorHost: a migration from a namespace it does not list is refused,
naming the host and the namespace, and moves nothing; one from a namespace it lists goes through.

The destination side, the webhook's refusal and the metrics are in test_admission.py,
test_webhook.py and test_metrics.py; here the source side, an empty list, and the choice of a
destination, which passes over hosts that do not allow the namespace.
"""

from __future__ import annotations

from typing import Any

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import host, migration, wait_phase, world_state


def in_namespace(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}


async def test_the_source_must_allow_the_namespace(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}})
    kube.apply(host("host-a", world, [{"name": "web"}, {"name": "db"}], allowedNamespaces=["prod"]))
    kube.apply(host("host-b", world))
    kube.apply(migration("m"))  # in default
    done = await wait_phase(kube, "m", {"Succeeded", "Failed"})
    assert (done["status"]["phase"], done["status"]["reason"]) == ("Failed", "NamespaceNotAllowed")
    assert (
        "HypervisorHost host-a does not allow namespace default (allowedNamespaces: prod)"
        in (done["status"]["message"])
    )
    assert world_state(world)["migrateCalls"] == 0
    kube.apply(in_namespace(migration("m", domain="db"), "prod"))
    done = await kube.wait_for(
        "domainmigrations", "m", "prod", lambda o: o.get("status", {}).get("phase") in ("Succeeded", "Failed")
    )
    assert (kube.read("domainmigrations", "m", "prod") or {})["status"]["phase"] == "Succeeded"


async def test_an_empty_list_allows_no_namespace(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "web"}]))
    kube.apply(host("host-b", world, allowedNamespaces=[]))
    kube.apply(migration("m"))
    done = await wait_phase(kube, "m", {"Succeeded", "Failed"})
    assert done["status"]["reason"] == "NamespaceNotAllowed"
    assert "does not allow namespace default (allowedNamespaces: none)" in done["status"]["message"]


async def test_a_destination_is_chosen_among_hosts_that_allow_the_namespace(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, [{"name": "web"}]))
    kube.apply(host("host-b", world, allowedNamespaces=["prod"]))
    kube.apply(host("host-c", world, allowedNamespaces=[]))
    kube.apply(migration("nowhere", destination=None))
    waiting = await wait_phase(kube, "nowhere", {"Pending"})
    await kube.wait_for("domainmigrations", "nowhere", "default",
                        lambda o: o.get("status", {}).get("reason") == "Unschedulable")  # fmt: skip
    said = (kube.read("domainmigrations", "nowhere", "default") or {})["status"]["message"]
    assert "0/3 hosts fit" in said and "2 namespace not allowed" in said, (waiting, said)
    kube.apply(host("host-d", world))  # a host that allows every namespace joins: it is chosen
    done = await wait_phase(kube, "nowhere", {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Succeeded" and done["status"]["destination"] == "host-d", done["status"]
