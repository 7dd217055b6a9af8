"""Errors in the style of a real Kubernetes API server."""

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import kmock

# The real error class of kmock; it renders as a Kubernetes `Status` with the given code.
ApiError = kmock.KubernetesError


@attrs.frozen
class AdmissionError(ApiError):
    """
    A refusal by the admission chain: a webhook's denial, or a failed call with ``failurePolicy: Fail``.

    It is a faithful K8s response (not an emulator failure, even as a 500), and it carries the warnings
    collected before the refusal, which kube sends along with the error as ``Warning`` headers.
    """

    warnings: tuple[str, ...] = ()


def _warning_header(warnings: Sequence[str]) -> str | None:
    """The ``Warning`` header kube sends for warnings (RFC 7234: code 299, no agent); None if none."""
    return ", ".join(f"299 - {json.dumps(w)}" for w in warnings) or None


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


def _go_repr(value: Any) -> str:
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


def _go_value(value: Any) -> str:
    """A bad value as kube's field errors print an unstructured one: %q for strings, %v for scalars, else %#v."""
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(str(k))}:{_go_sharp(v)}" for k, v in sorted(value.items()))
        return "map[string]interface {}{" + items + "}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(_go_sharp(v) for v in value) + "}"
    return json.dumps(value)


def _go_sharp(value: Any) -> str:
    # An element inside %#v of an interface{} container: nil is typed, the rest as above.
    return "interface {}(nil)" if value is None else _go_value(value)
