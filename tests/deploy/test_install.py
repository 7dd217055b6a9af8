"""The install lines of the README on a fresh cluster: `kubectl apply -k manifests/` and `-f crds/`, in one go."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.deploy.kustomize import (
    Doc,
    apply_f,
    build,
    crd_kinds,
    kustomization_file,
    load,
    objects_of_crds_in_the_same_apply,
)
from tests.kube.emulator import ApiServer, ResourceDef, VersionDef
from tests.operator.conftest import host, migration, wait_phase, where
from tests.operator.entrypoints import OperatorProcess, processes
from tests.operator.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["processes"]  # a fixture


def test_apply_k_sends_no_object_of_a_crd_in_the_same_apply() -> None:
    docs = build(ROOT / "manifests")
    assert set(crd_kinds(docs)) >= {("domig.dev", "DomainMigration"), ("kopf.dev", "ClusterKopfPeering")}
    assert objects_of_crds_in_the_same_apply(docs) == []


def test_the_check_finds_what_failed_before() -> None:
    # The old manifests/peering.yaml: the peering CRD and its object in one apply.
    [crd] = [d for d in load(ROOT / "manifests" / "peering.yaml") if d["spec"]["scope"] == "Cluster"]
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "domig"}}
    assert objects_of_crds_in_the_same_apply([crd, peering]) == ["ClusterKopfPeering 'domig'"]


def test_apply_k_renders_namespace_images_and_crds_first() -> None:
    docs = build(ROOT / "manifests")
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Namespace" and kinds.index("Deployment") > max(
        i for i, k in enumerate(kinds) if k == "CustomResourceDefinition"
    )
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["metadata"]["namespace"] == "domig-system"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "domig:0.1.0"
    for doc in docs:
        if doc["kind"] in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace"):
            assert "namespace" not in doc["metadata"], doc["metadata"]


def test_apply_f_crds_sends_only_crds_and_stays_a_kustomize_base() -> None:
    docs = apply_f(ROOT / "crds")
    assert docs and all(d.get("apiVersion") and d.get("kind") == "CustomResourceDefinition" for d in docs)
    assert objects_of_crds_in_the_same_apply(docs) == []
    # -k manifests/ pulls ../crds: the same CRDs, through a kustomization file kubectl -f does not read.
    assert kustomization_file(ROOT / "crds").name == "Kustomization"
    assert {d["metadata"]["name"] for d in build(ROOT / "crds")} == {d["metadata"]["name"] for d in docs}


# The built-in kinds our manifests use that the emulator does not serve (it serves what kopf needs).
MORE_BUILTINS = [
    ("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", False),
    ("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding", False),
    ("rbac.authorization.k8s.io", "roles", "Role", True),
    ("rbac.authorization.k8s.io", "rolebindings", "RoleBinding", True),
    ("", "services", "Service", True),
    ("apps", "deployments", "Deployment", True),
]


def fresh_cluster() -> ApiServer:
    """An API server with built-in kinds only: no CRD, no peering, nothing of ours."""
    kube = ApiServer(crds=[], peering=False)
    for group, plural, kind, namespaced in MORE_BUILTINS:
        versions = {"v1": VersionDef(name="v1", storage=True, status=kind == "Deployment")}
        kube._register(ResourceDef(group, plural, kind, kind.lower(), namespaced, versions))
    return kube


def kubectl_apply(kube: ApiServer, docs: list[Doc]) -> None:
    # kubectl maps every document before it sends any: each kind must be known already.
    for doc in docs:
        group = doc["apiVersion"].rpartition("/")[0]
        try:
            known = kube.find_resource(doc["kind"]).group == group
        except LookupError:
            known = False
        assert known, f'no matches for kind "{doc["kind"]}" in version "{doc["apiVersion"]}"'
    for doc in docs:
        kube.apply(copy.deepcopy(doc))


@pytest.mark.slow
async def test_apply_k_on_a_fresh_cluster_then_the_operator_runs_a_migration(
    tmp_path: Path, processes: list[OperatorProcess]
) -> None:
    world = f"test://{tmp_path / 'world.json'}"
    docs = build(ROOT / "manifests")
    with fresh_cluster() as kube:
        kubectl_apply(kube, docs)
        kubectl_apply(kube, docs)  # and again, as a later `kubectl apply -k` does
        [deployment] = [d for d in docs if d["kind"] == "Deployment"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        # The Deployment's own arguments, but on ports of our choosing.
        args = [a for a in container["args"][1:] if not a.startswith(("--liveness", "--metrics-port"))]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        env["DOMIG_WEBHOOK_LISTEN"] = f"127.0.0.1:{free_port()}"  # the pod's 0.0.0.0:9443, on a free port here
        process = OperatorProcess(kube, *args, "--liveness=http://127.0.0.1:0/healthz", env=env)
        processes.append(process)
        kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 1024}]))
        kube.apply(host("host-b", world))
        kube.apply(migration("m"))
        done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=60)
        assert done["status"]["phase"] == "Succeeded", process.output[-3000:]
        assert kube.read("clusterkopfpeerings", "domig") is not None
        assert kube.read("deployments", "domig-operator", "domig-system") is not None
        assert process.stop() == 0, process.output[-3000:]  # while its API server is still there
    assert where(world) == {"host-a": "shutoff", "host-b": "running"}
    assert "created kopf's peering object ClusterKopfPeering 'domig'" in process.output


def test_apply_f_crds_on_a_fresh_cluster_serves_our_kinds() -> None:
    with fresh_cluster() as kube:
        kubectl_apply(kube, apply_f(ROOT / "crds"))
        for plural in ("domainmigrations", "hypervisorhosts", "migrationpolicies"):
            assert kube.find_resource(plural).group == "domig.dev"
