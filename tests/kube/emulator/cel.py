"""CEL rules of ``x-kubernetes-validations``: compiled at CRD registration, evaluated on validation."""

import contextlib
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import FieldCause, _go_repr
from .typedefs import _MISSING

try:  # CEL for x-kubernetes-validations; optional: without it, the rules are not evaluated.
    import cel as _cel  # PyPI: common-expression-language
except ImportError:  # pragma: no cover
    _cel = None

CEL_AVAILABLE = _cel is not None


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


def valid_field_path(json_path: str, schema: Mapping[str, Any]) -> str:
    """
    A rule's ``fieldPath`` as kube's ``ValidFieldPath`` reads it against the rule's schema node.

    Returns it rendered as a ``field.Path`` (``.params['xen.port']`` on a map is ``params[xen.port]``,
    a property is ``.name``), or raises ValueError with kube's reason (``does not refer to a valid field``).
    """
    rendered = ""
    node: Mapping[str, Any] = schema
    tokens = iter(_path_tokens(json_path))

    def step(name: str) -> None:
        nonlocal rendered, node
        props, addl = node.get("properties"), node.get("additionalProperties")
        if isinstance(props, dict):  # a struct: named children (even via ['...'])
            if name not in props:
                raise ValueError("does not refer to a valid field")
            rendered = f"{rendered}.{name}" if rendered else name
            node = props[name]
        elif addl is not None:  # a map: keys
            rendered = f"{rendered}[{name}]"
            node = addl if isinstance(addl, dict) else {}
        else:
            raise ValueError("does not refer to a valid field")

    for token in tokens:
        if token == "[":
            quoted = next(tokens, None)
            if quoted is None:
                raise ValueError("unexpected end of JSON path")
            if len(quoted) < 2 or quoted[0] != "'" or quoted[-1] != "'":
                raise ValueError(f"expected single quoted string but got {quoted}")
            step(_unescape(quoted[1:-1]))
            closing = next(tokens, None)
            if closing is None:
                raise ValueError("unexpected end of JSON path")
            if closing != "]":
                raise ValueError(f"expected ] but got {closing}")
        elif token == ".":
            name = next(tokens, None)
            if name is None:
                raise ValueError("unexpected end of JSON path")
            step(name)
        else:
            raise ValueError(f"expected [ or . but got: {token}")
    return rendered


def _path_tokens(path: str) -> list[str]:
    # As kube's scanner: '.', '[', ']' alone; a quoted string up to its unescaped closing quote; names between.
    tokens: list[str] = []
    i = 0
    while i < len(path):
        if path[i] == "'":
            end = next((j for j in range(i + 1, len(path)) if path[j] == "'" and path[j - 1] != "\\"), len(path) - 1)
            tokens.append(path[i : end + 1])
            i = end + 1
        elif path[i] in ".[]":
            tokens.append(path[i])
            i += 1
        else:
            end = next((j for j in range(i, len(path)) if path[j] in ".[]"), len(path))
            tokens.append(path[i:end])
            i = end
    return tokens


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "'": "'", "\\": "\\"}


def _unescape(text: str) -> str:
    def replace(m: re.Match[str]) -> str:
        if m.group(1) not in _ESCAPES:
            raise ValueError(f"invalid string literal: invalid escape char {m.group(0)}")
        return _ESCAPES[m.group(1)]

    return re.sub(r"\\(.)", replace, text)


def _run_cel_rules(value: Any, old: Any, schema: Mapping[str, Any], path: str) -> list[FieldCause]:
    causes: list[FieldCause] = []
    if _cel is None:
        return causes  # CEL is not installed: the rules are silently skipped (documented)
    rules: Sequence[Mapping[str, Any]] = schema.get("x-kubernetes-validations") or []
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
        field = path
        if rule.get("fieldPath"):  # kube: fldPath.Child(<the normalized fieldPath>)
            relative = _rendered_field_path(rule["fieldPath"], schema)
            field = f"{path}.{relative}" if path else relative
        reason = rule.get("reason") or "FieldValueInvalid"
        if reason == "FieldValueDuplicate":  # field.Duplicate() has no detail
            causes.append(FieldCause(reason, field, f"Duplicate value: {_go_repr(value)}"))
            continue
        prefix = {"FieldValueRequired": "Required value", "FieldValueForbidden": "Forbidden"}.get(
            reason, f"Invalid value: {_go_repr(value)}"
        )
        causes.append(FieldCause(reason, field, f"{prefix}: {message}"))
    return causes


def _rendered_field_path(json_path: str, schema: Mapping[str, Any]) -> str:
    try:
        return valid_field_path(json_path, schema)
    except ValueError:  # refused at CRD registration; only for schemas given directly to validate()
        return json_path.lstrip(".")
