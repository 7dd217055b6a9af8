"""The Waker that ends the monitor's pause when libvirt has news (no daemon needed: libvirt-python only)."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("libvirt")

from controller.backends.libvirt.events import Waker


async def test_news_between_a_look_and_the_pause_ends_the_pause_at_once() -> None:
    waker = Waker()
    looked = waker.wakes
    waker.wake()  # e.g. JOB_COMPLETED, arriving while job() was being answered
    loop = asyncio.get_running_loop()
    started = loop.time()
    await waker.wait(30, since=looked)
    assert loop.time() - started < 1


async def test_without_news_the_pause_lasts_until_a_wake_from_another_thread() -> None:
    waker = Waker()
    looked = waker.wakes
    loop = asyncio.get_running_loop()
    timer = threading.Timer(0.2, waker.wake)  # the events thread, or the migrate call returning
    timer.start()
    started = loop.time()
    await waker.wait(30, since=looked)
    waited = loop.time() - started
    timer.join()
    assert 0.15 < waited < 10


async def test_with_nothing_to_wake_it_the_pause_is_the_interval() -> None:
    waker = Waker()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await waker.wait(0.2, since=waker.wakes)
    assert loop.time() - started >= 0.19
