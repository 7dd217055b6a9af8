"""What the HTTP server, the migration sender and the relocation listener share."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from xendsim.config import HostConfig
from xendsim.faults import Faults
from xendsim.state import HostState


@dataclass
class RequestRecord:
    """One xend HTTP request as received (test-only bookkeeping)."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    at: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "form": self.form,
            "at": self.at,
        }


FaultSetter = Callable[[Mapping[str, object]], Awaitable[Faults]]


@dataclass
class Node:
    config: HostConfig
    state: HostState
    faults: Faults
    requests: list[RequestRecord] = field(default_factory=list)
    # Set by XendHost: changing some faults starts or stops listeners.
    set_faults: FaultSetter | None = None


NODE_KEY = web.AppKey("node", Node)
