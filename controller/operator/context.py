"""What every handler of one operator process shares (kept in kopf's memo)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import kopf

from controller.backends.registry import DriverTable
from controller.engine.admission import Admission, Ticket
from controller.operator.config import OperatorConfig
from controller.operator.kube import Kube

Store = Iterable[Mapping[str, Any]]  # kopf.Store: the values one object put under a key


@dataclass(frozen=True)
class Indexes:
    """kopf's in-memory indexes (handlers.py declares them), typed for the code that reads them."""

    hosts: Mapping[str, Store]  # name -> the HypervisorHost's body parts
    active: Mapping[str, Iterable[Ticket]]  # namespace/name -> the ticket of a migration past admission
    policies: Mapping[str, Store]  # name -> the MigrationPolicy's body parts
    namespace_labels: Mapping[str, Iterable[Mapping[str, str]]]


class Waiting(Protocol):
    """A migration's daemon, as what wakes it sees it (migrations.MigrationDaemon)."""

    wake: asyncio.Event
    stopped: kopf.DaemonStopped


@dataclass
class Context:
    config: OperatorConfig
    kube: Kube
    drivers: DriverTable
    admission: Admission
    indexes: Indexes  # kopf's, handed to the start-up handler once; the same objects for the whole run
    # Each running daemon by its resource's namespace/name: its watch events wake it.
    daemons: dict[str, Waiting] = field(default_factory=dict)
    paused: set[Waiting] = field(default_factory=set)  # daemons waiting for news (MigrationDaemon.news)
    # namespace/name -> (DomainMigration, Reporter): what the waiting room began, for the daemon that
    # kopf spawns at the Validating it wrote: one read and parse fewer, and the same status patches.
    handed: dict[str, Any] = field(default_factory=dict)
    exiting: bool = False  # a daemon was stopped because the operator exits: start no new work

    async def wake_the_stopped(self, every: float = 1.0) -> None:
        """kopf says "stop" to a daemon with a flag, and a paused daemon waits on its own wake-up
        only: one loop looks at every paused daemon's flag, instead of a task for each."""
        while True:
            await asyncio.sleep(every)
            for daemon in list(self.paused):
                if daemon.stopped:
                    daemon.wake.set()
