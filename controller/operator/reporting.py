"""Engine progress -> status patches (throttled), Kubernetes Events and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from controller.api.enums import Phase
from controller.api.status import Condition, DomainMigrationStatus, timestamp
from controller.engine.run import Transition, must_save
from controller.operator import metrics
from controller.operator.kube import Kube

WARNING_PHASES = (Phase.Failed, Phase.Aborted)


def known_status(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """Our part of .status (kopf keeps its own bookkeeping there too)."""
    return DomainMigrationStatus.known(status)


def status_patch(status: DomainMigrationStatus) -> dict[str, Any]:
    """A merge patch that sets every field: absent ones as null, so stale values go away."""
    return {**dict.fromkeys(DomainMigrationStatus.wire_fields()), **status.dump()}


class Reporter:
    """The engine's sink for one DomainMigration."""

    def __init__(
        self,
        kube: Kube,
        body: kopf.Body,
        interval: float,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        initial_marker: str | None = None,
    ) -> None:
        self.kube = kube
        self.body = body
        self.interval = interval
        self.logger = logger
        self.last_patch = float("-inf")
        self.extra_conditions: list[Condition] = []
        self.last: DomainMigrationStatus | None = None
        self.saved_marker = initial_marker
        self.observed: int | None = None  # the generation the last patch recorded
        self._patching = asyncio.Lock()

    @property
    def name(self) -> str:
        return str(self.body.metadata.name)

    @property
    def namespace(self) -> str:
        return str(self.body.metadata.namespace)

    async def __call__(self, status: DomainMigrationStatus, transition: Transition | None) -> None:
        self.last = status
        metrics.observe(self.namespace, self.name, status)
        now = asyncio.get_running_loop().time()
        urgent = transition is not None or must_save(self.saved_marker, status)
        if not urgent and now - self.last_patch < self.interval:
            return
        await self.patch(status)
        if transition is not None:
            self.event(transition)

    async def patch(self, status: DomainMigrationStatus) -> None:
        # One patch at a time, each a snapshot taken when its turn comes: two in flight could land
        # in either order, and an older one landing last would erase the migrate-call marker.
        async with self._patching:
            generation = self.body.metadata.get("generation")
            kinds = {c.type for c in self.extra_conditions}
            status.conditions = [c for c in status.conditions if c.type not in kinds] + self.extra_conditions
            status.observed_generation = generation
            for condition in status.conditions:
                condition.observed_generation = generation
            marker = status.migration_start_time
            await self.kube.patch_status("domainmigrations", self.name, self.namespace, status_patch(status))
            self.last_patch = asyncio.get_running_loop().time()
            self.saved_marker = marker
            self.observed = generation

    def event(self, transition: Transition) -> None:
        kind = "Warning" if transition.after in WARNING_PHASES else "Normal"
        message = transition.message or transition.after.value
        kopf.event(self.body, type=kind, reason=transition.after.value, message=message)
        self.logger.info(f"{transition.before.value} -> {transition.after.value}: {message}")

    def refuse_changes(self, fields: list[str]) -> bool:
        """Mark (or clear) refused spec changes; True when that changed what status says."""
        before = [(c.status, c.message) for c in self.extra_conditions]
        self.extra_conditions = [refusal_condition(fields)]
        return before != [(c.status, c.message) for c in self.extra_conditions]


def observed(status: Mapping[str, Any], generation: int | None, condition: Condition | None = None) -> dict[str, Any]:
    """A status patch recording that this generation was seen (kstatus reads it), adding `condition`.

    Every other condition is kept as it is, its transition time included; `condition` keeps the
    time of the one it replaces when its status did not flip.
    """
    conditions = [dict(c) for c in status.get("conditions") or []]
    if condition is not None:
        fresh = condition.dump()
        before = next((c for c in conditions if c.get("type") == fresh["type"]), None)
        if before is not None and before.get("status") == fresh["status"]:
            fresh["lastTransitionTime"] = before.get("lastTransitionTime", fresh["lastTransitionTime"])
        conditions = [c for c in conditions if c.get("type") != fresh["type"]] + [fresh]
    for c in conditions:
        c["observedGeneration"] = generation
    return {"observedGeneration": generation, "conditions": conditions}


def refusal_condition(fields: list[str]) -> Condition:
    if not fields:
        return Condition(type="SpecChangeRefused", status="False", reason="NoChange", last_transition_time=timestamp())
    return Condition(
        type="SpecChangeRefused",
        status="True",
        reason="Immutable",
        message=(
            f"spec is immutable once a migration has started (changed: {', '.join(fields)}); "
            "only abort, params.bandwidth and params.downtime may change: create a new DomainMigration instead"
        ),
        last_transition_time=timestamp(),
    )
