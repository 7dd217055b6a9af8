"""What a MigrationPolicy forbids: the spec fields that ask for more than the policy grants.

A policy's `allow*: false` and its `maxDowntimeMs` are permissions as well as defaults: a spec,
a schedule or a force-complete that asks for what they forbid is refused, naming the policy. Unset
(`null`) grants: only `false` forbids. The webhook asks this at apply time, the engine again when
the migration is validated, so a cluster without the webhook refuses the same things.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.api.convergence import ConvergenceStep
from controller.api.enums import MigrationFlag
from controller.api.spec import DomainMigrationSpec

if TYPE_CHECKING:  # the policy model asks this module about its own schedule
    from controller.api.migration_policy import MigrationPolicySpec

DISRUPTIVE_FLAGS = (MigrationFlag.paused,)  # the guest does not run after the migration


def _says(name: str, what: str, setting: str) -> str:
    policy = f"MigrationPolicy {name}" if name else "this MigrationPolicy"
    return f"PolicyForbids: {policy} does not allow {what} ({setting})"


def forbidden_steps(
    name: str, policy: MigrationPolicySpec, steps: list[ConvergenceStep], prefix: str
) -> list[tuple[str, str]]:
    found = []
    for i, step in enumerate(steps):
        where = f"{prefix}[{i}].do"
        if step.do.post_copy and policy.allow_post_copy is False:
            found.append((f"{where}.postCopy", _says(name, "post-copy", "allowPostCopy: false")))
        if step.do.pause and policy.allow_workload_disruption is False:
            found.append((f"{where}.pause", _says(name, "pausing the guest", "allowWorkloadDisruption: false")))
        limit = policy.max_downtime_ms
        if step.do.raise_downtime is not None and limit is not None and step.do.raise_downtime > limit:
            why = f"a downtime above {limit} ms"
            found.append((f"{where}.raiseDowntime", _says(name, why, f"maxDowntimeMs: {limit}")))
    return found


def forbidden_by(name: str, policy: MigrationPolicySpec, spec: DomainMigrationSpec) -> list[tuple[str, str]]:
    """(spec field, why) for everything in the spec the policy forbids."""
    found = []
    for i, flag in enumerate(spec.flags):
        if flag is MigrationFlag.postCopy and policy.allow_post_copy is False:
            found.append((f"flags[{i}]", _says(name, "post-copy", "allowPostCopy: false")))
        if flag is MigrationFlag.autoConverge and policy.allow_auto_converge is False:
            found.append((f"flags[{i}]", _says(name, "auto-converge", "allowAutoConverge: false")))
        if flag in DISRUPTIVE_FLAGS and policy.allow_workload_disruption is False:
            why = "leaving the guest paused"
            found.append((f"flags[{i}]", _says(name, why, "allowWorkloadDisruption: false")))
    downtime, limit = spec.params.get("downtime"), policy.max_downtime_ms
    if isinstance(downtime, int) and limit is not None and downtime > limit:
        found.append(("params[downtime]", _says(name, f"a downtime above {limit} ms", f"maxDowntimeMs: {limit}")))
    found += forbidden_steps(name, policy, spec.convergence or [], "convergence")
    if spec.force_complete and policy.allow_post_copy is False and policy.allow_workload_disruption is False:
        why = "forcing completion: it needs post-copy or pausing the guest"
        found.append(("forceComplete", _says(name, why, "allowPostCopy: false, allowWorkloadDisruption: false")))
    return found
