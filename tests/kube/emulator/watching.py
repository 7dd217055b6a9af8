"""Watching: the history of changes and the watch-streams (with replays, bookmarks, and 410 Gone)."""

import asyncio
import bisect
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import kmock

from .errors import _bad_request
from .query import _Query
from .selectors import Predicate
from .typedefs import Body


def expired_status(message: str) -> Body:
    """The event a watch gets when its resourceVersion is older than kube keeps: kopf lists again."""
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "code": 410,
            "reason": "Expired",
            "message": message,
        },
    }


@dataclasses.dataclass(frozen=True)
class _WatchEvent:
    rv: int
    gp: tuple[str, str]  # (group, plural)
    type: str  # ADDED, MODIFIED, DELETED
    obj: Body  # the new state (or the last state for DELETED), in the storage version
    old: Body | None  # the previous state, for selector transitions


class WatchingMixin:
    """Mixed into :class:`.server.ApiServer`, which holds the state used here (``_state``, ``_defs``, ...)."""

    __slots__ = ()

    def _watch(self, q: _Query) -> AsyncIterator[kmock.Payload]:
        predicate = self._filter(q)  # validate the selectors BEFORE the streaming starts (400 if bad)
        rv_param = q.params.get("resourceVersion") or ""
        if rv_param and not rv_param.isdigit():
            raise _bad_request(f"invalid resource version: {rv_param!r}")
        timeout = float(q.params["timeoutSeconds"]) if q.params.get("timeoutSeconds") else None
        return self._watch_stream(q, predicate, rv_param, timeout)

    async def _watch_stream(
        self, q: _Query, predicate: Predicate, rv_param: str, timeout_s: float | None
    ) -> AsyncIterator[kmock.Payload]:
        # NB: the snapshot (the cursor) is taken BEFORE the headers are sent: once a client sees
        # the response, every later change must be in the stream (no races in tests).
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        gp = (q.rdef.group, q.rdef.plural)
        send_initial = q.params.get("sendInitialEvents") == "true"
        with self._state:
            if rv_param in ("", "0") or send_initial:
                cursor = self._rv
                initial = [
                    {"type": "ADDED", "object": self._output(q.rdef, q.version, obj)}
                    for obj in self._iter(q.rdef, q.namespace)
                    if predicate(obj)
                ]
            elif int(rv_param) < self._log_floor:
                cursor, initial = -1, []
            else:
                cursor, initial = int(rv_param), []
        try:
            yield b""  # send the headers now, even if there are no events for a while
            if cursor < 0:
                yield expired_status(f"too old resource version: {rv_param} ({self._log_floor})")
                return
            for initial_event in initial:
                yield initial_event
            if send_initial:
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": q.rdef.api_version(q.version),
                        "kind": q.rdef.kind,
                        "metadata": {
                            "resourceVersion": str(cursor),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                }
            while self._stopping is not None and not self._stopping.is_set():
                wakeup.clear()
                with self._state:
                    expired = cursor < self._log_floor  # a too slow watcher: its history is compacted
                    events = [] if expired else self._log[bisect.bisect_right(self._log_rvs, cursor) :]
                if expired:
                    yield expired_status(f"too old resource version: {cursor} ({self._log_floor})")
                    return
                for event in events:
                    cursor = event.rv
                    if event.gp == gp and (out := self._translate(q, predicate, event)) is not None:
                        yield out
                if events:
                    continue
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout=remaining)
        finally:
            self._wakeups.discard(wakeup)

    def _translate(self, q: _Query, predicate: Predicate, event: _WatchEvent) -> Body | None:
        new_ok = predicate(event.obj)
        old_ok = event.old is not None and predicate(event.old)
        etype: str | None
        if event.type == "MODIFIED":
            etype = "MODIFIED" if new_ok and old_ok else "ADDED" if new_ok else "DELETED" if old_ok else None
        else:
            etype = event.type if new_ok else None
        return None if etype is None else {"type": etype, "object": self._output(q.rdef, q.version, event.obj)}
