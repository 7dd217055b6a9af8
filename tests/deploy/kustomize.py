"""
What `kubectl apply -k DIR` and `kubectl apply -f DIR` send: a small model of kustomize and kubectl.

No kubectl or kustomize binary runs here, so this renders our kustomizations the way kustomize
does, for the fields we use (resources: files and directories; namespace; images) and refuses any
other field, so that a new one cannot be silently left out of the tests. What it models, and where
it comes from in kustomize's and kubectl's sources:

* a directory is a kustomization when it holds exactly one of konfig's recognized file names;
* ``namespace`` sets metadata.namespace on namespaced kinds, renames Namespace objects, and sets
  it on (Cluster)RoleBinding subjects named ``default`` (the namespace filter's default mode);
  a kind kustomize does not know as cluster-scoped counts as namespaced, as in kustomize;
* ``images`` sets the image of containers and initContainers whose image name matches;
* the output is in kustomize's legacy order (resid's orderFirst/orderLast), CRDs early;
* ``kubectl apply -f DIR`` reads every .json, .yaml and .yml file directly in DIR.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
APPLY_F_EXTENSIONS = (".json", ".yaml", ".yml")
FIELDS = {"apiVersion", "kind", "resources", "namespace", "images"}
IMAGE_FIELDS = {"name", "newName", "newTag", "digest"}

ORDER_FIRST = [
    "Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition", "ServiceAccount",
    "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ConfigMap", "Secret",
    "Endpoints", "Service", "LimitRange", "PriorityClass", "PersistentVolume", "PersistentVolumeClaim",
    "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget",
]  # fmt: skip
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
CLUSTER_SCOPED = {
    "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "StorageClass",
    "PersistentVolume", "PriorityClass", "PodSecurityPolicy", "APIService", "Node",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
}  # fmt: skip


class RenderError(Exception):
    pass


def load(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization_file(directory: Path) -> Path:
    found = [directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()]
    if len(found) != 1:
        raise RenderError(f"{directory}: {'no' if not found else 'more than one'} kustomization file: {found}")
    return found[0]


def build(directory: Path) -> list[Doc]:
    """`kubectl kustomize DIR`: the documents `kubectl apply -k DIR` sends, in their order."""
    return sorted(_build(directory), key=_legacy_order)


def _build(directory: Path) -> list[Doc]:
    path = kustomization_file(directory)
    [kustomization] = load(path)
    if kustomization.get("kind") != "Kustomization" or set(kustomization) - FIELDS:
        raise RenderError(f"{path}: not modelled here: {sorted(set(kustomization) - FIELDS)}")
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        target = directory / entry
        if "://" in entry or not target.exists():
            raise RenderError(f"{path}: resource {entry!r} is not a local file or directory")
        docs += _build(target) if target.is_dir() else [copy.deepcopy(d) for d in load(target)]
    if namespace := kustomization.get("namespace"):
        for doc in docs:
            _set_namespace(doc, namespace)
    for image in kustomization.get("images", []):
        if set(image) - IMAGE_FIELDS:
            raise RenderError(f"{path}: images field not modelled here: {sorted(set(image) - IMAGE_FIELDS)}")
        for doc in docs:
            _set_image(doc, image)
    return docs


def _set_namespace(doc: Doc, namespace: str) -> None:
    kind, meta = doc["kind"], doc.setdefault("metadata", {})
    if kind == "Namespace":
        meta["name"] = namespace
    elif kind not in CLUSTER_SCOPED:
        meta["namespace"] = namespace
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        for subject in doc.get("subjects", []):
            if subject.get("name") == "default":
                subject["namespace"] = namespace


def _set_image(doc: Doc, image: Doc) -> None:
    pod = (doc.get("spec", {}).get("template") or {}).get("spec") or {}
    for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
        name, tag, digest = _split_image(container.get("image", ""))
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
        elif "newTag" in image:
            container["image"] = f"{name}:{image['newTag']}"
        else:
            container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _split_image(image: str) -> tuple[str, str, str]:
    rest, _, digest = image.partition("@")
    name, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:  # no tag; a ':' before a '/' is a registry's port
        return rest, "", digest
    return name, tag, digest


def _legacy_order(doc: Doc) -> tuple[int, str, str, str]:
    kind = doc["kind"]
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind) - len(ORDER_FIRST)
    elif kind in ORDER_LAST:
        rank = 1 + ORDER_LAST.index(kind)
    else:
        rank = 0
    meta = doc.get("metadata", {})
    return rank, f"{doc.get('apiVersion')}/{kind}", meta.get("namespace", ""), meta.get("name", "")


def apply_f(directory: Path) -> list[Doc]:
    """The documents `kubectl apply -f DIR` sends: every .json/.yaml/.yml file directly in DIR."""
    return [doc for path in sorted(directory.iterdir()) if path.suffix in APPLY_F_EXTENSIONS for doc in load(path)]


def crd_kinds(docs: Iterable[Doc]) -> dict[tuple[str, str], str]:
    """(group, kind) -> scope, of the CRDs among the documents."""
    return {
        (d["spec"]["group"], d["spec"]["names"]["kind"]): d["spec"]["scope"]
        for d in docs
        if d["kind"] == "CustomResourceDefinition"
    }


def objects_of_crds_in_the_same_apply(docs: list[Doc]) -> list[str]:
    """
    The objects kubectl cannot map: their CRD is in the same apply, not yet established.

    kubectl resolves every document's REST mapping before it sends the first one, so such an
    object fails "no matches for kind ... ensure CRDs are installed first" on a fresh cluster
    (and works where the CRD happens to be there already from an earlier run).
    """
    defined = crd_kinds(docs)
    return [
        f"{d['kind']} {d.get('metadata', {}).get('name')!r}"
        for d in docs
        if (d["apiVersion"].rpartition("/")[0], d["kind"]) in defined
    ]
