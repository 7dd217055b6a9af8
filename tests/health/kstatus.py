"""kstatus's status of a custom resource, as sigs.k8s.io/cli-utils/pkg/kstatus/status computes it.

What Flux, `kubectl wait`-style tooling and Argo CD's generic health read, in kstatus's order
(status.Compute → checkGenericProperties; custom resources have no type-specific rules):
1. metadata.deletionTimestamp set → Terminating;
2. status.observedGeneration present and != metadata.generation → InProgress
   (reason LatestGenerationNotObserved);
3. condition Reconciling=True → InProgress; condition Stalled=True → Failed (first found wins);
4. otherwise Current (no status at all is Current too, for a resource kstatus knows no rules for).
"""

from __future__ import annotations

from typing import Any


def kstatus(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating", "Resource scheduled for deletion"
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        kind = obj.get("kind", "")
        return "InProgress", f"{kind} generation is {generation}, but latest observed generation is {observed}"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Reconciling" and condition.get("status") == "True":
            return "InProgress", condition.get("message") or condition.get("reason", "")
        if condition.get("type") == "Stalled" and condition.get("status") == "True":
            return "Failed", condition.get("message") or condition.get("reason", "")
    return "Current", "Resource is current"
