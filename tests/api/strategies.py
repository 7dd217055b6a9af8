"""Hypothesis strategies for whole documents, valid and broken, built from the model itself.

The valid ones are drawn from the CRD's OpenAPI schema (generated from the pydantic model, so a
new field, range or pattern is drawn here without anyone listing it) and from the parameter
table; the broken ones break a drawn document the ways users do: a wrong type, a value out of
range (tests/api/violations.py reads those off the same schema), an unknown field, a missing
required one, a rule of the rulebook, odd strings, huge values.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

from controller.api.crds import domain_migration_crd, hypervisor_host_crd, migration_policy_crd
from controller.api.drivers import declarations, known_params
from controller.api.expressions import Rule
from controller.api.params import ParamType
from controller.api.rules import HOST_SPEC, MIGRATION_SPEC
from tests.api.violations import _walk

Doc = dict[str, Any]
Path = list[str | int]

# Names the documents draw from often, so that many meet real hosts, domains and namespaces.
HOSTS = ("host-a", "host-b", "host-c", "xen-a")
DOMAINS = ("web", "db", "big")
NAMESPACES = ("default", "prod")
ODD_STRINGS = (
    "",
    " ",
    "\t",
    "web\n",
    "we b",
    "a/b",
    "../../etc/passwd",
    "\x00",
    "\u202egnp.exe",  # right-to-left override
    "\U0001f525🔥",
    "\uff37\uff25\uff22",  # full-width WEB
    "e\u0301",  # a combining accent
    "null",
    "~",
    "yes",
    "0x10",
    "1e3",
    "${HOME}",
    "<script>",
    "'; DROP TABLE x; --",
    "x" * 300,
    "é" * 1100,
)
HUGE_INTS = (2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30)
OTHER_TYPES: tuple[Any, ...] = (None, True, 5, -1, 1.5, "five", [], ["x"], {}, {"x": 1})


def spec_schema(crd: Doc) -> Doc:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]  # type: ignore[no-any-return]


def param_value(kind: ParamType) -> st.SearchStrategy[int | str]:
    if kind.kind is int:
        low = kind.minimum if kind.minimum is not None else -(2**31)
        high = kind.maximum if kind.maximum is not None else 2**31
        return st.integers(low, high)
    if kind.choices is not None:
        return st.lists(st.sampled_from(kind.choices), min_size=1, max_size=3).map(",".join)
    return st.text(max_size=20)


def params() -> st.SearchStrategy[dict[str, int | str]]:
    """Parameters from the table (every driver's), each of its own type and range."""
    table = known_params(declarations())
    return st.dictionaries(st.sampled_from(sorted(table)), st.none(), max_size=4).flatmap(
        lambda names: st.fixed_dictionaries({name: param_value(table[name]) for name in names})
    )


def _string(schema: Doc, name: str) -> st.SearchStrategy[str]:
    if name in ("source", "destination"):
        return st.sampled_from(HOSTS)
    if name in ("domain", "dname"):
        return st.sampled_from(DOMAINS) if name == "domain" else st.sampled_from(("web", "web2", "db-copy"))
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 24), 24)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: low <= len(s) <= high)
    return st.text(min_size=low, max_size=max(high, low))


def from_schema(schema: Doc, name: str = "") -> st.SearchStrategy[Any]:
    """A value the schema accepts (the rulebook may still refuse the combination)."""
    if name == "params":
        return params()
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return st.integers(0, 1000) | st.text(max_size=8)
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low = schema.get("minimum", -1000)
        return st.integers(low, schema.get("maximum", low + 10**6))
    if kind == "number":
        low = schema.get("minimum", 0)
        floor = low + 0.001 if schema.get("exclusiveMinimum") else low
        return st.floats(floor, schema.get("maximum", 1000), allow_nan=False)
    if kind == "string":
        return _string(schema, name)
    if kind == "array":
        items = schema["items"]
        size = min(schema.get("maxItems", 3), 3)
        unique = schema.get("x-kubernetes-list-type") == "set"
        return st.lists(from_schema(items, name), max_size=size, unique=unique)
    if kind == "object":
        props = schema.get("properties")
        if props:
            required = set(schema.get("required", []))
            return st.fixed_dictionaries(
                {k: from_schema(v, k) for k, v in props.items() if k in required},
                optional={k: from_schema(v, k) for k, v in props.items() if k not in required},
            ).filter(lambda d: schema.get("minProperties", 0) <= len(d) <= schema.get("maxProperties", 10**6))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            keys = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8)
            return st.dictionaries(keys, from_schema(extra), max_size=min(schema.get("maxProperties", 3), 3))
        return st.just({})
    return st.none()


def _names() -> st.SearchStrategy[str]:
    return st.from_regex(r"^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$", fullmatch=True)


def document(kind: str, schema: Doc, namespaced: bool) -> st.SearchStrategy[Doc]:
    def make(name: str, namespace: str, spec: Doc) -> Doc:
        meta: Doc = {"name": name}
        if namespaced:
            meta["namespace"] = namespace
        return {"apiVersion": "domig.dev/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}

    return st.builds(make, _names(), st.sampled_from(NAMESPACES), from_schema(schema))


# ---- breaking a drawn document ---------------------------------------------------------------


def _paths(value: Any, path: Path) -> list[Path]:
    """Every node under `value`, by path (the node itself included)."""
    found = [path]
    if isinstance(value, dict):
        for key, sub in value.items():
            found += _paths(sub, [*path, key])
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            found += _paths(sub, [*path, i])
    return found


def _set(doc: Doc, path: Path, value: Any) -> Doc:
    """The document with `value` at `path`; a mapping on the way that an earlier mutation removed
    (or made another type) is put back empty, so mutations compose in any order."""
    out = copy.deepcopy(doc)
    node: Any = out
    for part in path[:-1]:
        if isinstance(part, str) and isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    return out


def _delete(doc: Doc, path: Path) -> Doc:
    out = copy.deepcopy(doc)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


Mutation = Callable[[st.DrawFn, Doc], Doc]


def wrong_type(draw: st.DrawFn, doc: Doc) -> Doc:
    path = draw(st.sampled_from(_paths(doc, [])[1:]))
    current = _at(doc, path)
    value = draw(st.sampled_from([v for v in OTHER_TYPES if type(v) is not type(current)]))
    return _set(doc, path, value)


def odd_string(draw: st.DrawFn, doc: Doc) -> Doc:
    strings = [p for p in _paths(doc, []) if isinstance(_at(doc, p), str) and p[:1] != ["apiVersion"]]
    if not strings:
        return doc
    return _set(doc, draw(st.sampled_from(strings)), draw(st.sampled_from(ODD_STRINGS) | st.text(max_size=40)))


def huge(draw: st.DrawFn, doc: Doc) -> Doc:
    numbers = [p for p in _paths(doc, []) if type(_at(doc, p)) is int]
    what = draw(st.sampled_from(("int", "string", "list", "map")))
    spec = doc.get("spec")
    if what == "int" and numbers:
        return _set(doc, draw(st.sampled_from(numbers)), draw(st.sampled_from(HUGE_INTS)))
    if not isinstance(spec, dict):
        return doc
    if what == "string":
        key = draw(st.sampled_from(sorted(spec) or ["domain"]))
        return _set(doc, ["spec", key], "y" * draw(st.sampled_from((1025, 70_000))))
    if what == "list":
        return _set(doc, ["spec", "flags"], ["live"] * draw(st.sampled_from((16, 2000))))
    return _set(doc, ["spec", "params"], {f"p{i}": i for i in range(draw(st.sampled_from((65, 3000))))})


def unknown_field(draw: st.DrawFn, doc: Doc) -> Doc:
    objects = [p for p in _paths(doc, []) if isinstance(_at(doc, p), dict) and p[:1] != ["metadata"]]
    path = draw(st.sampled_from(objects))
    key = draw(st.sampled_from(("colour", "Domain", "spec", "dryrun", "x-extra", "ünïcode")))
    if key in _at(doc, path):
        return doc
    return _set(doc, [*path, key], draw(st.sampled_from(OTHER_TYPES)))


def missing(draw: st.DrawFn, doc: Doc) -> Doc:
    keys = [p for p in _paths(doc, [])[1:] if isinstance(p[-1], str)]
    return _delete(doc, draw(st.sampled_from(keys)))


def _at(doc: Any, path: Path) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _merged(base: Any, patch: Doc) -> Doc:
    out = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        out[key] = _merged(out.get(key), value) if isinstance(value, dict) else copy.deepcopy(value)
    return out


def breaking_rules(rules: Sequence[Rule]) -> Mutation:
    def mutate(draw: st.DrawFn, doc: Doc) -> Doc:
        rule = draw(st.sampled_from(list(rules)))
        return {**doc, "spec": _merged(doc.get("spec"), dict(rule.breaking))}

    return mutate


def breaking_fields(schema: Doc) -> Mutation:
    """A value that breaks one field's own constraint, read off the schema (tests/api/violations.py)."""
    breakers = [(path, value) for path, _, value in _walk(schema, []) if 0 not in path]

    def mutate(draw: st.DrawFn, doc: Doc) -> Doc:
        path, value = draw(st.sampled_from(breakers))
        spec = doc.get("spec")
        if not isinstance(spec, dict):
            return doc
        out = copy.deepcopy(doc)
        node = out["spec"]
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
        return out

    return mutate


def whole(draw: st.DrawFn, doc: Doc) -> Doc:
    """The document itself wrong: its kind, apiVersion, metadata or spec."""
    return _set(
        doc,
        *draw(
            st.sampled_from(
                [
                    (["apiVersion"], "domig.dev/v1"),
                    (["metadata", "name"], "Bad_Name"),
                    (["metadata", "name"], "x" * 254),
                    (["metadata", "labels"], {"a": "b", "é": "ü"}),
                    (["spec"], None),
                    (["spec"], []),
                    (["spec"], "web"),
                    (["spec"], {}),
                    (["status"], {"phase": "Succeeded"}),
                ]
            )
        ),
    )


def broken(valid: st.SearchStrategy[Doc], mutations: Sequence[Mutation]) -> st.SearchStrategy[Doc]:
    @st.composite
    def make(draw: st.DrawFn) -> Doc:
        doc = draw(valid)
        for _ in range(draw(st.integers(1, 3))):
            doc = draw(st.sampled_from(list(mutations)))(draw, doc)
        return doc

    return make()


def _mutations(schema: Doc, rules: Sequence[Rule]) -> list[Mutation]:
    found = [wrong_type, odd_string, huge, unknown_field, missing, breaking_fields(schema), whole]
    return found + ([breaking_rules(rules)] if rules else [])


def documents(kind: str) -> st.SearchStrategy[Doc]:
    """A quarter drawn valid (by the schema; the rules may still refuse them), the rest broken."""
    crd, rules, namespaced = {
        "DomainMigration": (domain_migration_crd(), MIGRATION_SPEC, True),
        "HypervisorHost": (hypervisor_host_crd(), HOST_SPEC, False),
        "MigrationPolicy": (migration_policy_crd(), [], False),
    }[kind]
    schema = spec_schema(crd)
    valid = document(kind, schema, namespaced)
    return st.one_of(valid, broken(valid, _mutations(schema, rules)), broken(valid, _mutations(schema, rules)))
