"""What may change in a DomainMigration's spec once it has started: abort, forceComplete and live tuning."""

from typing import Any

from controller.api.params import LIVE_TUNABLE


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


MUTABLE = {"abort", "forceComplete", *(f"params.{name}" for name in LIVE_TUNABLE)}


def refused_changes(accepted: dict[str, Any], live: dict[str, Any], chosen: str | None = None) -> list[str]:
    """The spec fields that changed since the migration started, other than the ones allowed to.
    `chosen`: the destination the operator chose, which the accepted spec holds and the live one need not."""
    if chosen is not None and live.get("destination") is None:
        live = {**live, "destination": chosen}
    before, after = _flatten(accepted), _flatten(live)
    changed = [key for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)]
    # An empty list/map and an absent one are the same request.
    return [key for key in changed if key not in MUTABLE and (before.get(key) or after.get(key))]
