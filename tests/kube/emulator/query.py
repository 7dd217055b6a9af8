"""A parsed request to a resource, as passed between the serving, reading, and watching parts."""

import dataclasses
from collections.abc import Mapping

from .resources import ResourceDef


@dataclasses.dataclass(frozen=True)
class _Query:
    """A parsed request to a resource: what, where, and how."""

    rdef: ResourceDef
    version: str
    namespace: str | None
    name: str | None
    subresource: str | None
    params: Mapping[str, str]
