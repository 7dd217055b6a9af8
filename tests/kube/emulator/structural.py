"""
Schema checks at CRD registration: what kube-apiserver refuses in an ``openAPIV3Schema`` with a 422.

A subset of ``ValidateCustomResourceDefinitionOpenAPISchema``: ``uniqueItems``, ``properties`` with
``additionalProperties``, and the ``fieldPath`` of CEL rules; the CEL rules themselves are compiled
in :mod:`.cel` (only if the schema passed these checks, as kube skips CEL on schema errors).
"""

import json
from typing import Any

from .cel import valid_field_path
from .errors import FieldCause


def check_schema(schema: Any, path: str) -> list[FieldCause]:
    """The refusals for one schema node and all under it; ``path`` is where it is in the CRD."""
    causes: list[FieldCause] = []
    if not isinstance(schema, dict):
        return causes
    if schema.get("uniqueItems") is True:
        causes.append(
            FieldCause(
                "FieldValueForbidden",
                f"{path}.uniqueItems",
                "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            )
        )
    addl = schema.get("additionalProperties")
    # additionalProperties: true next to properties is tolerated (it changes nothing); false or a schema is not.
    if schema.get("properties") and (addl is False or isinstance(addl, dict)):
        causes.append(
            FieldCause(
                "FieldValueForbidden",
                f"{path}.additionalProperties",
                "Forbidden: additionalProperties and properties are mutual exclusive",
            )
        )
    causes.extend(check_schema(addl, f"{path}.additionalProperties"))
    for key, sub in sorted((schema.get("properties") or {}).items()):
        causes.extend(check_schema(sub, f"{path}.properties[{key}]"))
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(key) or []):
            causes.extend(check_schema(sub, f"{path}.{key}[{i}]"))
    causes.extend(check_schema(schema.get("not"), f"{path}.not"))
    causes.extend(check_schema(schema.get("items"), f"{path}.items"))
    for i, rule in enumerate(schema.get("x-kubernetes-validations") or []):
        causes.extend(_check_field_path(rule.get("fieldPath"), schema, f"{path}.x-kubernetes-validations[{i}]"))
    return causes


def _check_field_path(field_path: Any, schema: dict[str, Any], path: str) -> list[FieldCause]:
    if not field_path:
        return []
    causes: list[FieldCause] = []
    at, shown = f"{path}.fieldPath", json.dumps(field_path)
    if not str(field_path).strip():
        causes.append(
            FieldCause("FieldValueInvalid", at, f"Invalid value: {shown}: fieldPath must be non-empty if specified")
        )
    if "\n" in field_path or "\r" in field_path:
        causes.append(
            FieldCause("FieldValueInvalid", at, f"Invalid value: {shown}: fieldPath must not contain line breaks")
        )
    try:
        valid_field_path(str(field_path), schema)
    except ValueError as e:
        causes.append(
            FieldCause("FieldValueInvalid", at, f"Invalid value: {shown}: fieldPath must be a valid path: {e}")
        )
    return causes
