"""Errors in the style of a real Kubernetes API server."""

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import kmock

# The real error class of kmock; it renders as a Kubernetes `Status` with the given code.
ApiError = kmock.KubernetesError


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
