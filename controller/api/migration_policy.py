"""MigrationPolicy: defaults and permissions for the migrations it selects, as KubeVirt's does.

A policy selects DomainMigrations by their namespace's labels and their own labels; when several
match, the one matching the most labels wins (KubeVirt's rule), ties going to the first by name.
What the DomainMigration says itself always wins over what a policy says.
"""

from collections.abc import Iterable, Mapping
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt

from controller.api.base import Model
from controller.api.convergence import MAX_STEPS, ConvergenceStep
from controller.api.permissions import forbidden_steps
from controller.api.resource import ObjectMeta


class PolicySelectors(Model):
    namespace_selector: dict[str, str] = Field(default_factory=dict)
    migration_selector: dict[str, str] = Field(default_factory=dict)


class MigrationPolicySpec(Model):
    selectors: PolicySelectors = Field(default_factory=PolicySelectors)
    bandwidth_per_migration: Annotated[StrictInt, Field(ge=0)] | None = None  # MiB/s
    max_downtime_ms: Annotated[StrictInt, Field(ge=1)] | None = None
    completion_timeout_per_gib: Annotated[StrictInt, Field(ge=1)] | None = Field(None, alias="completionTimeoutPerGiB")
    progress_timeout: Annotated[StrictInt, Field(ge=1)] | None = None
    allow_auto_converge: StrictBool | None = None
    allow_post_copy: StrictBool | None = None
    # Pausing the guest to make it converge (a schedule's pause, force-complete by pausing).
    allow_workload_disruption: StrictBool | None = None
    on_timeout: Literal["abort", "postCopy", "forceComplete"] | None = None
    # For the migrations it selects whose spec has none; absent: the default schedule.
    convergence: list[ConvergenceStep] | None = Field(None, max_length=MAX_STEPS)

    def problems(self) -> list[tuple[str, str]]:
        """Its own schedule must not ask for what it forbids."""
        return forbidden_steps("", self, self.convergence or [], "convergence")


class MigrationPolicy(Model):
    api_version: Literal["domig.dev/v1alpha1"] = "domig.dev/v1alpha1"
    kind: Literal["MigrationPolicy"] = "MigrationPolicy"
    metadata: ObjectMeta
    spec: MigrationPolicySpec  # required, as the CRD has it: `spec: {}` is a policy that sets nothing
    status: dict[str, object] | None = None

    def problems(self) -> list[tuple[str, str]]:
        return [(f"spec.{field}", why) for field, why in self.spec.problems()]


def _score(selector: Mapping[str, str], labels: Mapping[str, str]) -> int | None:
    """How many labels the selector matches, or None if any of them does not."""
    if any(labels.get(key) != value for key, value in selector.items()):
        return None
    return len(selector)


def select_policy(
    policies: Iterable[MigrationPolicy], namespace_labels: Mapping[str, str], migration_labels: Mapping[str, str]
) -> MigrationPolicy | None:
    best: tuple[int, str] | None = None
    chosen = None
    for policy in policies:
        ns = _score(policy.spec.selectors.namespace_selector, namespace_labels)
        own = _score(policy.spec.selectors.migration_selector, migration_labels)
        if ns is None or own is None:
            continue
        key = (-(ns + own), policy.metadata.name)
        if best is None or key < best:
            best, chosen = key, policy
    return chosen
