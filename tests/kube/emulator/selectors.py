"""Label & field selectors, parsed into predicates on the objects' bodies."""

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from .errors import _bad_request
from .typedefs import Body

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


def label_selector_predicate(selector: Mapping[str, Any]) -> Predicate:
    """A ``metav1.LabelSelector`` (``matchLabels`` & ``matchExpressions``) as a predicate; empty matches all."""
    checks: list[Predicate] = [
        functools.partial(_label_eq, key, str(val), True) for key, val in (selector.get("matchLabels") or {}).items()
    ]
    for req in selector.get("matchExpressions") or []:
        key, op, vals = req.get("key", ""), req.get("operator"), {str(v) for v in req.get("values") or []}
        if op in ("In", "NotIn"):
            checks.append(functools.partial(_label_in, key, vals, op == "In"))
        elif op in ("Exists", "DoesNotExist"):
            checks.append(functools.partial(_label_exists, key, op == "Exists"))
        else:  # kube refuses such selectors on writes; a stored one would match nothing
            checks.append(lambda _: False)
    return lambda body: all(check(body) for check in checks)
