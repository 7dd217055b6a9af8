"""What every handler of one operator process shares (kept in kopf's memo)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class Context:
    config: OperatorConfig
    kube: Kube
    drivers: DriverTable
    admission: Admission
    indexes: Indexes  # kopf's, handed to the start-up handler once; the same objects for the whole run
    # Each running daemon's wake-up for its resource's watch events (MigrationDaemon.follow_spec).
    edits: dict[str, asyncio.Event] = field(default_factory=dict)
    exiting: bool = False  # a daemon was stopped because the operator exits: start no new work
