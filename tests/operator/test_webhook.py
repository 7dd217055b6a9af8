"""The admission webhook, served by the operator over HTTPS and called as the API server calls it.

Two ways in: real AdmissionReview requests sent straight to the webhook (every rule of the
rulebook, as tests/api/test_rulebook.py sends them to the model and the API server), and the
emulated API server calling the webhook on create and update, as `kubectl apply` would meet it.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.api.violations import VALID_HOST, VALID_MIGRATION, Violation, all_violations
from tests.kube.emulator import ApiError, ApiServer, KopfOperator
from tests.operator.conftest import HANDLERS, NS, host, migration, until, wait_phase

CONFIGURATION = "domig.dev"
KINDS = {
    "DomainMigration": ("domainmigrations", "migrations"),
    "HypervisorHost": ("hypervisorhosts", "hosts"),
    "MigrationPolicy": ("migrationpolicies", "policies"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def webhook(
    kube: ApiServer, operator_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[dict[str, Any]]:
    """The operator with its webhook on loopback; yields the configuration it registered."""
    monkeypatch.setenv("DOMIG_WEBHOOK_LISTEN", f"127.0.0.1:{free_port()}")
    async with KopfOperator(kube, HANDLERS):
        # kopf may create the configuration before it patches the webhooks in: wait for those.
        def registered() -> dict[str, Any] | None:
            config = kube.read("validatingwebhookconfigurations", CONFIGURATION)
            return config if config and len(config.get("webhooks") or []) == len(KINDS) else None

        yield await until(registered, within=20)


def client_ssl(config: dict[str, Any]) -> ssl.SSLContext:
    bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]).decode()
    return ssl.create_default_context(cadata=bundle)


def url_for(config: dict[str, Any], handler: str) -> str:
    for hook in config["webhooks"]:
        if hook["clientConfig"]["url"].endswith(f"/{handler}"):
            return str(hook["clientConfig"]["url"])
    raise KeyError(handler)


async def review(
    config: dict[str, Any], document: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST one AdmissionReview, as kube-apiserver does, and return its response part."""
    kind = document["kind"]
    plural, handler = KINDS[kind]
    request_uid = str(uuid.uuid4())
    request = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": request_uid,
            "kind": {"group": "domig.dev", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "domig.dev", "version": "v1alpha1", "resource": plural},
            "requestKind": {"group": "domig.dev", "version": "v1alpha1", "kind": kind},
            "requestResource": {"group": "domig.dev", "version": "v1alpha1", "resource": plural},
            "name": document["metadata"]["name"],
            "namespace": document["metadata"].get("namespace"),
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": document,
            "oldObject": old,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(url_for(config, handler), json=request, ssl=client_ssl(config)) as answer,
    ):
        assert answer.status == 200, await answer.text()
        body = await answer.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    assert body["response"]["uid"] == request_uid
    return body["response"]  # type: ignore[no-any-return]


WEBHOOK_VIOLATIONS = [v for v in all_violations() if v.kind in KINDS]


async def test_the_configuration_points_at_the_webhook_with_its_ca(webhook: dict[str, Any]) -> None:
    hooks = {h["name"]: h for h in webhook["webhooks"]}
    assert len(hooks) == len(KINDS)
    for hook in hooks.values():
        assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
        assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:")
        assert {op for rule in hook["rules"] for op in rule["operations"]} == {"CREATE", "UPDATE"}
    assert (await review(webhook, VALID_MIGRATION))["allowed"] is True
    assert (await review(webhook, VALID_HOST))["allowed"] is True


async def test_every_rule_is_refused_by_the_webhook_naming_the_field(webhook: dict[str, Any]) -> None:
    async def one(v: Violation) -> str | None:
        answer = await review(webhook, v.document)
        message = answer.get("status", {}).get("message", "")
        if answer["allowed"] or f"{v.field}:" not in message:
            return f"{v.id}: {answer}"
        return None

    failures = [f for f in await asyncio.gather(*(one(v) for v in WEBHOOK_VIOLATIONS)) if f]
    assert not failures, failures
    assert len(WEBHOOK_VIOLATIONS) > 80


XEN_HOSTS = [
    {"apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": name},
     "spec": {"driver": "xend", "uri": f"xend+http://127.0.0.{i}:1", **extra}}
    for i, (name, extra) in enumerate([("xen-a", {}), ("xen-b", {"allowedNamespaces": ["prod"]})], start=1)
]  # fmt: skip


async def test_apply_time_refusals_through_the_api_server(kube: ApiServer, webhook: dict[str, Any]) -> None:
    for h in XEN_HOSTS:
        await asyncio.to_thread(kube.apply, h)
    await until(lambda: all(kube.read("hypervisorhosts", h["metadata"]["name"]) for h in XEN_HOSTS))
    await asyncio.sleep(0.5)  # the operator's index of hosts follows its watch

    # A rename on an xend host: the 2007 proposal's NoSupport, naming the field and the driver.
    with pytest.raises(ApiError) as info:
        await asyncio.to_thread(
            kube.create, migration("rename", domain="web", source="xen-a", destination="xen-a", dname="web2")
        )
    text = str(info.value)
    assert info.value.status == 422, text
    assert 'admission webhook "migrations.domig.dev" denied the request' in text
    assert "spec.dname: NoSupport: the xend driver does not support renaming domains" in text
    assert kube.read("domainmigrations", "rename", NS) is None

    # Flags and parameters the driver lacks, and a namespace the host does not allow.
    bad = migration("flags", source="xen-a", destination="xen-b", flags=["live", "postCopy"], params={"bandwidth": 1})
    with pytest.raises(ApiError) as info:
        await asyncio.to_thread(kube.create, bad)
    text = str(info.value)
    assert "spec.flags[1]: NoSupport: the xend driver does not support flag postCopy" in text
    assert "spec.params[bandwidth]: NoSupport: the xend driver does not support parameter bandwidth" in text
    assert "spec.destination: NamespaceNotAllowed: HypervisorHost xen-b does not allow namespace default" in text


async def test_a_host_that_does_not_exist_yet_is_allowed_with_a_warning(webhook: dict[str, Any]) -> None:
    answer = await review(webhook, migration("later", source="nowhere", destination="host-b"))
    assert answer["allowed"] is True
    assert any("spec.source: no HypervisorHost named 'nowhere' yet" in w for w in answer.get("warnings", []))


async def test_an_admitted_spec_changes_only_where_it_may(kube: ApiServer, world: str, webhook: dict[str, Any]) -> None:
    # The test's own loop serves the webhook: calls that go through it must not block that loop.
    call = asyncio.to_thread
    await call(kube.apply, host("host-a", world, [{"name": "web", "memoryMiB": 8192, "dirtyRateMiBps": 10}],
                                linkMiBps=200))  # fmt: skip
    await call(kube.apply, host("host-b", world, linkMiBps=200))
    await call(kube.apply, migration("m"))
    await wait_phase(kube, "m", {"Migrating"})
    await call(kube.patch_object, "domainmigrations", "m", {"spec": {"params": {"bandwidth": 100}}}, NS)  # live
    with pytest.raises(ApiError) as info:
        await call(kube.patch_object, "domainmigrations", "m", {"spec": {"destination": "host-c"}}, NS)
    text = str(info.value)
    assert "spec.destination: cannot change once the migration has been admitted" in text
    assert kube.read("domainmigrations", "m", NS)["spec"]["destination"] == "host-b"  # type: ignore[index]
    await call(kube.patch_object, "domainmigrations", "m", {"spec": {"abort": True}}, NS)
    await wait_phase(kube, "m", {"Aborted"})


def _policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "domig.dev/v1alpha1", "kind": "MigrationPolicy", "metadata": {"name": name}, "spec": spec}


async def test_what_the_policy_forbids_is_refused_at_apply_time(kube: ApiServer, webhook: dict[str, Any]) -> None:
    await asyncio.to_thread(kube.apply, _policy("careful", allowPostCopy=False, maxDowntimeMs=500))
    await asyncio.sleep(0.5)  # the operator's index of policies follows its watch
    steps = [{"when": {"notConvergingFor": 5}, "do": {"postCopy": True}}]
    bad = migration("pc", flags=["live", "postCopy"], params={"downtime": 800}, convergence=steps)
    with pytest.raises(ApiError) as info:
        await asyncio.to_thread(kube.create, bad)
    text = str(info.value)
    assert info.value.status == 422, text
    assert (
        "spec.flags[1]: PolicyForbids: MigrationPolicy careful does not allow post-copy (allowPostCopy: false)" in text
    )
    assert (
        "spec.params[downtime]: PolicyForbids: MigrationPolicy careful does not allow a downtime above 500 ms" in text
    )
    assert "spec.convergence[0].do.postCopy: PolicyForbids" in text
    assert kube.read("domainmigrations", "pc", NS) is None
    answer = await review(webhook, migration("ok", params={"downtime": 400}))
    assert answer["allowed"] is True


async def test_a_policy_whose_schedule_asks_for_what_it_forbids_is_refused(webhook: dict[str, Any]) -> None:
    steps = [{"when": {"iteration": 3}, "do": {"pause": True}}]
    answer = await review(webhook, _policy("odd", allowWorkloadDisruption=False, convergence=steps))
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert (
        "spec.convergence[0].do.pause: PolicyForbids: this MigrationPolicy does not allow pausing the guest" in message
    )


async def test_what_xend_cannot_do_is_said_at_apply_time(kube: ApiServer, webhook: dict[str, Any]) -> None:
    xen_c = {
        **XEN_HOSTS[0],
        "metadata": {"name": "xen-c"},
        "spec": {"driver": "xend", "uri": "xend+http://127.0.0.3:1"},
    }
    for h in [*XEN_HOSTS, xen_c]:
        await asyncio.to_thread(kube.apply, h)
    await until(lambda: all(kube.read("hypervisorhosts", n) for n in ("xen-a", "xen-b", "xen-c")))
    await asyncio.sleep(0.5)
    answer = await review(webhook, migration("x", source="xen-a", destination="xen-c"))
    assert answer["allowed"] is True
    warnings = " ".join(answer.get("warnings", []))
    assert "the xend driver cannot abort a running migration" in warnings
    assert "reports no progress figures" in warnings
    steps = [{"when": {"notConvergingFor": 5}, "do": {"raiseDowntime": 1000}}]
    answer = await review(webhook, migration("y", source="xen-a", destination="xen-c", convergence=steps))
    message = answer["status"]["message"]
    assert (
        "spec.convergence[0].do.raiseDowntime: NoSupport: the xend driver cannot take the step raiseDowntime" in message
    )


async def test_on_libvirt_hosts_a_schedule_with_post_copy_is_refused_where_the_policy_forbids_it(
    kube: ApiServer, webhook: dict[str, Any]
) -> None:
    for i, name in enumerate(("kvm-a", "kvm-b"), start=1):
        doc = {"apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": name},
               "spec": {"driver": "libvirt", "uri": f"qemu+tcp://127.0.0.{i}:1/system"}}  # fmt: skip
        await asyncio.to_thread(kube.apply, doc)
    steps = [
        {"when": {"notConvergingFor": 2}, "do": {"raiseDowntime": 500}},
        {"when": {"notConvergingFor": 2}, "do": {"postCopy": True}},
    ]
    spec = {"source": "kvm-a", "destination": "kvm-b", "params": {"bandwidth": 10}, "convergence": steps}
    await until(lambda: kube.read("hypervisorhosts", "kvm-b"))
    await asyncio.sleep(0.5)
    assert (await review(webhook, migration("allowed", **spec)))["allowed"] is True
    await asyncio.to_thread(kube.apply, _policy("no-postcopy", allowPostCopy=False))
    await asyncio.sleep(0.5)
    answer = await review(webhook, migration("refused", **spec))
    assert answer["allowed"] is False
    assert "spec.convergence[1].do.postCopy: PolicyForbids: MigrationPolicy no-postcopy" in answer["status"]["message"]
