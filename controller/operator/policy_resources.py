"""MigrationPolicy resources, as kopf indexes them: which one selects a migration.

The operator chooses once, at admission, and the status keeps what the policy said; the webhook
chooses the same way at apply time to refuse what that policy forbids.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from controller.api.errors import SpecError
from controller.api.migration_policy import MigrationPolicy, select_policy
from controller.operator.context import Store


def policy_for(
    policies: Mapping[str, Store],
    namespace_labels: Mapping[str, Iterable[Mapping[str, str]]],
    namespace: str,
    labels: Mapping[str, str],
) -> MigrationPolicy | None:
    parsed = []
    for store in policies.values():
        for body in store:
            with contextlib.suppress(SpecError):  # a policy the model refuses selects nothing
                parsed.append(MigrationPolicy.parse(body))
    ns_labels = next(iter(namespace_labels.get(namespace, [])), {})
    return select_policy(parsed, ns_labels, labels)
