"""libvirt's event loop: libvirtaio on one process-wide asyncio loop in its own thread.

libvirt accepts one event implementation per process, registered before the first connection.
Binding it to the caller's loop would tie every connection to that loop: a CLI run, each test and
the operator each have their own, and a closed loop would silently stop keepalives and events.
So the implementation runs on a loop of its own; domain-event callbacks run there and wake
waiters on whichever loop they sleep.

libvirt calls add/update/remove of handles and timers from whichever thread runs an API call,
and asyncio loops are not thread-safe, so those calls are forwarded to the loop's thread in
order. They are never waited for: the calling thread may hold a libvirt lock the loop needs.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from typing import Any

import libvirt
import libvirtaio

_lock = threading.Lock()
_impl: _ForwardingImpl | None = None


class _ForwardingImpl(libvirtaio.virEventAsyncIOImpl):  # type: ignore[misc]
    """libvirtaio, with every loop-touching call run on the loop's own thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread_id: int) -> None:
        super().__init__(loop=loop)
        self._thread_id = thread_id
        self._ids = itertools.count(1)
        self._real: dict[int, int] = {}  # our id -> libvirtaio's id; touched on the loop thread only

    def _on_loop(self, fn: Callable[[], object]) -> None:
        if threading.get_ident() == self._thread_id:
            fn()
        else:
            self.loop.call_soon_threadsafe(fn)

    def _add_handle(self, fd: int, event: int, cb: Any, opaque: Any) -> int:
        ours = next(self._ids)

        def add() -> None:
            self._real[ours] = super(_ForwardingImpl, self)._add_handle(fd, event, cb, opaque)

        self._on_loop(add)
        return ours

    def _update_handle(self, watch: int, event: int) -> None:
        self._on_loop(lambda: super(_ForwardingImpl, self)._update_handle(self._real[watch], event))

    def _remove_handle(self, watch: int) -> int:
        self._on_loop(lambda: super(_ForwardingImpl, self)._remove_handle(self._real.pop(watch)))
        return 0

    def _add_timeout(self, timeout: int, cb: Any, opaque: Any) -> int:
        ours = next(self._ids)

        def add() -> None:
            self._real[ours] = super(_ForwardingImpl, self)._add_timeout(timeout, cb, opaque)

        self._on_loop(add)
        return ours

    def _update_timeout(self, timer: int, timeout: int) -> None:
        self._on_loop(lambda: super(_ForwardingImpl, self)._update_timeout(self._real[timer], timeout))

    def _remove_timeout(self, timer: int) -> int:
        self._on_loop(lambda: super(_ForwardingImpl, self)._remove_timeout(self._real.pop(timer)))
        return 0


def ensure_event_loop() -> None:
    """Register the event implementation once per process; call before opening any connection."""
    global _impl
    with _lock:
        if _impl is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread_id: list[int] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            thread_id.append(threading.get_ident())
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        ready.wait()
        impl = _ForwardingImpl(loop, thread_id[0])
        # libvirtaio's own registration sets its module-level "current impl"; keep it consistent.
        libvirtaio._current_impl = impl.register()
        _impl = impl
        # Errors raise libvirtError; libvirt's default handler would also print each to stderr.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class Waker:
    """Lets callbacks on the events thread wake coroutines waiting on other loops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.wakes = 0  # how many times it was woken: a waiter may ask "since I last looked"

    def wake(self) -> None:
        with self._lock:
            self.wakes += 1
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    async def wait(self, seconds: float, since: int | None = None) -> None:
        """Sleep until woken or for `seconds`, whichever is first; at once if woken after `since`
        (a count of wakes read earlier), so that news arriving between a look and this wait is not missed."""
        event = asyncio.Event()
        with self._lock:
            if since is not None and self.wakes != since:
                return
            self._waiters.append((asyncio.get_running_loop(), event))
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters = [w for w in self._waiters if w[1] is not event]
