"""A convergence schedule: ordered steps that help a migration finish, each a condition and an action.

Steps are taken in order, each once. A step's clock starts when the step before it was taken
(or when the migration started, for the first), so each action gets its own chance to work:
`notConvergingFor: 10` after a `raiseDowntime` means ten more seconds of "not converging" at
the new limit. All the conditions a step names must hold; it names exactly one action.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, model_validator

from controller.api.base import Model

Seconds = Annotated[StrictInt, Field(ge=0, le=86400)]


class StepCondition(Model):
    """When a step acts: every condition given holds."""

    model_config = {"json_schema_extra": {"minProperties": 1}}
    # The forecast has said NotConverging for this long, without a break.
    not_converging_for: Seconds | None = None
    # The data left to send has not reached a new low for this long.
    stalled_for: Seconds | None = None
    # The hypervisor has begun this pre-copy pass (the first pass is 1).
    iteration: Annotated[StrictInt, Field(ge=1, le=100000)] | None = None
    # This long since the migration started.
    elapsed: Seconds | None = None

    @model_validator(mode="before")
    @classmethod
    def _names_one(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data:
            raise ValueError(f"name at least one condition: {', '.join(cls.wire_fields())}")
        return data

    def given(self) -> dict[str, int]:
        return {k: v for k, v in self.model_dump(by_alias=True).items() if v is not None}


class StepAction(Model):
    """What a step does: exactly one action."""

    model_config = {"json_schema_extra": {"minProperties": 1, "maxProperties": 1}}
    # Allow a longer pause at switch-over (ms): the guest stops for at most this long.
    raise_downtime: Annotated[StrictInt, Field(ge=1, le=600000)] | None = None
    # Send faster (MiB/s).
    raise_bandwidth: Annotated[StrictInt, Field(ge=1, le=1000000)] | None = None
    # Switch to post-copy: the guest runs on the destination, the rest follows on demand.
    post_copy: Literal[True] | None = None
    # Pause the guest so what is left can be sent; it resumes on the destination.
    pause: Literal[True] | None = None
    # Give up: the domain keeps running on the source.
    abort: Literal[True] | None = None

    @model_validator(mode="before")
    @classmethod
    def _names_exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) != 1:
            raise ValueError(f"name exactly one action: {', '.join(cls.wire_fields())}")
        return data

    @property
    def name(self) -> str:
        return next(k for k, v in self.model_dump(by_alias=True).items() if v is not None)

    @property
    def value(self) -> int | None:
        given = self.model_dump(by_alias=True)[self.name]
        return None if given is True else int(given)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name} {self.value}"


class ConvergenceStep(Model):
    when: StepCondition
    do: StepAction

    def __str__(self) -> str:
        said = ", ".join(f"{k} {v}" for k, v in self.when.given().items())
        return f"{self.do} when {said}"


Schedule = list[ConvergenceStep]
MAX_STEPS = 32
