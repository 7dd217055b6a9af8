"""The language the rulebook is written in: small expressions over a document's wire form.

One expression gives both checks: `holds()` evaluates it here, for the model (and so the
admission webhook), and `cel()` renders it as the CEL that the API server evaluates from the
CRD's `x-kubernetes-validations`. The semantics follow CEL's where they could differ: a missing
field must be guarded by `has`, `&&`/`||` absorb an error on the side that does not decide.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as attribute
from typing import Any

from controller.api.errors import IDENT, shown


class Undefined(Exception):
    """CEL's 'no such key' or 'no matching overload': the expression has no value."""


def _lit(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value)


class Expr:
    prec = 5  # how tightly the CEL text binds: || 1, && 2, comparisons 3, the rest 5

    def cel(self) -> str:
        raise NotImplementedError

    def wrapped(self, at_least: int) -> str:
        text = self.cel()
        return f"({text})" if self.prec < at_least else text

    def value(self, doc: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def holds(self, doc: Mapping[str, Any]) -> bool:
        try:
            return self.value(doc) is True
        except Undefined:
            return False

    def __and__(self, other: Expr) -> Expr:
        return And(self, other)

    def __or__(self, other: Expr) -> Expr:
        return Or(self, other)

    def __invert__(self) -> Expr:
        return Not(self)

    def implies(self, other: Expr) -> Expr:
        return Or(Not(self), other)

    # Comparisons are methods, not operators: `==` on an expression must stay Python's identity.
    def eq(self, other: Any) -> Expr:
        return Compare("==", self, _term(other))

    def ne(self, other: Any) -> Expr:
        return Compare("!=", self, _term(other))

    def ge(self, other: Any) -> Expr:
        return Compare(">=", self, _term(other))

    def le(self, other: Any) -> Expr:
        return Compare("<=", self, _term(other))

    def is_int(self) -> Expr:
        return TypeIs(self, "int")

    def is_string(self) -> Expr:
        return TypeIs(self, "string")

    def matches(self, pattern: str) -> Expr:
        return Matches(self, pattern)

    def contains(self, item: str) -> Expr:
        return Contains(self, item)


@dataclass(frozen=True)
class Const(Expr):
    literal: Any

    def cel(self) -> str:
        return _lit(self.literal)

    def value(self, doc: Mapping[str, Any]) -> Any:
        return self.literal


def _term(value: Any) -> Expr:
    return value if isinstance(value, Expr) else Const(value)


@dataclass(frozen=True)
class Field(Expr):
    """A field of `self`; `key` reads an entry of a map field (`self.params['xen.port']`)."""

    path: tuple[str, ...]
    key: str | None = None

    def cel(self) -> str:
        text = "self" + "".join(f".{p}" for p in self.path)
        return text + (f"[{_lit(self.key)}]" if self.key is not None else "")

    def value(self, doc: Mapping[str, Any]) -> Any:
        node: Any = doc
        for part in (*self.path, *([self.key] if self.key is not None else [])):
            if not isinstance(node, Mapping) or node.get(part) is None:
                raise Undefined(part)
            node = node[part]
        return node

    def present(self) -> Expr:
        return Has(self)


@dataclass(frozen=True)
class Has(Expr):
    of: Field

    @property
    def prec(self) -> int:  # type: ignore[override]
        return 2 if len(self.of.path) > 1 or self.of.key is not None else 5

    def cel(self) -> str:
        f = self.of
        steps = [Field(f.path[: i + 1]) for i in range(len(f.path))]
        parts = [f"has({s.cel()})" for s in steps]
        if f.key is not None:
            parts.append(f"{_lit(f.key)} in {Field(f.path).cel()}")
        return " && ".join(parts)

    def value(self, doc: Mapping[str, Any]) -> Any:
        try:
            self.of.value(doc)
        except Undefined:
            return False
        return True


@dataclass(frozen=True)
class And(Expr):
    a: Expr
    b: Expr

    prec = 2

    def cel(self) -> str:
        return f"{self.a.wrapped(2)} && {self.b.wrapped(2)}"

    def value(self, doc: Mapping[str, Any]) -> Any:
        a, b = _try(self.a, doc), _try(self.b, doc)
        if a is False or b is False:
            return False
        if isinstance(a, Undefined) or isinstance(b, Undefined):
            raise Undefined("&&")
        return True


@dataclass(frozen=True)
class Or(Expr):
    a: Expr
    b: Expr

    prec = 1

    def cel(self) -> str:
        return f"{self.a.wrapped(1)} || {self.b.wrapped(1)}"

    def value(self, doc: Mapping[str, Any]) -> Any:
        a, b = _try(self.a, doc), _try(self.b, doc)
        if a is True or b is True:
            return True
        if isinstance(a, Undefined) or isinstance(b, Undefined):
            raise Undefined("||")
        return False


def _try(expr: Expr, doc: Mapping[str, Any]) -> Any:
    try:
        return expr.value(doc)
    except Undefined as exc:
        return exc


@dataclass(frozen=True)
class Not(Expr):
    a: Expr

    def cel(self) -> str:
        return f"!{self.a.wrapped(5)}"

    def value(self, doc: Mapping[str, Any]) -> Any:
        return not self.a.value(doc)


def _same_type(a: Any, b: Any) -> bool:
    def kind(v: Any) -> str:
        return "bool" if isinstance(v, bool) else "int" if isinstance(v, int) else type(v).__name__

    return kind(a) == kind(b)


@dataclass(frozen=True)
class Compare(Expr):
    op: str
    a: Expr
    b: Expr

    prec = 3

    def cel(self) -> str:
        return f"{self.a.wrapped(4)} {self.op} {self.b.wrapped(4)}"

    def value(self, doc: Mapping[str, Any]) -> Any:
        a, b = self.a.value(doc), self.b.value(doc)
        if not _same_type(a, b):
            raise Undefined(f"no overload {self.op}")  # CEL compares only values of one type
        return {"==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b}[self.op]


@dataclass(frozen=True)
class TypeIs(Expr):
    a: Expr
    kind: str  # CEL's type names: int, string

    prec = 3

    def cel(self) -> str:
        return f"type({self.a.cel()}) == {self.kind}"

    def value(self, doc: Mapping[str, Any]) -> Any:
        v = self.a.value(doc)
        if self.kind == "int":
            return isinstance(v, int) and not isinstance(v, bool)
        return isinstance(v, str)


@dataclass(frozen=True)
class Matches(Expr):
    """RE2's `matches`: a search, so patterns anchor themselves."""

    a: Expr
    pattern: str

    def cel(self) -> str:
        return f"{self.a.cel()}.matches({_lit(self.pattern)})"

    def value(self, doc: Mapping[str, Any]) -> Any:
        v = self.a.value(doc)
        if not isinstance(v, str):
            raise Undefined("matches")
        return re.search(self.pattern, v) is not None


@dataclass(frozen=True)
class Contains(Expr):
    """`item in list` (or a key in a map)."""

    a: Expr
    item: str

    prec = 3

    def cel(self) -> str:
        return f"{_lit(self.item)} in {self.a.wrapped(4)}"

    def value(self, doc: Mapping[str, Any]) -> Any:
        v = self.a.value(doc)
        if not isinstance(v, list | Mapping):
            raise Undefined("in")
        return self.item in v


@dataclass(frozen=True)
class KeysMatch(Expr):
    """Every key of a map field matches a pattern: `self.params.all(k, k.matches(...))`."""

    of: Field
    pattern: str

    def cel(self) -> str:
        return f"{self.of.cel()}.all(k, k.matches({_lit(self.pattern)}))"

    def value(self, doc: Mapping[str, Any]) -> Any:
        return not self.offenders(doc)

    def offenders(self, doc: Mapping[str, Any]) -> list[str]:
        found = self.of.value(doc)
        return [k for k in found if re.search(self.pattern, str(k)) is None] if isinstance(found, Mapping) else []


def F(*path: str, key: str | None = None) -> Field:
    return Field(tuple(path), key)


@dataclass(frozen=True)
class Rule:
    """One rule: the field it is about, what must hold, why, and a document part that breaks it."""

    field: tuple[str, ...]  # wire path from the rule's root
    must: Expr
    message: str
    breaking: Mapping[str, Any]  # merged over a valid document, it violates this rule and no other
    detail: Expr | None = None  # the value to quote after the message ("got -5")
    key: str | None = None  # an entry of the map at `field`: ("params",) + "xen.port"

    @property
    def path(self) -> str:
        """The field as the API server names it: `destination`, `params[xen.port]` (a map's key)."""
        return render_path(self.field) + (f"[{self.key}]" if self.key is not None else "")

    @property
    def field_path(self) -> str:
        """The CRD rule's `fieldPath`, relative to where the rule sits: `.params['xen.port']`."""
        return "".join(f".{p}" for p in self.field) + (f"[{_lit(self.key)}]" if self.key is not None else "")

    def crd(self) -> dict[str, str]:
        return {"rule": self.must.cel(), "message": self.message, "fieldPath": self.field_path}

    def problem(self, doc: Mapping[str, Any]) -> tuple[str, str] | None:
        try:
            if self.must.value(doc) is True:
                return None
        except Undefined:
            return None  # a field it needs is missing or of another type: the schema says so
        why = self.message
        if isinstance(self.detail, KeysMatch):
            offenders = self.detail.offenders(doc)
            why += f", got {', '.join(shown(k) for k in offenders[:3])}" + (
                f" and {len(offenders) - 3} more" if len(offenders) > 3 else ""
            )
        elif self.detail is not None:
            try:
                why += f", got {shown(self.detail.value(doc))}"
            except Undefined:
                pass
        return self.path, why


def render_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif IDENT.match(part) or not out:
            out += f".{part}" if out else part
        else:
            out += f"[{part}]"
    return out


@dataclass(frozen=True)
class SetRule:
    """A list whose items may not repeat: `x-kubernetes-list-type: set` for the API server."""

    field: tuple[str, ...]
    breaking: Mapping[str, Any] = attribute(default_factory=dict)

    @property
    def path(self) -> str:
        return render_path(self.field)

    def problems(self, doc: Mapping[str, Any]) -> list[tuple[str, str]]:
        try:
            items = Field(self.field).value(doc)
        except Undefined:
            return []
        if not isinstance(items, list):
            return []
        seen: list[Any] = []
        found = []
        for i, item in enumerate(items):
            if item in seen:
                found.append((render_path([*self.field, i]), f"duplicate value {item!r}: a flag is listed once"))
            seen.append(item)
        return found


def check(doc: Any, rules: Sequence[Rule], sets: Sequence[SetRule] = ()) -> list[tuple[str, str]]:
    """Every rule the document breaks, as (field, why); a document that is no mapping breaks none here."""
    if not isinstance(doc, Mapping):
        return []
    found = [p for rule in rules if (p := rule.problem(doc)) is not None]
    for s in sets:
        found.extend(s.problems(doc))
    return found
