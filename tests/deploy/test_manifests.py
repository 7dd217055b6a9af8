"""Every CRD, manifest and example, validated offline as an API server and Argo CD would read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from lupa import LuaRuntime

from controller.api.crds import all_crds, render
from controller.api.hypervisor_host import HypervisorHost
from controller.api.migration_policy import MigrationPolicy
from controller.api.resource import DomainMigration
from tests.kube.emulator import ApiServer, validate

ROOT = Path(__file__).resolve().parents[2]
K8S = "1.30.0"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def schema_of(kind: str) -> dict[str, Any]:
    for document in all_crds().values():
        if document["spec"]["names"]["kind"] == kind:
            return document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]
    raise KeyError(kind)


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_committed_crds_are_generated_from_the_model(name: str) -> None:
    assert (ROOT / "crds" / name).read_text() == render(all_crds()[name]), "run: python -m controller.api.crds crds/"


CRD_FILES = [ROOT / "crds" / name for name in sorted(all_crds())]


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_crds_are_valid_apiextensions_objects(path: Path) -> None:
    for document in docs(path):
        kubernetes_validate.validate(document, K8S, strict=True)


def test_an_api_server_accepts_the_crds_and_lists_them() -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        with ApiServer(crds=CRD_FILES) as api:  # one file at a time: examples reuse host names
            for document in docs(path):
                if document["kind"] == "DomainMigration":
                    document["metadata"]["namespace"] = "default"
                created = api.create(document)
                assert created["metadata"]["uid"]
    with ApiServer(crds=CRD_FILES) as api:
        for document in docs(ROOT / "examples" / "migration-live.yaml"):
            api.create({**document, "metadata": {**document["metadata"], "namespace": "default"}})
        assert api.read("domainmigrations", "web-to-b", "default") is not None


MANIFESTS = [*sorted((ROOT / "manifests").glob("*.yaml")), ROOT / "manifests" / "argocd" / "health-check.yaml"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_kubernetes_schemas(path: Path) -> None:
    for document in docs(path):
        if document.get("kind") == "Kustomization":
            for resource in document["resources"]:
                assert (path.parent / resource).exists(), resource
        elif document["apiVersion"].startswith(("kopf.dev/", "kustomize.")):
            continue
        else:
            kubernetes_validate.validate(document, K8S, strict=True)


def all_manifest_docs() -> list[dict[str, Any]]:
    return [d for path in MANIFESTS for d in docs(path)]


def test_rbac_is_least_privilege() -> None:
    roles = [d for d in all_manifest_docs() if d["kind"] in ("ClusterRole", "Role")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], rule
            if "secrets" in rule["resources"]:
                # Host credentials are read by name; only the webhook's own TLS Secret is made, in its namespace.
                assert rule["verbs"] == (["get"] if role["kind"] == "ClusterRole" else ["create"])


def test_the_deployment_is_hardened_and_replicated() -> None:
    [deployment] = [d for d in all_manifest_docs() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"][0] == "operator"


EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_the_crd_schema_and_the_model(path: Path) -> None:
    for document in docs(path):
        causes = validate(document, schema_of(document["kind"]))
        assert not causes, [str(c) for c in causes]
        model = {
            "DomainMigration": DomainMigration,
            "HypervisorHost": HypervisorHost,
            "MigrationPolicy": MigrationPolicy,
        }[document["kind"]]
        model.parse(document)


def argo_health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    [cm] = docs(ROOT / "manifests" / "argocd" / "health-check.yaml")
    script = cm["data"][f"resource.customizations.health.domig.dev_{kind}"]
    lua = LuaRuntime(unpack_returned_tuples=True)
    run = lua.eval(f"function(obj)\n{script}\nend")
    result = run(lua.table_from(_lua(lua, obj)))
    return result["status"], result["message"]


def _lua(lua: LuaRuntime, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (lua.table_from(_lua(lua, v)) if isinstance(v, (dict, list)) else v) for k, v in value.items()}
    if isinstance(value, list):
        return [lua.table_from(_lua(lua, v)) if isinstance(v, (dict, list)) else v for v in value]
    return value


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        (None, 1, "Progressing"),
        ({"phase": "Migrating", "observedGeneration": 1}, 1, "Progressing"),
        ({"phase": "Succeeded", "observedGeneration": 1, "message": "migrated"}, 1, "Healthy"),
        ({"phase": "Succeeded", "observedGeneration": 1}, 2, "Progressing"),
        ({"phase": "Failed", "observedGeneration": 1, "message": "Stalled"}, 1, "Degraded"),
        ({"phase": "Aborted", "observedGeneration": 1}, 1, "Degraded"),
    ],
)
def test_argocd_health_check(status: dict[str, Any] | None, generation: int, expected: str) -> None:
    obj: dict[str, Any] = {"metadata": {"generation": generation}}
    if status is not None:
        obj["status"] = status
    assert argo_health("DomainMigration", obj)[0] == expected


def test_the_api_server_refuses_a_password_in_a_host_uri() -> None:
    from tests.kube.emulator import ApiError

    with ApiServer(crds=CRD_FILES) as api:
        host = {"apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": "h"},
                "spec": {"driver": "libvirt", "uri": "qemu+tcp://admin:pw@10.0.0.1/system"}}  # fmt: skip
        with pytest.raises(ApiError) as info:
            api.create(host)
        assert info.value.status == 422 and "must not carry a password" in str(info.value)
        host["spec"] = {"driver": "libvirt", "uri": "qemu+ssh://admin@10.0.0.1/system"}  # a user alone is fine
        api.create(host)
