"""Documents that break one rule each: every rule of the rulebook, and every constraint of a field.

The field constraints are read off the CRD's schema (generated from the pydantic fields), so a new
pattern, range or length gets a violating document here without anyone writing one.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from controller.api.base import Model
from controller.api.crds import domain_migration_crd, hypervisor_host_crd, migration_policy_crd
from controller.api.expressions import render_path
from controller.api.hypervisor_host import HypervisorHostSpec
from controller.api.spec import DomainMigrationSpec

VALID_MIGRATION: dict[str, Any] = {
    "apiVersion": "domig.dev/v1alpha1",
    "kind": "DomainMigration",
    "metadata": {"name": "m", "namespace": "default"},
    "spec": {"domain": "web", "source": "host-a", "destination": "host-b", "flags": ["live"]},
}
VALID_HOST: dict[str, Any] = {
    "apiVersion": "domig.dev/v1alpha1",
    "kind": "HypervisorHost",
    "metadata": {"name": "host-a"},
    "spec": {"driver": "test", "uri": "test:///default", "test": {"domains": [{"name": "web"}]}},
}

VALID_POLICY: dict[str, Any] = {
    "apiVersion": "domig.dev/v1alpha1",
    "kind": "MigrationPolicy",
    "metadata": {"name": "p"},
    "spec": {"selectors": {"namespaceSelector": {"env": "prod"}}, "allowPostCopy": True},
}


@dataclass(frozen=True)
class Violation:
    kind: str  # DomainMigration | HypervisorHost
    field: str  # as the API server names it, from the document's root: spec.params[xen.port]
    what: str  # the rule, for the test's id
    document: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.field}:{self.what}"


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _with_spec(base: dict[str, Any], spec_patch: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(base), "spec": merged(base["spec"], spec_patch)}


def rule_violations(kind: str, model: type[Model], base: dict[str, Any]) -> Iterator[Violation]:
    for rule in model.RULES:
        yield Violation(kind, f"spec.{rule.path}", rule.message, _with_spec(base, dict(rule.breaking)))
    for s in model.SETS:
        yield Violation(kind, f"spec.{render_path([*s.field, 1])}", "set", _with_spec(base, dict(s.breaking)))


BAD_STRINGS = ["bad name", "a/b", "-x-", "_x_", " ", "x" * 300]


def _breaking_string(schema: dict[str, Any]) -> str | None:
    pattern = schema["pattern"]
    low, high = schema.get("minLength", 0), schema.get("maxLength", 10**6)
    for candidate in BAD_STRINGS:
        if low <= len(candidate) <= high and re.search(pattern, candidate) is None:
            return candidate
    return None


def _field_breakers(schema: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(constraint, a value that breaks it) for one node of a schema."""
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        yield "type", [1]
        return
    if kind is not None:
        yield "type", {"string": 5, "integer": "five", "number": "five", "boolean": "yes", "array": "x"}.get(kind, "x")
    if "enum" in schema:
        yield "enum", "warp"
    if "pattern" in schema and (bad := _breaking_string(schema)) is not None:
        yield "pattern", bad
    if schema.get("minLength"):
        yield "minLength", ""
    if "maxLength" in schema:
        yield "maxLength", "x" * (schema["maxLength"] + 1)
    if "minimum" in schema:
        yield "minimum", schema["minimum"] - 1
    if "maximum" in schema:
        yield "maximum", schema["maximum"] + 1
    if schema.get("minProperties"):
        yield "minProperties", {}
    if "maxProperties" in schema:
        yield "maxProperties", {f"p{i}": 1 for i in range(schema["maxProperties"] + 1)}
    if "maxItems" in schema and isinstance(schema.get("items"), dict) and "enum" in schema["items"]:
        yield "maxItems", (schema["items"]["enum"] * 2)[: schema["maxItems"] + 1]


def _walk(schema: dict[str, Any], path: list[str | int]) -> Iterator[tuple[list[str | int], str, Any]]:
    if path:
        for what, value in _field_breakers(schema):
            yield path, what, value
    for name, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, [*path, name])
    items = schema.get("items")
    if isinstance(items, dict):
        for p, what, value in _walk(items, [*path, 0]):
            yield p, what, value


def _set_at(doc: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any] | None:
    """The document with `value` at `path`, creating parents; None where a list parent cannot be made."""
    out = copy.deepcopy(doc)
    node: Any = out
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list):
                return None
            while len(node) <= part:
                node.append({} if isinstance(nxt, str) else [])
            node = node[part]
        else:
            if part not in node or not isinstance(node[part], dict | list):
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list):
            return None
        while len(node) <= last:
            node.append(None)
        node[last] = value
    else:
        node[last] = value
    return out


def field_violations(kind: str, spec_schema: dict[str, Any], base: dict[str, Any]) -> Iterator[Violation]:
    for path, what, value in _walk(spec_schema, []):
        if path[-1] == 0 and isinstance(path[0], str) and what == "type":
            continue  # an item of the wrong type inside a list: said of the list's type already
        spec = _set_at(base["spec"], path, value)
        if spec is None:
            continue
        # A list item needs its list's other required fields to be a fair test of one constraint.
        yield Violation(kind, "spec." + render_path(path), what, {**copy.deepcopy(base), "spec": spec})
    for name in spec_schema.get("required") or []:
        spec = {k: v for k, v in base["spec"].items() if k != name}
        yield Violation(kind, f"spec.{name}", "required", {**copy.deepcopy(base), "spec": spec})


def _spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]  # type: ignore[no-any-return]


def all_violations() -> list[Violation]:
    found = [
        *rule_violations("DomainMigration", DomainMigrationSpec, VALID_MIGRATION),
        *rule_violations("HypervisorHost", HypervisorHostSpec, VALID_HOST),
        *field_violations("DomainMigration", _spec_schema(domain_migration_crd()), VALID_MIGRATION),
        *field_violations("HypervisorHost", _spec_schema(hypervisor_host_crd()), VALID_HOST),
        *field_violations("MigrationPolicy", _spec_schema(migration_policy_crd()), VALID_POLICY),
    ]
    return found
