"""OpenAPI v3 structural schemas: pruning, defaulting, validation (CEL rules are in :mod:`.cel`)."""

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from .cel import _run_cel_rules
from .errors import FieldCause, _go_repr, _go_value
from .typedefs import _MISSING, Body


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
        # As kube's listtype validation: the 2nd appearance of each repeated item (or map key) is reported.
        if list_type == "set":
            for i in _first_repeats(value):
                causes.append(
                    FieldCause("FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {_go_value(value[i])}")
                )
        old_items: dict[Any, Any] = {}
        if list_type == "map" and map_keys:
            keys = [{k: item[k] for k in map_keys if k in item} if isinstance(item, dict) else {} for item in value]
            for i in _first_repeats(keys):
                causes.append(
                    FieldCause("FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {_go_value(keys[i])}")
                )
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
        causes.extend(_run_cel_rules(value, old, schema, path))
    return causes


def _first_repeats(items: list[Any]) -> list[int]:
    """The indices where items appear for the 2nd time (each repeated item once), as kube's validateListSet."""
    seen: dict[str, int] = {}
    repeats: list[int] = []
    for i, item in enumerate(items):
        key = json.dumps(item, sort_keys=True)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            repeats.append(i)
    return repeats
