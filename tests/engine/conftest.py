"""An engine over the in-memory test driver, with a sink that records what it was told."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.api import DomainMigration, DomainMigrationStatus, Phase, load_migration
from controller.backends.protocol import BackendError, HostConfig
from controller.backends.registry import DriverTable
from controller.backends.test.driver import CAPABILITIES, TestDriver
from controller.engine import Controls, Engine, RunPolicy, StaticHosts, Transition

URI = "test:///default"


class Crash(BaseException):
    """Stands for kill -9: nothing in the engine may catch it."""


@dataclass
class Recorder:
    statuses: list[DomainMigrationStatus] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    hooks: dict[Phase, Callable[[], Awaitable[None] | None]] = field(default_factory=dict)
    crash_at: int | None = None

    async def __call__(self, status: DomainMigrationStatus, transition: Transition | None) -> None:
        self.statuses.append(status.model_copy(deep=True))
        if transition is not None:
            self.transitions.append(transition)
            hook = self.hooks.get(transition.after)
            if hook is not None:
                result = hook()
                if result is not None:
                    await result
        if self.crash_at is not None and len(self.statuses) == self.crash_at:
            raise Crash()

    @property
    def phases(self) -> list[Phase]:
        return [t.after for t in self.transitions]


@dataclass
class Lab:
    driver: TestDriver
    hosts: list[HostConfig]
    policy: RunPolicy

    def engine(self, **policy: Any) -> Engine:
        pol = RunPolicy(**{**self.policy.__dict__, **policy}) if policy else self.policy
        return Engine(DriverTable({"test": self.driver}), StaticHosts(self.hosts), pol)

    async def run(
        self,
        migration: DomainMigration,
        recorder: Recorder | None = None,
        controls: Controls | None = None,
        **policy: Any,
    ) -> DomainMigrationStatus:
        await self.seed()
        return await self.engine(**policy).run(migration, recorder or Recorder(), controls)

    async def seed(self) -> None:
        """The hosts exist before any engine looks at them, as real ones do."""
        for host in self.hosts:
            with contextlib.suppress(BackendError):
                await self.driver.connect(host)

    @property
    def state(self) -> dict[str, Any]:
        return self.driver.world(URI).read()

    @property
    def migrate_calls(self) -> int:
        return int(self.state.get("migrateCalls", 0))

    def domains(self, host: str) -> dict[str, str]:
        return {name: d["state"] for name, d in self.state["hosts"][host]["domains"].items()}

    def where(self, uuid_of: str = "web") -> dict[str, str]:
        """Every host that holds the domain, with its state there."""
        found = {}
        for host, data in self.state["hosts"].items():
            for name, record in data["domains"].items():
                if name == uuid_of or record["uuid"] == uuid_of:
                    found[host] = record["state"]
        return found


def make_lab(
    domains: list[dict[str, Any]] | None = None,
    a: dict[str, Any] | None = None,
    b: dict[str, Any] | None = None,
    **policy: Any,
) -> Lab:
    domains = domains if domains is not None else [{"name": "web", "memoryMiB": 2048, "dirtyRateMiBps": 100}]
    return Lab(
        TestDriver(),
        [
            HostConfig("a", "test", URI, options={"domains": domains, "linkMiBps": 1000, **(a or {})}),
            HostConfig("b", "test", URI, options={"linkMiBps": 1000, **(b or {})}),
        ],
        RunPolicy(**policy),
    )


class NarrowDriver(TestDriver):
    """A driver that, like the 2007 Xen driver, knows only `live` and two parameters."""

    capabilities = CAPABILITIES.__class__(
        flags=frozenset({"live"}),
        params=frozenset({"xen.port", "xen.resource"}),
        job_history=True,  # type: ignore[arg-type]
    )


@pytest.fixture
def lab() -> Lab:
    return make_lab()


def migration(**spec: Any) -> DomainMigration:
    base: dict[str, Any] = {"domain": "web", "source": "a", "destination": "b", "flags": ["live"]}
    base.update(spec)
    return load_migration({"metadata": {"name": "m", "generation": 1}, "spec": base})
