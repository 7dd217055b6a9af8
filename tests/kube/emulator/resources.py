"""Resource definitions: built-in kinds and CRDs."""

import dataclasses
import re

import kmock

from .cel import _check_cel_rules
from .errors import FieldCause, _go_repr, _invalid
from .structural import check_schema
from .typedefs import Body


@dataclasses.dataclass
class VersionDef:
    name: str
    served: bool = True
    storage: bool = False
    schema: Body | None = None  # openAPIV3Schema; None means "anything goes" (built-ins)
    status: bool = False  # is the status subresource declared?


@dataclasses.dataclass
class ResourceDef:
    group: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    versions: dict[str, VersionDef]
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    custom: bool = False  # a CRD-based resource (vs. a built-in kind)

    @property
    def storage_version(self) -> str:
        return next(v.name for v in self.versions.values() if v.storage)

    @property
    def key(self) -> kmock.resource:  # the key of the stored objects in kmock's ObjectsArray
        return kmock.resource(self.group, self.storage_version, self.plural)

    @property
    def group_resource(self) -> str:  # as in the error messages: "kopfexamples.kopf.dev"
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def has_status(self, version: str | None = None) -> bool:
        return self.versions[version or self.storage_version].status

    def schema(self, version: str | None = None) -> Body | None:
        return self.versions[version or self.storage_version].schema

    def served_versions(self) -> list[str]:
        return sorted((v.name for v in self.versions.values() if v.served), key=_version_priority)


_BUILTINS: list[tuple[str, str, str, str, bool, bool, tuple[str, ...]]] = [
    # group, version, plural, kind, namespaced, has status subresource, short names
    ("", "v1", "namespaces", "Namespace", False, True, ("ns",)),
    ("", "v1", "events", "Event", True, False, ("ev",)),
    ("", "v1", "secrets", "Secret", True, False, ()),
    ("", "v1", "configmaps", "ConfigMap", True, False, ("cm",)),
    ("", "v1", "serviceaccounts", "ServiceAccount", True, False, ("sa",)),
    ("", "v1", "services", "Service", True, True, ("svc",)),
    ("", "v1", "pods", "Pod", True, True, ("po",)),
    ("", "v1", "nodes", "Node", False, True, ("no",)),
    ("events.k8s.io", "v1", "events", "Event", True, False, ("ev",)),
    ("coordination.k8s.io", "v1", "leases", "Lease", True, False, ()),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
        False,
        (),
    ),
    # Stored & validated, but not called: the emulator has no mutating admission.
    (
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
        False,
        (),
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        True,
        ("crd", "crds"),
    ),
]
_CRD_GP = ("apiextensions.k8s.io", "customresourcedefinitions")
_NS_GP = ("", "namespaces")
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key: GA before beta before alpha, higher numbers first, then the rest by name."""
    m = _VERSION_RE.match(version)
    if m is None:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), version)


def _builtin_defs() -> list[ResourceDef]:
    return [
        ResourceDef(
            group=g,
            plural=p,
            kind=k,
            singular=k.lower(),
            namespaced=nsd,
            shortnames=short,
            versions={v: VersionDef(name=v, storage=True, status=st)},
        )
        for g, v, p, k, nsd, st, short in _BUILTINS
    ]


def _parse_crd(body: Body) -> ResourceDef:
    """Convert a CustomResourceDefinition into a resource definition, or fail with 422."""
    spec = body.get("spec") or {}
    names = spec.get("names") or {}
    causes: list[FieldCause] = []
    group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
    for field, value in [("spec.group", group), ("spec.names.plural", plural), ("spec.names.kind", kind)]:
        if not value:
            causes.append(FieldCause("FieldValueRequired", field, "Required value"))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        causes.append(
            FieldCause(
                "FieldValueNotSupported",
                "spec.scope",
                f'Unsupported value: {_go_repr(scope)}: supported values: "Cluster", "Namespaced"',
            )
        )
    name = (body.get("metadata") or {}).get("name")
    if group and plural and name != f"{plural}.{group}":
        causes.append(
            FieldCause(
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: {_go_repr(name)}: must be spec.names.plural+"."+spec.group',
            )
        )
    versions: dict[str, VersionDef] = {}
    for idx, v in enumerate(spec.get("versions") or []):
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            causes.append(
                FieldCause(
                    "FieldValueRequired",
                    f"spec.versions[{idx}].schema.openAPIV3Schema",
                    "Required value: schemas are required",
                )
            )
        else:
            at = f"spec.versions[{idx}].schema.openAPIV3Schema"
            causes.extend(check_schema(schema, at) or _check_cel_rules(schema, at))
        versions[v.get("name", "")] = VersionDef(
            name=v.get("name", ""),
            served=bool(v.get("served", True)),
            storage=bool(v.get("storage", False)),
            schema=schema,
            status="status" in (v.get("subresources") or {}),
        )
    if sum(v.storage for v in versions.values()) != 1:
        causes.append(
            FieldCause(
                "FieldValueInvalid",
                "spec.versions",
                'Invalid value: "array": must have exactly one version marked as storage version',
            )
        )
    if causes:
        raise _invalid("CustomResourceDefinition", "apiextensions.k8s.io", str(name), causes)
    assert group and plural and kind
    return ResourceDef(
        group=group,
        plural=plural,
        kind=kind,
        singular=names.get("singular") or kind.lower(),
        namespaced=scope == "Namespaced",
        versions=versions,
        custom=True,
        shortnames=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
    )
