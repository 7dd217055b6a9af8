"""What every handler of one operator process shares (kept in kopf's memo)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.backends.registry import DriverTable
from controller.operator.admission import Admission
from controller.operator.config import OperatorConfig
from controller.operator.kube import Kube


@dataclass
class Context:
    config: OperatorConfig
    kube: Kube
    drivers: DriverTable
    admission: Admission
    # kopf hands indexes only to handlers; the first daemon puts them here for the shared parts.
    hosts_index: Any = field(default_factory=dict)
