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
