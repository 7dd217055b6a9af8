"""Engine progress -> status patches (throttled), Kubernetes Events and metrics.

Who writes a DomainMigration's status, all of it from this module:
- `Reporter.patch`, the daemon's one writer while a migration waits, runs and ends: the engine's
  reports, the operator's waits (Pending) and early ends, the live spec's observations
  (observedGeneration, SpecChangeRefused). One writer per migration, one patch at a time.
- `record_edit`, for a finished migration, which has no daemon: an edit seen after the end.
kopf itself writes only its own keys under status (its progress storage), never ours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from controller.api.conditions import set_condition
from controller.api.errors import SpecError
from controller.api.status import ConditionType, DomainMigrationStatus, timestamp
from controller.engine.run import Marker, Transition, marker_of, must_save
from controller.operator import metrics
from controller.operator.kube import Kube


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
        saved: Mapping[str, Any] | None = None,
    ) -> None:
        """`saved`: the status as the API server holds it when the daemon starts (not kopf's copy)."""
        saved = saved or {}
        self.kube = kube
        self.body = body
        self.interval = interval
        self.logger = logger
        self.last_patch = float("-inf")
        self.refusal: Refusal | None = None  # SpecChangeRefused, once the live spec has been looked at
        self.last: DomainMigrationStatus | None = None
        self.saved_marker: Marker = (saved.get("migrationStartTime"), saved.get("reason"))
        self.observed: int | None = None  # the generation the last patch recorded
        self._patching = asyncio.Lock()
        # Convergence steps already told as Events (a resumed daemon does not tell them twice).
        self.steps_told = len(saved.get("convergence") or [])
        self.limitations_told = len(saved.get("limitations") or [])

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
        new_steps = status.convergence[self.steps_told :]
        new_limits = status.limitations[self.limitations_told :]
        urgent = transition is not None or bool(new_steps) or bool(new_limits) or must_save(self.saved_marker, status)
        if not urgent and now - self.last_patch < self.interval:
            return
        await self.patch(status)
        if transition is not None:
            self.event(transition)
        for record in new_steps:
            kind = "Warning" if record.outcome == "Failed" else "Normal"
            step = f"step {record.step + 1}, {record.action} ({record.trigger})"
            said = f"{step}: {record.outcome.lower()}: {record.message}"
            kopf.event(self.body, type=kind, reason="ConvergenceStep", message=said)
            self.logger.info(said)
        self.steps_told += len(new_steps)
        for said in new_limits:
            kopf.event(self.body, type="Warning", reason="Limitation", message=said)
            self.logger.warning(said)
        self.limitations_told += len(new_limits)

    async def patch(self, status: DomainMigrationStatus) -> None:
        # One patch at a time, each a snapshot taken when its turn comes: two in flight could land
        # in either order, and an older one landing last would erase the migrate-call marker.
        async with self._patching:
            generation = self.body.metadata.get("generation")
            if self.refusal is not None:
                set_condition(status.conditions, ConditionType.SpecChangeRefused, *self.refusal, timestamp())
            status.observed_generation = generation
            for condition in status.conditions:
                condition.observed_generation = generation
            marker = marker_of(status)
            await self.kube.patch_status("domainmigrations", self.name, self.namespace, status_patch(status))
            self.last_patch = asyncio.get_running_loop().time()
            self.saved_marker = marker
            self.observed = generation

    def event(self, transition: Transition) -> None:
        kind = "Warning" if transition.after.record.warning else "Normal"
        message = transition.message or transition.after.value
        kopf.event(self.body, type=kind, reason=transition.after.value, message=message)
        self.logger.info(f"{transition.before.value} -> {transition.after.value}: {message}")

    def refuse_changes(self, fields: list[str]) -> bool:
        """Mark (or clear) refused spec changes; True when that changed what status says."""
        # Nothing refused at the first look is no change: the first patch says NoChange anyway.
        before, self.refusal = self.refusal or refusal([]), refusal(fields)
        return before != self.refusal


Refusal = tuple[bool, str, str]  # SpecChangeRefused's status, reason and message


def refusal(fields: list[str]) -> Refusal:
    if not fields:
        return False, "NoChange", ""
    return (
        True,
        "Immutable",
        f"spec is immutable once a migration has started (changed: {', '.join(fields)}); "
        "only abort, forceComplete, params.bandwidth and params.downtime may change: "
        "create a new DomainMigration instead",
    )


async def record_edit(kube: Kube, body: kopf.Body, refused: list[str]) -> Refusal | None:
    """An edit of a finished migration: record that its generation was seen, and what was refused.

    Every condition keeps its transition time unless its status flips.
    """
    generation = body.metadata.get("generation")
    try:
        status = DomainMigrationStatus.parse(known_status(body.get("status")))
    except SpecError:
        return None  # not a status we wrote: nothing of ours to bring up to date
    said = refusal(refused) if refused else None
    if said is not None:
        set_condition(status.conditions, ConditionType.SpecChangeRefused, *said, timestamp())
    for condition in status.conditions:
        condition.observed_generation = generation
    patch = {"observedGeneration": generation, "conditions": [c.dump() for c in status.conditions]}
    await kube.patch_status("domainmigrations", str(body.metadata.name), body.metadata.namespace, patch)
    return said
