"""One simulated Xen host: xend's HTTP server and relocation listener, in this process."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any

from aiohttp import web

from xendsim.config import Address, DomainLike, HostConfig, domain_spec, domain_specs
from xendsim.control import control_app
from xendsim.faults import Faults
from xendsim.node import Node, RequestRecord
from xendsim.relocation import RelocationListener
from xendsim.server import xend_app
from xendsim.state import Domain, HostState


class XendHost:
    """
    async with XendHost(name="hostA", http=("127.0.0.1", 0), relocation=("127.0.0.1", 0),
                        domains=["name=web,memory=256"]) as host:
        host.url, host.relocation_port, host.state, host.requests
        await host.set_faults(relocation="refuse", drop_at=0.5, http_delay=1.0)
    """

    def __init__(
        self,
        config: HostConfig | None = None,
        *,
        domains: Sequence[DomainLike] | None = None,
        **options: Any,
    ) -> None:
        if config is None:
            config = HostConfig.build(**options)
        elif options:
            config = replace(config, **options)
        if domains is not None:
            config = replace(config, domains=domain_specs(domains))
        self.config = config
        state = HostState(total_memory=config.total_memory)
        for spec in config.domains:
            state.add(spec)
        self.node = Node(config=config, state=state, faults=config.faults)
        self.node.set_faults = self._apply_faults
        self._http_address: Address = config.http
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._control_runner: web.AppRunner | None = None
        self._control_address: Address | None = None
        self._relocation: RelocationListener | None = None

    # ---- what tests look at -------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state(self) -> HostState:
        return self.node.state

    @property
    def requests(self) -> list[RequestRecord]:
        return self.node.requests

    @property
    def faults(self) -> Faults:
        return self.node.faults

    @property
    def http_address(self) -> Address:
        return self._http_address

    @property
    def url(self) -> str:
        host, port = self._http_address
        return f"http://{host}:{port}"

    @property
    def relocation_address(self) -> Address | None:
        return self._relocation.address if self._relocation else None

    @property
    def relocation_port(self) -> int:
        if self._relocation is None:
            raise RuntimeError(f"{self.name} has no relocation listener")
        return self._relocation.address[1]

    @property
    def control_url(self) -> str | None:
        if self._control_address is None:
            return None
        return f"http://{self._control_address[0]}:{self._control_address[1]}"

    def domain(self, name: str) -> Domain | None:
        return self.node.state.get(name)

    def add_domain(self, spec: DomainLike) -> Domain:
        return self.node.state.add(domain_spec(spec))

    def ready_info(self) -> dict[str, object]:
        """What the subprocess prints on its ready line."""
        return {
            "name": self.name,
            "url": self.url,
            "hostname": self.config.node_hostname,
            "relocation": list(self.relocation_address) if self.relocation_address else None,
            "control_url": self.control_url,
        }

    # ---- faults -------------------------------------------------------------------

    async def set_faults(self, **changes: object) -> Faults:
        return await self._apply_faults(changes)

    async def clear_faults(self) -> Faults:
        return await self._apply_faults(Faults().as_json())

    async def _apply_faults(self, changes: Mapping[str, object]) -> Faults:
        self.node.faults = self.node.faults.updated(changes)
        if self._runner is not None:
            await self._sync_listeners()
        return self.node.faults

    async def _sync_listeners(self) -> None:
        faults = self.node.faults
        if faults.http_down and self._site is not None:
            await self._site.stop()
            self._site = None
        elif not faults.http_down and self._site is None:
            await self._start_http_site()
        if self._relocation is not None:
            if faults.relocation == "refuse":
                await self._relocation.unlisten()
            else:
                await self._relocation.listen()

    # ---- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        self._runner = web.AppRunner(xend_app(self.node), access_log=None)
        await self._runner.setup()
        if self.config.relocation is not None:
            self._relocation = RelocationListener(self.node, self.config.relocation)
            await self._relocation.listen()
        await self._start_http_site()
        if self.config.control is not None:
            self._control_runner = web.AppRunner(control_app(self.node), access_log=None)
            await self._control_runner.setup()
            site = web.TCPSite(self._control_runner, *self.config.control)
            await site.start()
            self._control_address = (self.config.control[0], site.port)
        # A port is bound even for a fault that starts "down", so its number is known.
        await self._sync_listeners()

    async def _start_http_site(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self._http_address[0], self._http_address[1], reuse_address=True)
        await site.start()
        self._site = site
        self._http_address = (self._http_address[0], site.port)

    async def stop(self) -> None:
        if self._relocation is not None:
            await self._relocation.close()
        for runner in (self._runner, self._control_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._control_runner = None
        self._site = None

    async def __aenter__(self) -> XendHost:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
