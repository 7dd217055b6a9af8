"""The operator's RBAC is exactly what it uses: derived from the requests the API server saw.

One run of the operator through what it does in a cluster (`domig operator`'s start-up checks
and peering object, kopf with peering, the webhook behind its Service with its TLS Secret, hosts
with credentials, a MigrationPolicy, a migration, a restart mid-migration, an evacuation, an
abort, a delete, Events) is recorded request by request by the emulated API server: verb, group,
resource, subresource, namespace. Every one must be granted by the ClusterRoles and Role in manifests/ (the Role only
in the operator's namespace), and every permission granted must be among them.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Iterator
from typing import Any

import kmock
import pytest
import yaml

from controller.operator.startup import PERMISSIONS, Scope, check
from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import CRDS, FAST, HANDLERS, NS, ROOT, host, migration, until, wait_phase

ROLES = [ROOT / "manifests" / "rbac.yaml", ROOT / "manifests" / "webhook.yaml"]
OPERATOR_NAMESPACE = "domig-system"  # manifests/kustomization.yaml's namespace
# Any authenticated user may ask what it may do (kube's system:basic-user): no rule needed.
ALWAYS = {("authorization.k8s.io", "selfsubjectaccessreviews", "create")}
VERBS = {
    kmock.action.WATCH: "watch",
    kmock.action.LIST: "list",
    kmock.action.FETCH: "get",
    kmock.action.CREATE: "create",
    kmock.action.DELETE: "delete",
}

Permission = tuple[str, str, str]  # (group, resource[/subresource], verb)


def granted() -> dict[Permission, str]:
    """Every (group, resource, verb) the manifests grant, with the kind of role that grants it."""
    found: dict[Permission, str] = {}
    for path in ROLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in ("ClusterRole", "Role"):
                for rule in doc["rules"]:
                    for group in rule["apiGroups"]:
                        for resource in rule["resources"]:
                            for verb in rule["verbs"]:
                                found[(group, resource, verb)] = doc["kind"]
    return found


def used(kube: ApiServer) -> dict[Permission, set[str | None]]:
    """Every (group, resource, verb) the requests asked for, with the namespaces they asked in."""
    found: dict[Permission, set[str | None]] = {}
    for request in kube.log():
        if request.resource is None or not request.resource.plural:
            continue  # discovery (/api, /apis/...): open to every authenticated user
        if request.action in VERBS:
            verb = VERBS[request.action]
        else:
            verb = "patch" if str(request.method).upper().endswith("PATCH") else "update"
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        key = (request.resource.group or "", resource, verb)
        if key not in ALWAYS:
            found.setdefault(key, set()).add(request.namespace)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def secret(name: str) -> dict[str, Any]:
    data = {"username": "root", "password": "rbac-test-password"}
    return {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }  # fmt: skip


@pytest.fixture
def kube() -> Iterator[ApiServer]:
    with ApiServer(crds=CRDS, namespaces=("default", "kube-system", OPERATOR_NAMESPACE)) as api:
        yield api
        assert not api.server_errors, api.server_errors


async def test_the_operator_uses_exactly_what_its_roles_grant(
    kube: ApiServer, world_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "KUBECONFIG": str(kube.kubeconfig),
        **FAST,
        "DOMIG_WEBHOOK_LISTEN": f"127.0.0.1:{free_port()}",
        "DOMIG_WEBHOOK_SERVICE": f"{OPERATOR_NAMESPACE}/domig-webhook:443",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from controller.operator.kube import Kube

    # `domig operator`'s own start-up: CRDs, SelfSubjectAccessReviews, the peering object.
    await asyncio.to_thread(check, Kube.from_environment().client, Scope(peering="domig", webhook=True))
    kube.create(secret("creds"))
    call = asyncio.to_thread
    await call(kube.apply, {"apiVersion": "domig.dev/v1alpha1", "kind": "MigrationPolicy",
                            "metadata": {"name": "p"}, "spec": {"bandwidthPerMigration": 500}})  # fmt: skip
    async with KopfOperator(kube, HANDLERS, peering="domig"):
        ref = {"credentialsSecretRef": {"name": "creds", "namespace": NS}}
        await call(kube.apply, host("host-a", world_uri, [{"name": "web"}, {"name": "db"}, {"name": "slow",
                   "memoryMiB": 8192, "dirtyRateMiBps": 10}], linkMiBps=200, **ref))  # fmt: skip
        await call(kube.apply, host("host-b", world_uri, linkMiBps=200, **ref))
        await call(kube.apply, migration("m"))
        assert (await wait_phase(kube, "m", {"Succeeded", "Failed"}))["status"]["phase"] == "Succeeded"
        await call(kube.apply, migration("slow", domain="slow"))
        await wait_phase(kube, "slow", {"Migrating"})
    # A restart mid-migration: the new daemon reads what is saved (a get: the operator's only one of
    # a DomainMigration), re-attaches, and it is that daemon that aborts the job.
    async with KopfOperator(kube, HANDLERS, peering="domig"):
        await call(kube.patch_object, "domainmigrations", "slow", {"spec": {"abort": True}}, NS)
        await wait_phase(kube, "slow", {"Aborted"})
        await call(kube.delete_object, "domainmigrations", "m", NS)  # the finalizer goes
        await until(lambda: kube.read("domainmigrations", "m", NS) is None)
        await call(kube.patch_object, "hypervisorhosts", "host-a", {"spec": {"evacuate": True}})

        def evacuated() -> bool:
            status = (kube.read("hypervisorhosts", "host-a") or {}).get("status") or {}
            return (status.get("evacuation") or {}).get("phase") in ("Completed", "Incomplete")

        await until(evacuated, within=60)
        assert kube.read("secrets", "domig-webhook-tls", OPERATOR_NAMESPACE) is not None
    asked = used(kube)
    grants = granted()
    print("used:", sorted(asked))
    not_granted = sorted(str(p) for p in asked if p not in grants)
    assert not not_granted, f"used but not granted: {not_granted}"
    for permission, kind in grants.items():
        if kind == "Role":  # the Role is bound in the operator's namespace only
            assert asked[permission] == {OPERATOR_NAMESPACE}, (permission, asked[permission])
    unused = sorted(str(p) for p in grants if p not in asked)
    assert not unused, f"granted but never used: {unused}"
    # What `domig operator` asks at start-up is what it is granted.
    for p in PERMISSIONS:
        resource = p.resource + (f"/{p.subresource}" if p.subresource else "")
        assert (p.group, resource, p.verb) in grants, p


@pytest.fixture
def world_uri(tmp_path: Any) -> str:
    return f"test://{tmp_path / 'world.json'}"
