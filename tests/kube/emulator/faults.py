"""
Fault injection, opt-in: what a real API server does on a bad day, at random (seeded) or on cue.

:class:`Faults` (``ApiServer(faults=Faults(seed=1, read_errors=0.05, ...))``) answers a fraction of
the resource requests as a real kube-apiserver answers them when things go wrong, each decided
by one seeded generator in the order the requests arrive:

* ``read_errors`` / ``write_errors``: ``500 InternalError`` with the Status body kube-apiserver sends
  when etcd fails under it (``Internal error occurred: etcdserver: leader changed``); nothing stored.
  A watch request is a read: it may fail before its stream starts.
* ``conflicts``: a write that carries a precondition meets another writer first. The other writer
  really writes (an annotation, ``CONCURRENT_WRITES``, so the resourceVersion moves on and watchers
  see it), then the request is served as usual, and refused by the emulator's own checks as a real
  server refuses it: ``409 Conflict`` for a resourceVersion in a merge patch, an update or a
  deletion's preconditions; ``422`` for a JSON patch whose ``test`` of ``/metadata/resourceVersion``
  now fails (kopf's finalizer patches). A ``generateName`` creation meets a generated name that is
  taken: ``409 AlreadyExists``. Writes without a precondition (merge patches of the status, say)
  cannot conflict on a real server, and do not here.
* ``watch_drops``: the fraction of watch events before which the stream is cut: the connection
  aborted mid-response, as when an apiserver or a load balancer goes away; clients watch again.
* ``watch_expiries``: a watch that resumes from a resourceVersion is told ``410 Expired`` (its
  history compacted), so the client lists again.

``injected`` counts what was injected, by kind, for the test's report. The seed makes the sequence
of decisions reproducible; which request meets which decision depends on their interleaving.

:class:`Tripwire` (``api.tripwires.append(Tripwire(when, action))``) acts once, on the first
request that ``when`` matches: before it is served (``after=False``: the request is then dropped
unserved, as if its client had died just before sending it) or once it is stored, before the reply
(``after=True``: the client dies not knowing). Tests kill an operator with it at an exact point.
"""

import collections
import random
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import attrs
import kmock

from .errors import ApiError
from .watching import expired_status

CONCURRENT_WRITES = "faults.emulator.domig.dev/concurrent-writes"
ETCD_ERROR = "etcdserver: leader changed"


@attrs.frozen
class InjectedError(ApiError):
    """An error the test asked for: a faithful reply, not an emulator failure (not in ``server_errors``)."""


def internal_error() -> InjectedError:
    """As kube-apiserver's ``errors.NewInternalError``."""
    return InjectedError(
        status=500,
        reason="InternalError",
        message=f"Internal error occurred: {ETCD_ERROR}",
        details={"causes": [{"message": ETCD_ERROR}]},
    )


def precondition(request: kmock.Request) -> str | None:
    """What a write is conditional on, if anything: 'resourceVersion', 'test' (JSON patch), 'generateName'."""
    method, data = str(request.method.value).upper(), request.data
    if method == "POST" and not request.name and isinstance(data, dict):
        meta = data.get("metadata") or {}
        return "generateName" if meta.get("generateName") and not meta.get("name") else None
    if not request.name:
        return None
    if method in ("PUT", "PATCH") and isinstance(data, dict):
        return "resourceVersion" if (data.get("metadata") or {}).get("resourceVersion") else None
    if method == "PATCH" and isinstance(data, list):
        ops = {op.get("op") for op in data if isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion"}
        if ops:
            return "test" if ops == {"test"} else "resourceVersion"
    if method == "DELETE" and isinstance(data, dict):
        return "resourceVersion" if (data.get("preconditions") or {}).get("resourceVersion") else None
    return None


@attrs.define
class Faults:
    seed: int
    read_errors: float = 0.0
    write_errors: float = 0.0
    conflicts: float = 0.0
    watch_drops: float = 0.0
    watch_expiries: float = 0.0
    # A run that must meet a cut stream: if none was cut by this many watch events, cut there. At a
    # 2 % chance a run with few watch events may otherwise meet none (seen once in CI-like runs).
    watch_drop_by: int = 0
    only: Callable[[kmock.Request], bool] | None = None  # which resource requests; None: all of them
    injected: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    _random: random.Random = attrs.field(init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _watch_events: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def _roll(self, fraction: float) -> bool:
        return fraction > 0 and self._random.random() < fraction

    def _applies(self, request: kmock.Request) -> bool:
        return self.only is None or self.only(request)

    def decide(self, request: kmock.Request) -> str | None:
        """Before a request is served: None, 'error' or 'conflict'."""
        if not self._applies(request):
            return None
        with self._lock:
            if request.method == kmock.method.GET:
                return "error" if self._roll(self.read_errors) else None
            if self._roll(self.write_errors):
                return "error"
            if precondition(request) is not None and self._roll(self.conflicts):
                return "conflict"
            return None

    def watch_fault(self, request: kmock.Request) -> str | None:
        """For a watch about to stream: None, 'drop' (it may be cut) or 'expire'."""
        if not self._applies(request):
            return None
        resumes = request.params.get("resourceVersion") not in (None, "", "0")
        with self._lock:
            if resumes and request.params.get("sendInitialEvents") != "true" and self._roll(self.watch_expiries):
                return "expire"
        return "drop" if self.watch_drops > 0 else None

    def count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def pick(self, choices: str) -> str:
        with self._lock:
            return self._random.choice(choices)

    def cut_here(self) -> bool:
        with self._lock:
            self._watch_events += 1
            overdue = 0 < self.watch_drop_by <= self._watch_events and not self.injected["watch dropped"]
            return self._roll(self.watch_drops) or overdue

    async def drop(self, stream: AsyncIterator[Any], request: kmock.Request) -> AsyncIterator[Any]:
        """The stream, cut before an event (each one with the chance ``watch_drops``): the connection
        aborted mid-response, the event and all after it not sent."""
        try:
            async for item in stream:
                if isinstance(item, dict) and self.cut_here():
                    break
                yield item
            else:
                return
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        self.count("watch dropped")
        if request._raw_request.transport is not None:
            request._raw_request.transport.abort()
        raise ConnectionResetError("the watch stream was dropped (fault injection)")

    async def expire(self, stream: AsyncIterator[Any], params: Mapping[str, str]) -> AsyncIterator[Any]:
        """A resumed watch told that its resourceVersion is compacted away, as kube says it."""
        await stream.aclose()  # type: ignore[attr-defined]
        self.count("410 Expired on a watch")
        yield b""
        yield expired_status(f"too old resource version: {params.get('resourceVersion')}")


@attrs.define
class Tripwire:
    when: Callable[[kmock.Request], bool]
    action: Callable[[], None]
    after: bool = False
    fired: threading.Event = attrs.field(factory=threading.Event, init=False)

    def matches(self, request: kmock.Request) -> bool:
        return not self.fired.is_set() and self.when(request)

    def fire(self) -> None:
        self.fired.set()
        self.action()
