"""
An emulated Kubernetes API server for operator tests, built on top of ``kmock``.

``kmock.KubernetesEmulator`` (0.8) is a good skeleton, but too naive for kopf 1.45: no resource
versions, no uids/timestamps/generations, no 409/422 semantics, no PUT, no ``generateName``,
no status subresource, no selectors, no schemas, and a few parsing/serving quirks. This module
keeps kmock's parts that work (the aiohttp server, the request log, the DSL of reactions
for fault injection, error rendering, the discovery endpoints, the object store with history)
and replaces the request-serving logic of the resources with a realistic one.

Usage (sync or async tests alike; the server runs in its own thread and event loop)::

    with ApiServer(crds=['tests/kube/fixtures/crd.yaml']) as api:
        api.create({'apiVersion': 'kopf.dev/v1', 'kind': 'KopfExample', ...})
        obj = api.read('kopfexamples', 'name', 'default')
        api.kubeconfig  # a path to a kubeconfig file for `kopf run` & co.

Fault injection uses kmock's DSL, e.g. ``api['patch', kmock.resource('kopf.dev/v1/kopfexamples')] << 500``.
Such user reactions take precedence over the emulated behaviour and do not change the state.
"""

import asyncio
import base64
import bisect
import contextlib
import copy
import dataclasses
import datetime
import functools
import importlib
import importlib.util
import json
import logging
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, Self, TypeAlias, cast

import aiohttp.test_utils
import aiohttp.web
import attrs
import kmock
import kopf
import yaml

try:  # CEL for x-kubernetes-validations; optional: without it, the rules are not evaluated.
    import cel as _cel  # PyPI: common-expression-language
except ImportError:  # pragma: no cover
    _cel = None

logger = logging.getLogger(__name__)

Body: TypeAlias = dict[str, Any]
CrdSource: TypeAlias = str | os.PathLike[str] | Mapping[str, Any]
HandlersSource: TypeAlias = (
    str | os.PathLike[str] | types.ModuleType | kopf.OperatorRegistry | Callable[[kopf.OperatorRegistry], None]
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
PEERING_CRDS = FIXTURES / "peering.yaml"
CEL_AVAILABLE = _cel is not None

# The real error class of kmock; it renders as a Kubernetes `Status` with the given code.
ApiError = kmock.KubernetesError


# ---------------------------------------------------------------------------------------------
# Errors in the style of a real Kubernetes API server.
# ---------------------------------------------------------------------------------------------


def _status(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> ApiError:
    return ApiError(status=code, reason=reason, message=message, details=dict(details or {}))


def _bad_request(message: str) -> ApiError:
    return _status(400, "BadRequest", message)


def _resource_not_found() -> ApiError:
    return _status(404, "NotFound", "the server could not find the requested resource")


@dataclasses.dataclass(frozen=True)
class FieldCause:
    """One validation failure, as in ``Status.details.causes`` of a 422 response."""

    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ...
    field: str  # e.g. spec.replicas
    message: str  # e.g. Required value

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


# ---------------------------------------------------------------------------------------------
# Resource definitions: built-in kinds and CRDs.
# ---------------------------------------------------------------------------------------------


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
            causes.extend(_check_cel_rules(schema, f"spec.versions[{idx}].schema.openAPIV3Schema"))
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


def _invalid(kind: str, group: str, name: str, causes: Sequence[FieldCause]) -> ApiError:
    """A 422 Unprocessable Entity in the format of the real API server."""
    gk = f"{kind}.{group}" if group else kind
    summary = str(causes[0]) if len(causes) == 1 else "[" + ", ".join(str(c) for c in causes) + "]"
    return _status(
        422,
        "Invalid",
        f"{gk} {json.dumps(name)} is invalid: {summary}",
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": c.reason, "message": c.message, "field": c.field} for c in causes],
        },
    )


# ---------------------------------------------------------------------------------------------
# OpenAPI v3 structural schemas: pruning, defaulting, validation, CEL rules.
# ---------------------------------------------------------------------------------------------

_MISSING: Any = object()


def _go_repr(value: Any) -> str:
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


def _json_type(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "boolean"
        case int():
            return "integer"
        case float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "object"
    return type(value).__name__


def _type_ok(value: Any, expected: str) -> bool:
    actual = _json_type(value)
    if expected == "number":
        return actual in ("integer", "number")
    if expected == "integer" and actual == "number":
        return float(value).is_integer()
    return actual == expected


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_root_meta(path: str, key: str) -> bool:
    return path == "" and key in ("apiVersion", "kind", "metadata")


def prune_and_default(value: Any, schema: Body | None, path: str = "", unknown: list[str] | None = None) -> Any:
    """
    Drop unknown fields and apply defaults, as the API server does before validation.

    Unknown fields are those not declared in ``properties`` of an object without
    ``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields: true``.
    The pruned paths are appended to ``unknown`` (for warnings or strict validation).
    Nulls in non-nullable fields are replaced with defaults or dropped.
    """
    if schema is None:
        return value
    unknown = unknown if unknown is not None else []
    embedded = schema.get("x-kubernetes-embedded-resource", False)
    if isinstance(value, dict):
        props: Mapping[str, Body] = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        result: Body = {}
        for key, sub in value.items():
            subpath = _child(path, key)
            if _is_root_meta(path, key) or (embedded and key in ("apiVersion", "kind", "metadata")):
                result[key] = sub
            elif key in props:
                if sub is None and not props[key].get("nullable", False):
                    if "default" in props[key]:
                        result[key] = copy.deepcopy(props[key]["default"])
                    continue  # nulls in non-nullable fields are pruned (or defaulted)
                result[key] = prune_and_default(sub, props[key], subpath, unknown)
            elif isinstance(addl, dict):
                result[key] = prune_and_default(sub, addl, subpath, unknown)
            elif addl is True or preserve:
                result[key] = sub
            else:
                unknown.append(subpath)
        for key, subschema in props.items():
            if key not in result and "default" in subschema:
                result[key] = prune_and_default(
                    copy.deepcopy(subschema["default"]), subschema, _child(path, key), unknown
                )
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune_and_default(item, schema["items"], f"{path}[{i}]", unknown) for i, item in enumerate(value)]
    return value


_FORMATS: dict[str, re.Pattern[str]] = {
    "date-time": re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$"),
    "date": re.compile(r"^\d{4}-\d\d-\d\d$"),
    "uuid": re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
    "byte": re.compile(r"^[A-Za-z0-9+/]*={0,2}$"),
}


def validate(value: Any, schema: Body | None, old: Any = _MISSING, path: str = "") -> list[FieldCause]:
    """
    Validate a (pruned & defaulted) value against an OpenAPI v3 schema of a CRD version.

    The messages mimic those of kube-apiserver, e.g. ``spec.replicas: Invalid value: "string":
    spec.replicas in body must be of type integer: "string"``. ``old`` is the previous value of
    the same node on updates (for CEL transition rules with ``oldSelf``).
    """
    causes: list[FieldCause] = []
    if schema is None:
        return causes
    at = path or "<root>"
    if value is None:
        if not schema.get("nullable", False) and schema.get("type"):
            causes.append(
                FieldCause(
                    "FieldValueTypeInvalid",
                    path,
                    f'Invalid value: "null": {at} in body must be of type {schema["type"]}: "null"',
                )
            )
        return causes

    # Types.
    expected = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            causes.append(
                FieldCause(
                    "FieldValueTypeInvalid",
                    path,
                    f"Invalid value: {_go_repr(_json_type(value))}: {at} in body must be of type "
                    f"integer,string: {_go_repr(_json_type(value))}",
                )
            )
            return causes
    elif expected and not _type_ok(value, expected):
        t = _json_type(value)
        causes.append(
            FieldCause(
                "FieldValueTypeInvalid", path, f'Invalid value: "{t}": {at} in body must be of type {expected}: "{t}"'
            )
        )
        return causes  # no deeper checks on the wrong types, as in K8s

    # Scalars.
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_go_repr(v) for v in schema["enum"])
        causes.append(
            FieldCause(
                "FieldValueNotSupported", path, f"Unsupported value: {_go_repr(value)}: supported values: {supported}"
            )
        )

    def invalid(text: str, shown: Any = value) -> None:
        causes.append(FieldCause("FieldValueInvalid", path, f"Invalid value: {_go_repr(shown)}: {at} in body {text}"))

    if isinstance(value, int | float) and not isinstance(value, bool):
        minimum, maximum = schema.get("minimum"), schema.get("maximum")
        if minimum is not None:
            if schema.get("exclusiveMinimum") and value <= minimum:
                invalid(f"should be greater than {minimum}")
            elif value < minimum:
                invalid(f"should be greater than or equal to {minimum}")
        if maximum is not None:
            if schema.get("exclusiveMaximum") and value >= maximum:
                invalid(f"should be less than {maximum}")
            elif value > maximum:
                invalid(f"should be less than or equal to {maximum}")
        multiple = schema.get("multipleOf")
        if multiple and (value / multiple) != int(value / multiple):
            invalid(f"should be a multiple of {multiple}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append(
                FieldCause("FieldValueTooLong", path, f"Too long: may not be longer than {schema['maxLength']}")
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            invalid(f"should be at least {schema['minLength']} chars long")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            invalid(f"should match '{schema['pattern']}'")
        fmt = schema.get("format")
        if fmt in _FORMATS and not _FORMATS[fmt].match(value):
            invalid(f"must be of type {fmt}: {_go_repr(value)}")

    # Arrays.
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            causes.append(
                FieldCause(
                    "FieldValueTooMany", path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"
                )
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            invalid(f"should have at least {schema['minItems']} items", len(value))
        list_type = schema.get("x-kubernetes-list-type")
        map_keys: list[str] = schema.get("x-kubernetes-list-map-keys") or []
        if schema.get("uniqueItems") or list_type == "set":
            seen: list[Any] = []
            for i, item in enumerate(value):
                if item in seen:
                    causes.append(
                        FieldCause("FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {_go_repr(item)}")
                    )
                seen.append(item)
        old_items: dict[Any, Any] = {}
        if list_type == "map" and map_keys:
            keys_seen: set[str] = set()
            for i, item in enumerate(value):
                mkey = json.dumps([item.get(k) for k in map_keys] if isinstance(item, dict) else item)
                if mkey in keys_seen:
                    causes.append(FieldCause("FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {mkey}"))
                keys_seen.add(mkey)
            if isinstance(old, list):
                old_items = {json.dumps([o.get(k) for k in map_keys]): o for o in old if isinstance(o, dict)}
        items_schema = schema.get("items")
        if isinstance(items_schema, dict):
            for i, item in enumerate(value):
                old_item = (
                    old_items.get(json.dumps([item.get(k) for k in map_keys]), _MISSING)
                    if old_items and isinstance(item, dict)
                    else _MISSING
                )
                causes.extend(validate(item, items_schema, old_item, f"{path}[{i}]"))

    # Objects.
    if isinstance(value, dict):
        props: Mapping[str, Body] = schema.get("properties") or {}
        for req in schema.get("required") or []:
            if req not in value:
                causes.append(FieldCause("FieldValueRequired", _child(path, req), "Required value"))
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            causes.append(
                FieldCause(
                    "FieldValueTooMany",
                    path,
                    f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
                )
            )
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            causes.append(
                FieldCause(
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {len(value)}: {at} in body should have at least "
                    f"{schema['minProperties']} properties",
                )
            )
        addl = schema.get("additionalProperties")
        for key, sub in value.items():
            if _is_root_meta(path, key):
                continue
            old_sub = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
            if key in props:
                causes.extend(validate(sub, props[key], old_sub, _child(path, key)))
            elif isinstance(addl, dict):
                causes.extend(validate(sub, addl, old_sub, f"{path}[{key}]" if path else key))

    # Value validations combinators (structural schemas allow them without types/properties).
    for sub in schema.get("allOf") or []:
        causes.extend(validate(value, sub, old, path))
    if schema.get("anyOf") and not any(not validate(value, sub, old, path) for sub in schema["anyOf"]):
        causes.append(
            FieldCause(
                "FieldValueInvalid",
                path,
                f"Invalid value: {_go_repr(value)}: {at} in body must "
                "be valid against at least one of the schemas in anyOf",
            )
        )
    if schema.get("oneOf") and sum(not validate(value, sub, old, path) for sub in schema["oneOf"]) != 1:
        causes.append(
            FieldCause(
                "FieldValueInvalid",
                path,
                f"Invalid value: {_go_repr(value)}: {at} in body must "
                "be valid against exactly one of the schemas in oneOf",
            )
        )
    if isinstance(schema.get("not"), dict) and not validate(value, schema["not"], old, path):
        causes.append(
            FieldCause(
                "FieldValueInvalid",
                path,
                f"Invalid value: {_go_repr(value)}: {at} in body must not validate the schema (not)",
            )
        )

    # CEL rules: only if the node itself is valid (as in K8s, where CEL runs on typed values).
    if not causes and schema.get("x-kubernetes-validations"):
        causes.extend(_run_cel_rules(value, old, schema["x-kubernetes-validations"], path))
    return causes


@functools.lru_cache(maxsize=1024)
def _cel_program(rule: str) -> Any:
    assert _cel is not None
    return _cel.compile(rule)


def _check_cel_rules(schema: Any, path: str) -> list[FieldCause]:
    """Compile all CEL rules in a schema at CRD registration (as the API server does)."""
    causes: list[FieldCause] = []
    if not isinstance(schema, dict) or _cel is None:
        return causes
    for idx, rule in enumerate(schema.get("x-kubernetes-validations") or []):
        try:
            _cel_program(rule["rule"])
        except Exception as e:
            causes.append(
                FieldCause(
                    "FieldValueInvalid",
                    f"{path}.x-kubernetes-validations[{idx}].rule",
                    f"Invalid value: {_go_repr(rule.get('rule'))}: compilation failed: {e}",
                )
            )
    for key, sub in (schema.get("properties") or {}).items():
        causes.extend(_check_cel_rules(sub, f"{path}.properties[{key}]"))
    for key in ("items", "additionalProperties"):
        causes.extend(_check_cel_rules(schema.get(key), f"{path}.{key}"))
    return causes


def _run_cel_rules(value: Any, old: Any, rules: Sequence[Mapping[str, Any]], path: str) -> list[FieldCause]:
    causes: list[FieldCause] = []
    if _cel is None:
        return causes  # CEL is not installed: the rules are silently skipped (documented)
    for rule in rules:
        expr: str = rule["rule"]
        is_transition = re.search(r"\boldSelf\b", expr) is not None
        if is_transition and old is _MISSING and not rule.get("optionalOldSelf"):
            continue  # transition rules apply only to updates of existing values
        context: dict[str, Any] = {"self": value}
        if is_transition:
            context["oldSelf"] = None if old is _MISSING else old
        try:
            ok = _cel_program(expr).execute(context)
            error = None
        except Exception as e:
            ok, error = False, f"{e} evaluating rule: {expr}"
        if ok is True:
            continue
        message = error or rule.get("message") or f"failed rule: {expr}"
        if not error and rule.get("messageExpression"):
            with contextlib.suppress(Exception):
                message = str(_cel_program(rule["messageExpression"]).execute(context))
        field = path + (rule.get("fieldPath") or "") if path else (rule.get("fieldPath") or "").lstrip(".")
        reason = rule.get("reason") or "FieldValueInvalid"
        prefix = {
            "FieldValueRequired": "Required value",
            "FieldValueForbidden": "Forbidden",
            "FieldValueDuplicate": f"Duplicate value: {_go_repr(value)}",
        }.get(reason, f"Invalid value: {_go_repr(value)}")
        causes.append(FieldCause(reason, field, f"{prefix}: {message}"))
    return causes


# ---------------------------------------------------------------------------------------------
# Patches (RFC 7386 merge-patch, RFC 6902 JSON-patch) and selectors.
# ---------------------------------------------------------------------------------------------


class PatchError(Exception):
    pass


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts are merged recursively, ``null`` removes a key, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: Body = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]] if path else []


def _resolve_pointer(doc: Any, parts: Sequence[str], path: str) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PatchError(f"path not found: {path}")
    return node


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 with all 6 operations; any failure (incl. a failed ``test``) raises PatchError."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError(f"invalid operation: {op!r}")
        kind, path = op.get("op"), op.get("path")
        parts = _pointer(path)
        if kind == "test":
            if _resolve_pointer(doc, parts, str(path)) != op.get("value"):
                raise PatchError(f"testing value {path} failed: test failed")
            continue
        if kind in ("move", "copy"):
            src = _pointer(op.get("from"))
            value = copy.deepcopy(_resolve_pointer(doc, src, str(op.get("from"))))
            if kind == "move":
                doc = _patch_remove(doc, src, str(op.get("from")))
            doc = _patch_add(doc, parts, value, str(path), replace=False)
        elif kind == "add":
            if "value" not in op:
                raise PatchError(f"missing value for add at {path}")
            doc = _patch_add(doc, parts, copy.deepcopy(op["value"]), str(path), replace=False)
        elif kind == "replace":
            if "value" not in op:
                raise PatchError(f"missing value for replace at {path}")
            _resolve_pointer(doc, parts, str(path))  # must exist
            doc = _patch_add(doc, parts, copy.deepcopy(op["value"]), str(path), replace=True)
        elif kind == "remove":
            doc = _patch_remove(doc, parts, str(path))
        else:
            raise PatchError(f"unexpected kind of operation: {kind!r}")
    return doc


def _patch_add(doc: Any, parts: Sequence[str], value: Any, path: str, *, replace: bool) -> Any:
    if not parts:
        return value
    parent = _resolve_pointer(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise PatchError(f"index out of bounds: {path}")
    else:
        raise PatchError(f"cannot add to a scalar at {path}")
    return doc


def _patch_remove(doc: Any, parts: Sequence[str], path: str) -> Any:
    if not parts:
        raise PatchError("cannot remove the root")
    parent = _resolve_pointer(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise PatchError(f"unable to remove nonexistent key: {last}: missing value")
    return doc


Predicate: TypeAlias = Callable[[Body], bool]
_LABEL_SET_RE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s*\(([^)]*)\)\s*$")
_LABEL_EQ_RE = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")
_LABEL_EXISTS_RE = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*$")


def _split_selector(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def parse_label_selector(selector: str) -> Predicate:
    """Equality- and set-based label selectors: ``a=b,c!=d,e in (f,g),h notin (i),j,!k``."""
    checks: list[Predicate] = []
    for term in _split_selector(selector):
        if m := _LABEL_SET_RE.match(term):
            key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            checks.append(functools.partial(_label_in, key, vals, op == "in"))
        elif m := _LABEL_EQ_RE.match(term):
            key, op, val = m.groups()
            checks.append(functools.partial(_label_eq, key, val, op != "!="))
        elif m := _LABEL_EXISTS_RE.match(term):
            checks.append(functools.partial(_label_exists, m.group(2), not m.group(1)))
        else:
            raise _bad_request(f"unable to parse requirement: {term!r}")
    return lambda body: all(check(body) for check in checks)


def _labels(body: Body) -> Mapping[str, str]:
    return (body.get("metadata") or {}).get("labels") or {}


def _label_in(key: str, vals: set[str], positive: bool, body: Body) -> bool:
    labels = _labels(body)
    return (labels.get(key) in vals) if positive else (key not in labels or labels[key] not in vals)


def _label_eq(key: str, val: str, positive: bool, body: Body) -> bool:
    return (_labels(body).get(key) == val) == positive


def _label_exists(key: str, positive: bool, body: Body) -> bool:
    return (key in _labels(body)) == positive


def parse_field_selector(selector: str) -> Predicate:
    """Field selectors by dotted paths: ``metadata.name=x,metadata.namespace!=y,spec.nodeName=z``."""
    checks: list[Predicate] = []
    for term in _split_selector(selector):
        m = _LABEL_EQ_RE.match(term)
        if m is None:
            raise _bad_request(f"invalid selector: {term!r}; can't understand {term!r}")
        path, op, val = m.groups()
        checks.append(functools.partial(_field_eq, path.split("."), val, op != "!="))
    return lambda body: all(check(body) for check in checks)


def _field_eq(path: list[str], val: str, positive: bool, body: Body) -> bool:
    node: Any = body
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    actual = "" if node is None else str(node).lower() if isinstance(node, bool) else str(node)
    return (actual == val) == positive


# ---------------------------------------------------------------------------------------------
# The server itself.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _WatchEvent:
    rv: int
    gp: tuple[str, str]  # (group, plural)
    type: str  # ADDED, MODIFIED, DELETED
    obj: Body  # the new state (or the last state for DELETED), in the storage version
    old: Body | None  # the previous state, for selector transitions


@dataclasses.dataclass(frozen=True)
class _Query:
    """A parsed request to a resource: what, where, and how."""

    rdef: ResourceDef
    version: str
    namespace: str | None
    name: str | None
    subresource: str | None
    params: Mapping[str, str]


@attrs.mutable
class _LoopbackServer(kmock.Server):
    """
    kmock's TCP server, minus the DNS interceptor and the client session.

    REPLACED PART (why): ``kmock.Server.__aenter__`` installs a process-wide monkey-patch of
    ``aiohttp.TCPConnector._resolve_host`` and insists on LIFO un-patching; with several
    emulators (module- & test-scoped) in different threads/loops, that chain gets inconsistent
    and fails at exit. We connect by IP anyway, so neither the interceptor nor the client is needed.
    """

    async def __aenter__(self) -> Self:
        self._managed_server = self._server_cls(self.handler, host=self._host, port=self._port)
        await self._managed_server.start_server()
        self.handler.servers.append(self)
        return self

    async def __aexit__(self, *_: Any) -> None:
        self.handler.servers.remove(self)
        assert self._managed_server is not None
        await self._managed_server.close()
        self._managed_server = None


@attrs.define(kw_only=True, eq=False)
class ApiServer(kmock.KubernetesEmulator):
    """
    A stateful emulator of the Kubernetes API that kopf (and kubectl-like clients) can work with.

    It runs in a background thread with its own event loop, so that it is usable from sync
    and async tests, from any event loop, and from subprocesses (via :attr:`kubeconfig`).
    All direct accessors (:meth:`read`, :meth:`create`, :meth:`apply`, ...) are thread-safe.
    """

    crds: Sequence[CrdSource] = ()  # CRD files/YAML texts/dicts to register at startup
    peering: bool = True  # register kopf's peering CRDs (kopfpeerings & clusterkopfpeerings)
    namespaces: Sequence[str] = ("default", "kube-system")  # pre-created namespaces
    strict_namespaces: bool = True  # 404 on objects in non-existent namespaces (as K8s does)
    watch_cache_size: int = 10_000  # how many events are kept for ?resourceVersion=N replays (else 410)
    host: str = "127.0.0.1"

    _defs: dict[tuple[str, str], ResourceDef] = attrs.field(factory=dict, init=False)
    _state: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _log: list[_WatchEvent] = attrs.field(factory=list, init=False)
    _log_rvs: list[int] = attrs.field(factory=list, init=False)
    _log_floor: int = attrs.field(default=0, init=False)
    _wakeups: set[asyncio.Event] = attrs.field(factory=set, init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)
    _stopping: asyncio.Event | None = attrs.field(default=None, init=False)
    _startup_error: BaseException | None = attrs.field(default=None, init=False)
    _tmpdir: tempfile.TemporaryDirectory[str] | None = attrs.field(default=None, init=False)
    _port: int | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        # NB: skip KubernetesEmulator.__attrs_post_init__: its LIST/WATCH/FETCH/CREATE/UPDATE/DELETE
        # fallbacks mutate the state naively (before any reaction) and cannot be hooked partially.
        # We keep the scaffold's discovery & 404 fallbacks, and add our one realistic fallback.
        kmock.KubernetesScaffold.__attrs_post_init__(self)
        self.fallback[self._is_resource_request] << self._serve_resource
        with self._state:
            for rdef in _builtin_defs():
                self._register(rdef)
            for ns in self.namespaces:
                self._create(self._defs[_NS_GP], None, {"metadata": {"name": ns}})
            for source in ([PEERING_CRDS] if self.peering else []) + list(self.crds):
                for doc in _load_docs(source):
                    self.apply(doc)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("The API server is already started.")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="kube-api", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30) or self._startup_error is not None:
            raise RuntimeError("The emulated API server failed to start.") from self._startup_error
        self._tmpdir = tempfile.TemporaryDirectory(prefix="kube-api-")
        self.write_kubeconfig(pathlib.Path(self._tmpdir.name) / "kubeconfig")
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=30)
        self._thread = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def _thread_main(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._amain(ready))
        except BaseException as e:  # pragma: no cover
            self._startup_error = e
            ready.set()

    async def _amain(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with self, _LoopbackServer(self, host=self.host) as server:
            self._port = server.port
            ready.set()
            await self._stopping.wait()
            self._wake_watchers()  # let all the watch-streams exit before the server closes
            await asyncio.sleep(0)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("The API server is not started.")
        return self._port

    @property
    def server_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def kubeconfig(self) -> pathlib.Path:
        """A kubeconfig file pointing to this server (exists while the server runs)."""
        if self._tmpdir is None:
            raise RuntimeError("The API server is not started.")
        return pathlib.Path(self._tmpdir.name) / "kubeconfig"

    def write_kubeconfig(self, path: str | os.PathLike[str], namespace: str = "default") -> pathlib.Path:
        path = pathlib.Path(path)
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "preferences": {},
                    "clusters": [{"name": "emulator", "cluster": {"server": self.server_url}}],
                    "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
                    "contexts": [
                        {
                            "name": "emulator",
                            "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
                        }
                    ],
                    "current-context": "emulator",
                }
            )
        )
        return path

    def connection_info(self, *, priority: int = 1000) -> kopf.ConnectionInfo:
        """Credentials for kopf's ``@kopf.on.login`` handlers."""
        return kopf.ConnectionInfo(
            server=self.server_url,
            insecure=True,
            token="emulator-token",
            default_namespace="default",
            priority=priority,
        )

    # -- assertion helpers -----------------------------------------------------------------------

    @property
    def server_errors(self) -> list[Exception]:
        """Unexpected errors (bugs of the emulator or of user reactions), excluding K8s-like 4xx."""
        return [e for e in self._errors[-1] if not isinstance(e, ApiError) or e.status >= 500] if self._errors else []

    def log(self) -> list[kmock.Request]:
        """A snapshot of all requests served so far (kmock's request objects)."""
        return list(self._requests)

    def compact(self) -> None:
        """Forget the watch history, as etcd compaction does: older resourceVersions get 410 Gone."""
        with self._state:
            self._log.clear()
            self._log_rvs.clear()
            self._log_floor = self._rv

    # -- direct (user-side) access, thread-safe ------------------------------------------------

    def find_resource(self, spec: str) -> ResourceDef:
        """By plural, ``plural.group``, ``group/version/plural``, ``v1/plural``, kind, or a short name."""
        with self._state:
            rdefs = list(self._defs.values())
        for rdef in rdefs:
            names = {
                rdef.plural,
                rdef.kind,
                rdef.kind.lower(),
                rdef.singular,
                *rdef.shortnames,
                rdef.group_resource,
                *(f"{rdef.api_version(v)}/{rdef.plural}" for v in rdef.versions),
            }
            if spec in names:
                return rdef
        raise LookupError(f"No such resource: {spec!r}")

    def _find_by_kind(self, api_version: str, kind: str) -> tuple[ResourceDef, str]:
        group, _, version = api_version.rpartition("/")
        with self._state:
            for rdef in self._defs.values():
                if rdef.group == group and rdef.kind == kind and version in rdef.versions:
                    return rdef, version
        raise _status(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"')

    def read(self, resource: str, name: str, namespace: str | None = None) -> Body | None:
        """The current state of an object (a deep copy), or None if it does not exist."""
        rdef = self.find_resource(resource)
        with self._state:
            obj = self._get(rdef, namespace if rdef.namespaced else None, name)
            return None if obj is None else self._output(rdef, rdef.storage_version, obj)

    def list_objects(self, resource: str, namespace: str | None = None, *, label_selector: str = "") -> list[Body]:
        rdef = self.find_resource(resource)
        predicate = parse_label_selector(label_selector) if label_selector else (lambda _: True)
        with self._state:
            return [
                self._output(rdef, rdef.storage_version, obj) for obj in self._iter(rdef, namespace) if predicate(obj)
            ]

    def create(self, body: Mapping[str, Any], namespace: str | None = None) -> Body:
        """Create an object as a user would (with validation); raises ApiError on 4xx."""
        rdef, version = self._find_by_kind(body.get("apiVersion", ""), body.get("kind", ""))
        ns = namespace or (body.get("metadata") or {}).get("namespace") or "default"
        with self._state:
            obj, _ = self._create(rdef, ns if rdef.namespaced else None, copy.deepcopy(dict(body)), version=version)
            return self._output(rdef, version, obj)

    def apply(self, body: Mapping[str, Any], namespace: str | None = None) -> Body:
        """Like ``kubectl apply``: create if absent, else merge-patch the given fields."""
        rdef, version = self._find_by_kind(body.get("apiVersion", ""), body.get("kind", ""))
        meta = body.get("metadata") or {}
        ns = (namespace or meta.get("namespace") or "default") if rdef.namespaced else None
        with self._state:
            if meta.get("name") and self._get(rdef, ns, meta["name"]) is not None:
                patch = {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
                obj, _ = self._update(rdef, version, ns, meta["name"], functools.partial(merge_patch, patch=patch))
                if rdef.has_status(version) and "status" in body:
                    obj, _ = self._update(
                        rdef,
                        version,
                        ns,
                        meta["name"],
                        functools.partial(merge_patch, patch={"status": body["status"]}),
                        subresource="status",
                    )
            else:
                obj, _ = self._create(rdef, ns, copy.deepcopy(dict(body)), version=version)
            return self._output(rdef, version, obj)

    def load_yaml(self, source: CrdSource) -> list[Body]:
        """Apply all documents of a YAML file or text (CRDs first-class: they register resources)."""
        return [self.apply(doc) for doc in _load_docs(source)]

    def patch_object(
        self,
        resource: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        patch_type: Literal["merge", "json"] = "merge",
    ) -> Body:
        rdef = self.find_resource(resource)
        fn = functools.partial(merge_patch if patch_type == "merge" else self._json_patch_or_422, patch=patch)
        with self._state:
            obj, _ = self._update(
                rdef, rdef.storage_version, namespace if rdef.namespaced else None, name, fn, subresource=subresource
            )
            return self._output(rdef, rdef.storage_version, obj)

    def delete_object(self, resource: str, name: str, namespace: str | None = None) -> Body:
        rdef = self.find_resource(resource)
        with self._state:
            obj = self._delete(rdef, namespace if rdef.namespaced else None, name)
            return self._output(rdef, rdef.storage_version, obj)

    async def wait_for(
        self,
        resource: str,
        name: str,
        namespace: str | None = None,
        predicate: Callable[[Body | None], bool] = lambda obj: obj is not None,
        *,
        within: float = 10.0,
        interval: float = 0.02,
    ) -> Body | None:
        """Poll an object until the predicate is true (the object is None if absent); else fail."""
        deadline = time.monotonic() + within
        while True:
            obj = self.read(resource, name, namespace)
            if predicate(obj):
                return obj
            if time.monotonic() > deadline:
                raise TimeoutError(f"{resource}/{name} did not satisfy the condition in {within}s; last: {obj!r}")
            await asyncio.sleep(interval)

    # -- discovery ---------------------------------------------------------------------------------

    def _register(self, rdef: ResourceDef) -> None:
        with self._state:
            old = self._defs.get((rdef.group, rdef.plural))
            if old is not None:
                self._unregister_discovery(old)
            self._defs[rdef.group, rdef.plural] = rdef
            for v in rdef.served_versions():
                self._resources[kmock.resource(rdef.group, v, rdef.plural)] = kmock.ResourceInfo(
                    kind=rdef.kind,
                    singular=rdef.singular,
                    namespaced=rdef.namespaced,
                    verbs=_VERBS,
                    shortnames=rdef.shortnames,
                    categories=rdef.categories,
                    subresources={"status"} if rdef.has_status(v) else set(),
                )

    def _unregister_discovery(self, rdef: ResourceDef) -> None:
        for v in rdef.versions:
            with contextlib.suppress(KeyError):
                del self._resources[kmock.resource(rdef.group, v, rdef.plural)]

    def _get_resources(self) -> list[kmock.resource]:
        with self._state:
            return list(self._resources)

    async def _serve_apis(self, request: kmock.Request) -> kmock.Payload:
        with self._state:
            result: Any = await super()._serve_apis(request)
        for group in result["groups"]:
            self._fix_versions(group)
        return result

    async def _serve_group(self, request: kmock.Request) -> kmock.Payload:
        with self._state:
            result: Any = await super()._serve_group(request)
        self._fix_versions(result)
        return result

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        with self._state:
            return await super()._serve_version(request)

    async def _serve_root(self, request: kmock.Request) -> kmock.Payload:
        with self._state:
            return await super()._serve_root(request)

    @staticmethod
    def _fix_versions(group: Body) -> None:
        # kmock picks a random "preferred" version from a set; K8s prefers GA > beta > alpha.
        group["versions"].sort(key=lambda v: _version_priority(v["version"]))
        group["preferredVersion"] = group["versions"][0]

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, ApiError):  # a K8s-like Status, without kmock's traceback in details
            return aiohttp.web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": exc.message,
                    "reason": exc.reason,
                    "details": exc.details or {},
                    "code": exc.status,
                },
                status=exc.status,
            )
        return await super()._render_error(exc)

    # -- request parsing -------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """
        REPLACED PART (why): ``kmock.RawHandler.__call__`` parses URLs with kmock's own parser,
        which crashes on ``/api/v1/namespaces`` (500) and misreads ``/api/v1/namespaces/NAME``
        & ``/api/v1/namespaces/NAME/status`` as namespaced requests; there is no hook for the parser.
        This is the same flow with a K8s-grade URL parser; the request log & error capture are kmock's.
        """
        await raw_request.read()
        try:
            request = await self._parse_request(raw_request, len(self._requests))
            self._requests.append(request)
            return await self._handle(request)
        except Exception as e:
            if self._errors:
                self._errors[-1].append(e)
            if isinstance(e, ApiError) and e.status >= 500:
                logger.error("Emulator failure: %r", e)
            elif not isinstance(e, ApiError):
                logger.exception("Emulator failure on %s %s", raw_request.method, raw_request.path_qs)
            return await self._render_error(e)

    @staticmethod
    async def _parse_request(raw: aiohttp.web.BaseRequest, id: int) -> kmock.Request:
        body = await raw.read()
        data: Any = None
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                if "yaml" in (raw.content_type or ""):
                    with contextlib.suppress(yaml.YAMLError):
                        data = yaml.safe_load(body)
        parts = [p for p in raw.path.split("/") if p]
        group = version = plural = namespace = name = subresource = None
        rest: list[str] = []
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 2 and parts[0] == "apis":
            group, version, rest = parts[1], (parts[2] if len(parts) >= 3 else None), parts[3:]
        if group is not None and rest:
            if (
                rest[0] == "namespaces"
                and len(rest) >= 3
                and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
            ):
                namespace, rest = rest[1], rest[2:]
            plural = rest[0]
            name = rest[1] if len(rest) >= 2 else None
            subresource = "/".join(rest[2:]) or None
        method = kmock.method(raw.method)
        query = dict(raw.query)
        action: kmock.action | None = None
        if plural is not None:
            if method == kmock.method.GET and query.get("watch") in ("true", "1"):
                action = kmock.action.WATCH
            elif method == kmock.method.GET:
                action = kmock.action.FETCH if name else kmock.action.LIST
            elif method == kmock.method.POST and not name:
                action = kmock.action.CREATE
            elif method in (kmock.method.PATCH, kmock.method.PUT) and name:
                action = kmock.action.UPDATE
            elif method == kmock.method.DELETE and name:
                action = kmock.action.DELETE
        # NB: keywords only! kmock.resource('', 'v1', None) would parse 'v1' as a plural name.
        resource = None if group is None else kmock.resource(group=group, version=version, plural=plural)
        return kmock.Request(
            id=id,
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=query,
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            body=body,
            text=body.decode("utf-8", errors="replace"),
            data=data,
            action=action,
            resource=resource,
            namespace=namespace,
            name=name,
            subresource=subresource,
        )

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # REPLACED PART (why): KubernetesEmulator._handle() applies creations/patches/deletions
        # to the stored objects naively BEFORE any reaction, with no hook to change the semantics.
        # We go straight to kmock's reaction dispatching; the state changes in _serve_resource().
        return await kmock.RawHandler._handle(self, request)

    @staticmethod
    def _is_resource_request(request: kmock.Request) -> bool:
        return request.resource is not None and request.resource.plural is not None

    # -- serving -------------------------------------------------------------------------------

    def _query(self, request: kmock.Request) -> _Query:
        res = request.resource
        assert res is not None and res.group is not None and res.plural is not None
        with self._state:
            rdef = self._defs.get((res.group, res.plural))
        if rdef is None or res.version not in rdef.versions or not rdef.versions[res.version].served:
            raise _resource_not_found()
        if request.namespace is not None and not rdef.namespaced:
            raise _resource_not_found()
        if request.subresource not in (None, "status") or (
            request.subresource == "status" and not rdef.has_status(res.version)
        ):
            raise _resource_not_found()
        return _Query(
            rdef=rdef,
            version=str(res.version),
            namespace=request.namespace,
            name=request.name,
            subresource=request.subresource,
            params=request.params,
        )

    async def _serve_resource(self, request: kmock.Request) -> kmock.Payload:
        q = self._query(request)
        method = str(request.method.value).upper()
        if method == "GET" and request.action == kmock.action.WATCH:
            return self._respond(200, self._watch(q), content_type="application/json")
        if q.rdef.namespaced and q.name and q.namespace is None:
            raise _resource_not_found()
        with self._state:
            if method == "GET" and q.name:
                obj = self._get(q.rdef, q.namespace, q.name)
                if obj is None:
                    raise self._not_found(q.rdef, q.name)
                return self._respond(200, self._output(q.rdef, q.version, obj))
            if method == "GET":
                return self._respond(200, self._list(q))
            if method == "POST" and not q.name:
                self._check_body(request.data, q)
                ns = (
                    q.namespace or (request.data.get("metadata") or {}).get("namespace") or "default"
                    if q.rdef.namespaced
                    else None
                )
                obj, warnings = self._create(
                    q.rdef,
                    ns,
                    copy.deepcopy(request.data),
                    version=q.version,
                    dry_run="dryRun" in q.params,
                    field_validation=q.params.get("fieldValidation", "Warn"),
                )
                return self._respond(201, self._output(q.rdef, q.version, obj), warnings=warnings)
            if method == "PUT" and q.name:
                self._check_body(request.data, q)
                replacement = copy.deepcopy(request.data)
                if not ((replacement.get("metadata") or {}).get("resourceVersion")):
                    raise _invalid(
                        q.rdef.kind,
                        q.rdef.group,
                        q.name,
                        [
                            FieldCause(
                                "FieldValueInvalid",
                                "metadata.resourceVersion",
                                "Invalid value: 0x0: must be specified for an update",
                            )
                        ],
                    )
                obj, warnings = self._update(
                    q.rdef,
                    q.version,
                    q.namespace,
                    q.name,
                    lambda _: replacement,
                    subresource=q.subresource,
                    dry_run="dryRun" in q.params,
                    field_validation=q.params.get("fieldValidation", "Warn"),
                )
                return self._respond(200, self._output(q.rdef, q.version, obj), warnings=warnings)
            if method == "PATCH" and q.name:
                fn = self._patcher(request, q)
                if fn is None:  # server-side apply of an absent object creates it
                    obj, warnings = self._create(q.rdef, q.namespace, copy.deepcopy(request.data), version=q.version)
                    return self._respond(201, self._output(q.rdef, q.version, obj), warnings=warnings)
                obj, warnings = self._update(
                    q.rdef,
                    q.version,
                    q.namespace,
                    q.name,
                    fn,
                    subresource=q.subresource,
                    dry_run="dryRun" in q.params,
                    field_validation=q.params.get("fieldValidation", "Warn"),
                )
                return self._respond(200, self._output(q.rdef, q.version, obj), warnings=warnings)
            if method == "DELETE" and q.name:
                options = request.data if isinstance(request.data, dict) else {}
                obj = self._delete(
                    q.rdef,
                    q.namespace,
                    q.name,
                    preconditions=options.get("preconditions") or {},
                    dry_run="dryRun" in q.params or bool(options.get("dryRun")),
                )
                return self._respond(200, self._output(q.rdef, q.version, obj))
            if method == "DELETE":
                listing = self._list(q)
                for item in listing["items"]:
                    meta = item["metadata"]
                    self._delete(q.rdef, meta.get("namespace"), meta["name"])
                return self._respond(200, listing)
        raise _status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def _respond(
        status: int, payload: Any, *, content_type: str | None = None, warnings: Sequence[str] = ()
    ) -> kmock.Response:
        # NB: kmock merges these headers into its reaction's (shared) Response, so ALWAYS set the same
        # keys, with None for "absent" (kmock skips None values when rendering the actual response).
        warning = ", ".join(f"299 - {json.dumps(w)}" for w in warnings) or None
        return kmock.Response(
            status=status, payload=payload, headers={"Content-Type": content_type, "Warning": warning}
        )

    @staticmethod
    def _check_body(data: Any, q: _Query) -> None:
        if not isinstance(data, dict):
            raise _bad_request(
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json, application/yaml"
            )

    def _patcher(self, request: kmock.Request, q: _Query) -> Callable[[Body], Body] | None:
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        data = request.data
        if ctype == "application/merge-patch+json":
            if not isinstance(data, dict):
                raise _bad_request("the body of the request was not a JSON object")
            return functools.partial(merge_patch, patch=data)
        if ctype == "application/json-patch+json":
            return functools.partial(self._json_patch_or_422, patch=data)
        if ctype == "application/strategic-merge-patch+json" and not q.rdef.custom:
            return functools.partial(merge_patch, patch=data)  # an approximation for built-ins
        if ctype == "application/apply-patch+yaml":  # an approximation of server-side apply
            if not isinstance(data, dict):
                raise _bad_request("the body of the request was not a YAML/JSON object")
            assert q.name is not None
            if self._get(q.rdef, q.namespace, q.name) is None:
                return None
            fields = {k: v for k, v in data.items() if k not in ("apiVersion", "kind")}
            return functools.partial(merge_patch, patch=fields)
        raise _status(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted "
            "media types include: application/json-patch+json, application/merge-patch+json, "
            "application/apply-patch+yaml" + ("" if q.rdef.custom else ", application/strategic-merge-patch+json"),
        )

    @staticmethod
    def _json_patch_or_422(body: Body, patch: Any) -> Body:
        try:
            result = json_patch(body, patch)
        except PatchError as e:
            # As kube-apiserver does for JSON-patch application errors (incl. failed "test" ops).
            raise _status(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {e}",
                {"causes": [{"message": str(e)}]},
            ) from e
        if not isinstance(result, dict):
            raise _status(422, "Invalid", "the server rejected our request: the patched object is not an object")
        return result

    def _not_found(self, rdef: ResourceDef, name: str) -> ApiError:
        return _status(
            404,
            "NotFound",
            f"{rdef.group_resource} {json.dumps(name)} not found",
            {"name": name, "group": rdef.group, "kind": rdef.plural},
        )

    # -- state: reading --------------------------------------------------------------------------

    def _get(self, rdef: ResourceDef, namespace: str | None, name: str) -> Body | None:
        key = (rdef.key, namespace, name)
        if key not in self._objects:
            return None
        obj = self._objects[key]
        return None if obj.deleted else obj.last.raw

    def _iter(self, rdef: ResourceDef, namespace: str | None) -> Iterator[Body]:
        key = rdef.key
        found = [
            (ns or "", name, obj)
            for (res, ns, name), obj in self._objects.items()
            if res == key and not obj.deleted and (namespace is None or ns == namespace)
        ]
        for _, _, obj in sorted(found, key=lambda t: (t[0], t[1])):
            yield obj.last.raw

    def _output(self, rdef: ResourceDef, version: str, body: Body) -> Body:
        result = copy.deepcopy(body)
        result["apiVersion"] = rdef.api_version(version)
        result["kind"] = rdef.kind
        return result

    def _list(self, q: _Query) -> Body:
        predicate = self._filter(q)
        items = [obj for obj in self._iter(q.rdef, q.namespace) if predicate(obj)]
        limit = int(q.params.get("limit") or 0)
        cont = q.params.get("continue")
        if cont:
            try:
                start = json.loads(base64.b64decode(cont))["start"]
            except Exception as e:
                raise _bad_request(f"invalid continue token: {e}") from e
            items = [o for o in items if [o["metadata"].get("namespace") or "", o["metadata"]["name"]] > start]
        next_token = None
        if limit and len(items) > limit:
            items = items[:limit]
            last = items[-1]["metadata"]
            next_token = base64.b64encode(
                json.dumps({"start": [last.get("namespace") or "", last["name"]]}).encode()
            ).decode()
        meta: Body = {"resourceVersion": str(self._rv)}
        if next_token:
            meta["continue"] = next_token
        return {
            "apiVersion": q.rdef.api_version(q.version),
            "kind": f"{q.rdef.kind}List",
            "metadata": meta,
            "items": [self._output(q.rdef, q.version, obj) for obj in items],
        }

    def _filter(self, q: _Query) -> Predicate:
        checks: list[Predicate] = []
        if q.params.get("labelSelector"):
            checks.append(parse_label_selector(q.params["labelSelector"]))
        if q.params.get("fieldSelector"):
            checks.append(parse_field_selector(q.params["fieldSelector"]))
        if q.name:
            checks.append(lambda body: body["metadata"]["name"] == q.name)
        if q.namespace:
            checks.append(lambda body: body["metadata"].get("namespace") == q.namespace)
        return lambda body: all(check(body) for check in checks)

    # -- state: writing --------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _commit(self, rdef: ResourceDef, etype: str, body: Body, old: Body | None) -> None:
        meta = body["metadata"]
        key = (rdef.key, meta.get("namespace"), meta["name"])
        stored = copy.deepcopy(body)
        if key not in self._objects:
            self._objects[key] = stored
        else:
            self._objects[key].history.append(stored)
        if etype == "DELETED":
            self._objects[key].delete()
        event = _WatchEvent(
            rv=int(meta["resourceVersion"]),
            gp=(rdef.group, rdef.plural),
            type=etype,
            obj=stored,
            old=copy.deepcopy(old) if old is not None else None,
        )
        self._log.append(event)
        self._log_rvs.append(event.rv)
        if len(self._log) > self.watch_cache_size * 2:
            cut = len(self._log) - self.watch_cache_size
            self._log_floor = self._log_rvs[cut - 1]
            del self._log[:cut], self._log_rvs[:cut]
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake_watchers)

    def _wake_watchers(self) -> None:
        for event in list(self._wakeups):
            event.set()

    def _prepare(
        self, rdef: ResourceDef, version: str, body: Body, old: Body | None, field_validation: str
    ) -> list[str]:
        """Prune, default, and validate a body in place. Returns the warnings (unknown fields)."""
        meta = body.setdefault("metadata", {})
        name = meta.get("name") or meta.get("generateName") or ""
        if not isinstance(meta, dict):
            raise _bad_request("metadata must be an object")
        for field in ("labels", "annotations"):
            values = meta.get(field) or {}
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                raise _bad_request(
                    f"json: cannot unmarshal {field} into Go struct field ObjectMeta.metadata.{field} "
                    f"of type map[string]string: {values!r}"
                )
        finalizers = meta.get("finalizers") or []
        if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
            raise _bad_request(f"json: cannot unmarshal metadata.finalizers of type []string: {finalizers!r}")
        schema = rdef.schema(version)
        if schema is None:
            return []
        unknown: list[str] = []
        pruned = prune_and_default(body, schema, "", unknown)
        body.clear()
        body.update(pruned)
        if unknown and field_validation == "Strict":
            raise _bad_request("strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown))
        causes = validate(body, schema, old if old is not None else _MISSING)
        if causes:
            raise _invalid(rdef.kind, rdef.group, name, causes)
        return [] if field_validation == "Ignore" else [f'unknown field "{p}"' for p in unknown]

    def _create(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        body: Any,
        *,
        version: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Warn",
    ) -> tuple[Body, list[str]]:
        version = version or rdef.storage_version
        if not isinstance(body, dict):
            raise _bad_request("the object must be a JSON/YAML mapping")
        if body.get("kind") not in (None, rdef.kind):
            raise _bad_request(f"the kind {body.get('kind')!r} does not match the expected kind {rdef.kind!r}")
        meta = body.setdefault("metadata", {})
        if rdef.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise _bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
            if self.strict_namespaces and self._get(self._defs[_NS_GP], None, str(namespace)) is None:
                raise _status(
                    404,
                    "NotFound",
                    f"namespaces {json.dumps(namespace)} not found",
                    {"name": namespace, "kind": "namespaces"},
                )
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            alphabet = "bcdfghjklmnpqrstvwxz2456789"  # as in K8s: no vowels, no confusables
            for _ in range(100):
                meta["name"] = meta["generateName"] + "".join(random.choices(alphabet, k=5))
                if self._get(rdef, namespace, meta["name"]) is None:
                    break
        name = meta.get("name")
        if not name:
            raise _invalid(
                rdef.kind,
                rdef.group,
                "",
                [FieldCause("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")],
            )
        self._check_name(rdef, name)
        if rdef.has_status(version):
            body.pop("status", None)  # ignored on creation when the status subresource is enabled
        for field in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
            "managedFields",
        ):
            meta.pop(field, None)
        warnings = self._prepare(rdef, version, body, None, field_validation)
        if (rdef.group, rdef.plural) == _CRD_GP:
            new_def = _parse_crd(body)  # may raise 422
        if self._get(rdef, namespace, name) is not None:
            raise _status(
                409,
                "AlreadyExists",
                f"{rdef.group_resource} {json.dumps(name)} already exists",
                {"name": name, "group": rdef.group, "kind": rdef.plural},
            )
        meta.update(
            {
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "generation": 1,
            }
        )
        body["apiVersion"] = rdef.api_version(rdef.storage_version)
        body["kind"] = rdef.kind
        if (rdef.group, rdef.plural) == _NS_GP:
            body["status"] = {"phase": "Active"}
        if (rdef.group, rdef.plural) == _CRD_GP:
            body["status"] = {
                "acceptedNames": (body.get("spec") or {}).get("names") or {},
                "storedVersions": [new_def.storage_version],
                "conditions": [
                    {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": _now()}
                    for t, r, m in [
                        ("NamesAccepted", "NoConflicts", "no conflicts found"),
                        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                    ]
                ],
            }
        if dry_run:
            return body, warnings
        meta["resourceVersion"] = self._next_rv()
        if (rdef.group, rdef.plural) == _CRD_GP:
            self._register(new_def)
        self._commit(rdef, "ADDED", body, None)
        return body, warnings

    @staticmethod
    def _check_name(rdef: ResourceDef, name: str) -> None:
        if (rdef.group, rdef.plural) == _NS_GP:
            ok, what = re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, "RFC 1123 label"
        else:
            label = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
            ok = re.fullmatch(rf"{label}(\.{label})*", name) and len(name) <= 253
            what = "RFC 1123 subdomain"
        if not ok:
            raise _invalid(
                rdef.kind,
                rdef.group,
                name,
                [
                    FieldCause(
                        "FieldValueInvalid",
                        "metadata.name",
                        f"Invalid value: {json.dumps(name)}: a lowercase {what} must consist of lower case "
                        f"alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                    )
                ],
            )

    def _update(
        self,
        rdef: ResourceDef,
        version: str,
        namespace: str | None,
        name: str,
        transform: Callable[[Body], Body],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Warn",
    ) -> tuple[Body, list[str]]:
        old = self._get(rdef, namespace, name)
        if old is None:
            raise self._not_found(rdef, name)
        old_view = self._output(rdef, version, old)
        new = transform(copy.deepcopy(old_view))
        if not isinstance(new, dict):
            raise _bad_request("the patched object is not an object")
        new_meta = new.get("metadata")
        if not isinstance(new_meta, dict):
            new_meta = new["metadata"] = {}
        old_meta = old["metadata"]

        # Optimistic concurrency: a resourceVersion in the new body must match the current one.
        new_rv = new_meta.get("resourceVersion")
        if new_rv not in (None, "") and str(new_rv) != old_meta["resourceVersion"]:
            raise _status(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {rdef.group_resource} "
                f"{json.dumps(name)}: the object has been modified; please apply your changes to the "
                f"latest version and try again",
                {"name": name, "group": rdef.group, "kind": rdef.plural},
            )

        # The status subresource isolation: status-only via /status, everything-but-status otherwise.
        if rdef.has_status(version):
            if subresource == "status":
                status = new.get("status", _MISSING)
                new = copy.deepcopy(old_view)
                if status is _MISSING:
                    new.pop("status", None)
                else:
                    new["status"] = status
            elif "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        new_meta = new["metadata"]

        # Server-managed & immutable metadata fields are preserved from the current state.
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ):
            if field in old_meta:
                new_meta[field] = old_meta[field]
            else:
                new_meta.pop(field, None)
        new["apiVersion"] = rdef.api_version(version)
        new["kind"] = rdef.kind
        if old_meta.get("deletionTimestamp"):
            added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise _invalid(
                    rdef.kind,
                    rdef.group,
                    name,
                    [
                        FieldCause(
                            "FieldValueForbidden",
                            "metadata.finalizers",
                            f"Forbidden: no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {sorted(added)!r}",
                        )
                    ],
                )
        warnings = self._prepare(rdef, version, new, old_view, field_validation)
        if (rdef.group, rdef.plural) == _CRD_GP:
            new_def = _parse_crd(new)
        new["apiVersion"] = rdef.api_version(rdef.storage_version)
        if new == old:
            return old, warnings  # no-op: no new resourceVersion, no watch event (as in K8s)
        if _spec_of(new, rdef) != _spec_of(old, rdef):
            new_meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if dry_run:
            return new, warnings
        new_meta["resourceVersion"] = self._next_rv()
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            self._commit(rdef, "DELETED", new, old)  # the last finalizer is gone: delete for real
            self._after_delete(rdef, new)
        else:
            if (rdef.group, rdef.plural) == _CRD_GP:
                self._register(new_def)
            self._commit(rdef, "MODIFIED", new, old)
        return new, warnings

    def _delete(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Body:
        old = self._get(rdef, namespace, name)
        if old is None:
            raise self._not_found(rdef, name)
        for field in ("uid", "resourceVersion"):
            expected = (preconditions or {}).get(field)
            if expected is not None and expected != old["metadata"].get(field):
                raise _status(
                    409,
                    "Conflict",
                    f"Operation cannot be fulfilled on {rdef.group_resource} "
                    f"{json.dumps(name)}: the {field} in the precondition ({expected}) does not match "
                    f"the {field} in record ({old['metadata'].get(field)}). The object might have been "
                    f"deleted and then recreated",
                    {"name": name, "group": rdef.group, "kind": rdef.plural},
                )
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old  # already being deleted: nothing changes
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if dry_run:
                return new
            new["metadata"]["resourceVersion"] = self._next_rv()
            self._commit(rdef, "MODIFIED", new, old)
            return new
        new = copy.deepcopy(old)
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._commit(rdef, "DELETED", new, old)
        self._after_delete(rdef, new)
        return new

    def _after_delete(self, rdef: ResourceDef, body: Body) -> None:
        """Cascades: a namespace takes its objects with it; a CRD takes its resource & objects."""
        if (rdef.group, rdef.plural) == _NS_GP:
            ns = body["metadata"]["name"]
            for other in list(self._defs.values()):
                if other.namespaced:
                    for obj in list(self._iter(other, ns)):
                        with contextlib.suppress(ApiError):
                            self._delete(other, ns, obj["metadata"]["name"])
        elif (rdef.group, rdef.plural) == _CRD_GP:
            spec = body.get("spec") or {}
            gone = self._defs.get((spec.get("group"), (spec.get("names") or {}).get("plural")))
            if gone is not None and gone.custom:
                for obj in list(self._iter(gone, None)):
                    new = copy.deepcopy(obj)
                    new["metadata"]["resourceVersion"] = self._next_rv()
                    self._commit(gone, "DELETED", new, obj)
                self._unregister_discovery(gone)
                del self._defs[gone.group, gone.plural]

    # -- watching --------------------------------------------------------------------------------

    def _watch(self, q: _Query) -> AsyncIterator[kmock.Payload]:
        predicate = self._filter(q)  # validate the selectors BEFORE the streaming starts (400 if bad)
        rv_param = q.params.get("resourceVersion") or ""
        if rv_param and not rv_param.isdigit():
            raise _bad_request(f"invalid resource version: {rv_param!r}")
        timeout = float(q.params["timeoutSeconds"]) if q.params.get("timeoutSeconds") else None
        return self._watch_stream(q, predicate, rv_param, timeout)

    async def _watch_stream(
        self, q: _Query, predicate: Predicate, rv_param: str, timeout_s: float | None
    ) -> AsyncIterator[kmock.Payload]:
        # NB: the snapshot (the cursor) is taken BEFORE the headers are sent: once a client sees
        # the response, every later change must be in the stream (no races in tests).
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        gp = (q.rdef.group, q.rdef.plural)
        send_initial = q.params.get("sendInitialEvents") == "true"
        with self._state:
            if rv_param in ("", "0") or send_initial:
                cursor = self._rv
                initial = [
                    {"type": "ADDED", "object": self._output(q.rdef, q.version, obj)}
                    for obj in self._iter(q.rdef, q.namespace)
                    if predicate(obj)
                ]
            elif int(rv_param) < self._log_floor:
                cursor, initial = -1, []
            else:
                cursor, initial = int(rv_param), []
        try:
            yield b""  # send the headers now, even if there are no events for a while
            if cursor < 0:
                yield {
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "code": 410,
                        "reason": "Expired",
                        "message": f"too old resource version: {rv_param} ({self._log_floor})",
                    },
                }
                return
            for initial_event in initial:
                yield initial_event
            if send_initial:
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": q.rdef.api_version(q.version),
                        "kind": q.rdef.kind,
                        "metadata": {
                            "resourceVersion": str(cursor),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                }
            while self._stopping is not None and not self._stopping.is_set():
                wakeup.clear()
                with self._state:
                    expired = cursor < self._log_floor  # a too slow watcher: its history is compacted
                    events = [] if expired else self._log[bisect.bisect_right(self._log_rvs, cursor) :]
                if expired:
                    yield {
                        "type": "ERROR",
                        "object": {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "metadata": {},
                            "status": "Failure",
                            "code": 410,
                            "reason": "Expired",
                            "message": f"too old resource version: {cursor} ({self._log_floor})",
                        },
                    }
                    return
                for event in events:
                    cursor = event.rv
                    if event.gp == gp and (out := self._translate(q, predicate, event)) is not None:
                        yield out
                if events:
                    continue
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout=remaining)
        finally:
            self._wakeups.discard(wakeup)

    def _translate(self, q: _Query, predicate: Predicate, event: _WatchEvent) -> Body | None:
        new_ok = predicate(event.obj)
        old_ok = event.old is not None and predicate(event.old)
        etype: str | None
        if event.type == "MODIFIED":
            etype = "MODIFIED" if new_ok and old_ok else "ADDED" if new_ok else "DELETED" if old_ok else None
        else:
            etype = event.type if new_ok else None
        return None if etype is None else {"type": etype, "object": self._output(q.rdef, q.version, event.obj)}


def _spec_of(body: Body, rdef: ResourceDef) -> Body:
    """What bumps metadata.generation: everything but metadata (and status if it is a subresource)."""
    skipped = {"metadata", "apiVersion", "kind"} | ({"status"} if rdef.has_status() else set())
    return {k: v for k, v in body.items() if k not in skipped}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _load_docs(source: CrdSource) -> list[Body]:
    if isinstance(source, Mapping):
        return [dict(source)]
    text = str(source)
    if isinstance(source, os.PathLike) or ("\n" not in text and pathlib.Path(text).exists()):
        text = pathlib.Path(source).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


# ---------------------------------------------------------------------------------------------
# Running kopf against the emulator: in-process (task or thread) and as a subprocess.
# ---------------------------------------------------------------------------------------------


def fast_settings(settings: kopf.OperatorSettings | None = None) -> kopf.OperatorSettings:
    """
    Settings for quick tests & quick shutdowns of kopf (also applied by the runners below).

    * ``process.ultimate_exiting_timeout=None``: otherwise, if the operator exits NOT via
      the stop-flag (e.g. a crash), kopf SIGKILLs the thread (= the whole pytest process) later.
    * ``queueing.exit_timeout``: how long workers get at exit before cancellation (default 2 s).
    * ``networking.error_backoffs``: retries of 5xx/429 errors (default 1, 1, 2, 3, 5, ... s).
    * ``watching.reconnect_backoff``/``connect_timeout``: re-watching after a disconnect.
    * ``peering.stealth``: no keep-alive log noise.
    """
    s = settings if settings is not None else kopf.OperatorSettings()
    s.process.ultimate_exiting_timeout = None
    s.queueing.exit_timeout = 0.5
    s.networking.error_backoffs = [0.1, 0.2, 0.5]
    s.networking.connect_timeout = 2
    s.networking.request_timeout = 30
    s.watching.connect_timeout = 2
    s.watching.reconnect_backoff = 0.05
    s.peering.stealth = True
    return s


def load_handlers(source: HandlersSource) -> kopf.OperatorRegistry:
    """
    Put the handlers into a FRESH registry (so that operators and tests do not leak handlers).

    ``source`` is a registry (used as is), a callable that registers handlers into a given
    registry, a path to a ``.py`` file (executed as a new module), a module object or a dotted
    module name (imported or re-imported with the fresh registry being the default one).
    """
    if isinstance(source, kopf.OperatorRegistry):
        return source
    registry = kopf.OperatorRegistry()
    previous = kopf.get_default_registry()
    kopf.set_default_registry(registry)
    try:
        if isinstance(source, types.ModuleType):
            importlib.reload(source)
        elif isinstance(source, os.PathLike) or (isinstance(source, str) and source.endswith(".py")):
            path = pathlib.Path(source)
            modname = f"_kopf_handlers_{path.stem}_{uuid.uuid4().hex[:8]}"
            spec = importlib.util.spec_from_file_location(modname, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        elif isinstance(source, str):
            if source in sys.modules:
                importlib.reload(sys.modules[source])
            else:
                importlib.import_module(source)
        else:
            source(registry)
    finally:
        kopf.set_default_registry(previous)
    return registry


class KopfOperator:
    """
    A kopf operator running in-process against the emulator, with a stop-flag for quick exits.

    ``thread=False`` (default): ``kopf.operator()`` runs as a task in the current event loop.
    ``thread=True``: it runs in a separate thread with its own event loop -- needed when several
    operators run at once and one stops before the others: on exit, kopf waits for & cancels ALL
    tasks that appeared in ITS loop after its start (incl. other operators' tasks).

    Usage::

        async with KopfOperator(api, 'path/to/handlers.py', memo=kopf.Memo(x=1)) as op:
            ...  # the operator runs; op.registry, op.settings are available
    """

    def __init__(
        self,
        api: ApiServer,
        handlers: HandlersSource,
        *,
        peering: str | None = None,  # None means --standalone
        priority: int = 0,
        identity: str | None = None,
        namespaces: Sequence[str] | None = None,  # None means cluster-wide
        settings: kopf.OperatorSettings | None = None,
        memo: Any = None,
        thread: bool = False,
        startup_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        stop_grace: float = 1.0,
    ) -> None:
        super().__init__()
        self.api = api
        self.registry = load_handlers(handlers)
        self.settings = fast_settings(settings)
        self.peering = peering
        self.priority = priority
        self.identity = identity
        self.namespaces = namespaces
        self.memo = memo
        self.thread = thread
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.stop_grace = stop_grace
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._astop: asyncio.Event | None = None
        self._tstop = threading.Event()
        self._tready = threading.Event()

        def login(**_: Any) -> kopf.ConnectionInfo:
            return api.connection_info()

        kopf.on.login(registry=self.registry, id="emulator-login")(login)

    def _operator_coro(self, stop_flag: Any, ready_flag: Any) -> Any:
        scope: dict[str, Any] = (
            {"clusterwide": True} if self.namespaces is None else {"namespaces": list(self.namespaces)}
        )
        return kopf.operator(
            registry=self.registry,
            settings=self.settings,
            memo=self.memo,
            standalone=self.peering is None,
            peering_name=self.peering,
            priority=self.priority,
            identity=cast(Any, self.identity),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            **scope,
        )

    async def start(self) -> Self:
        if self.thread:
            self._thread = threading.Thread(target=self._thread_main, name=f"kopf-{self.identity}", daemon=True)
            self._thread.start()
            ok = await asyncio.to_thread(self._tready.wait, self.startup_timeout)
            if not ok or self._thread_error is not None:
                raise RuntimeError("The operator failed to start.") from self._thread_error
        else:
            self._astop = asyncio.Event()
            ready = asyncio.Event()
            self._task = asyncio.create_task(self._operator_coro(self._astop, ready), name="kopf-operator")
            waiter = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait(
                {self._task, waiter}, timeout=self.startup_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            if self._task in done:
                await self._task  # re-raise
                raise RuntimeError("The operator has exited prematurely.")
            if not done:
                raise RuntimeError("The operator failed to start in time.")
        return self

    def _thread_main(self) -> None:
        async def main() -> None:
            self._thread_loop = asyncio.get_running_loop()
            self._thread_task = asyncio.current_task()
            await self._operator_coro(self._tstop, self._tready)

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass  # cancelled by stop() after the grace period: a normal exit for us
        except BaseException as e:
            self._thread_error = e
            self._tready.set()

    async def stop(self) -> None:
        """
        Set the stop-flag; if kopf is still exiting after ``stop_grace`` seconds, cancel it.

        Why: after its root tasks exit, kopf waits a HARD-CODED 5 s for "hung" tasks, e.g.
        a timer's or a handler's API request caught by the closing session and waiting for
        re-authentication. On cancellation, kopf cancels such tasks immediately instead.
        """
        if self._thread is not None:
            thread, self._thread = self._thread, None
            self._tstop.set()
            await asyncio.to_thread(thread.join, self.stop_grace)
            if thread.is_alive() and self._thread_loop is not None and self._thread_task is not None:
                self._thread_loop.call_soon_threadsafe(self._thread_task.cancel)
                await asyncio.to_thread(thread.join, self.stop_timeout)
            if thread.is_alive():
                raise RuntimeError("The operator thread did not stop in time.")
            if self._thread_error is not None:
                raise self._thread_error
        if self._task is not None and self._astop is not None:
            task, self._task = self._task, None
            self._astop.set()
            done, _ = await asyncio.wait({task}, timeout=self.stop_grace)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=self.stop_timeout)
            elif not task.cancelled():
                task.result()  # re-raise the operator's errors, if any

    @property
    def running(self) -> bool:
        return (self._task is not None and not self._task.done()) or (
            self._thread is not None and self._thread.is_alive()
        )

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_: Any) -> None:
        await self.stop()


class KopfSubprocess:
    """
    ``kopf run`` in a separate process with ``KUBECONFIG`` pointing to the emulator (for kill -9 tests).

    The output goes to a log file (see :attr:`output`). Use as a (sync) context manager or
    ``start()``/``kill()``/``terminate()``/``wait()``.
    """

    def __init__(
        self,
        api: ApiServer,
        handlers: str | os.PathLike[str],
        *,
        peering: str | None = None,
        priority: int = 0,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        self.api = api
        self.args = [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--all-namespaces",
            *(["--verbose"] if verbose else []),
            *(["--standalone"] if peering is None else [f"--peering={peering}"]),
            f"--priority={priority}",
            *extra_args,
            str(handlers),
        ]
        self.env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), **(env or {})}
        self._logfile = tempfile.NamedTemporaryFile(prefix="kopf-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=self._logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        return self

    @property
    def output(self) -> str:
        return pathlib.Path(self._logfile.name).read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def terminate(self) -> None:
        self.kill(signal.SIGTERM)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait()
        self._logfile.close()
        with contextlib.suppress(OSError):
            os.unlink(self._logfile.name)
