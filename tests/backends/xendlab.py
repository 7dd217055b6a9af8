"""Two test xends on 127.0.0.1 and 127.0.0.2 and an engine over the xend driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from controller.api import DomainMigration, DomainMigrationStatus
from controller.backends.protocol import HostConfig
from controller.backends.registry import DriverTable
from controller.backends.xend.driver import XendDriver
from controller.engine import Engine, RunPolicy, Sink, StaticHosts
from xendsim import XendHost
from xendsim.node import RequestRecord

# Bytes streamed per MiB of guest memory; the test xend sends 8 Mbit/s, so a 256 MiB guest
# takes ~0.26 s at FAST and ~1 s at SLOW.
FAST = 1024
SLOW = 4096
POLL = 0.05


class Engines:
    """Engines over the xend driver for hosts a and b, each engine with its own driver by default."""

    def __init__(self, a_url: str, b_url: str) -> None:
        self.urls = a_url, b_url
        self.drivers: list[XendDriver] = []

    def host_configs(self, **a_options: Any) -> list[HostConfig]:
        return [HostConfig("a", "xend", self.urls[0], **a_options), HostConfig("b", "xend", self.urls[1])]

    def engine(self, driver: XendDriver | None = None, **a_options: Any) -> Engine:
        """A fresh engine; a fresh driver too unless one is given (a restarted operator has none)."""
        if driver is None:
            driver = XendDriver()
            self.drivers.append(driver)
        return Engine(
            DriverTable({"xend": driver}), StaticHosts(self.host_configs(**a_options)), RunPolicy(poll_interval=POLL)
        )

    async def run(self, migration: DomainMigration, sink: Sink | None = None) -> DomainMigrationStatus:
        return await self.engine().run(migration, sink)

    async def close(self) -> None:
        """What a dying process does to its drivers: open requests are dropped."""
        for driver in self.drivers:
            await driver.close()
        self.drivers.clear()


class XendLab(Engines):
    def __init__(self, a: XendHost, b: XendHost) -> None:
        super().__init__(a.url, b.url)
        self.a, self.b = a, b


def posts(host: XendHost, op: str) -> list[RequestRecord]:
    return [r for r in host.requests if r.method == "POST" and r.form.get("op") == [op]]


@asynccontextmanager
async def xend_lab(
    memory_scale: int = FAST,
    domains: Sequence[str] = ("name=web,memory=256,uuid=4f77abd2-3019-58e8-3bab-6fbf2118f880",),
    **b_options: Any,
) -> AsyncIterator[XendLab]:
    async with XendHost(
        name="hostB", http=("127.0.0.2", 0), relocation=("127.0.0.2", 0), memory_scale=memory_scale, **b_options
    ) as b:
        async with XendHost(
            name="hostA",
            http=("127.0.0.1", 0),
            relocation=("127.0.0.1", 0),
            domains=list(domains),
            memory_scale=memory_scale,
            # port=0 goes where hostB listens, as if both used the same xend-relocation-port.
            relocation_default_port=b.relocation_port,
        ) as a:
            lab = XendLab(a, b)
            try:
                yield lab
            finally:
                await lab.close()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition of the test xends' state, with a bound."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
