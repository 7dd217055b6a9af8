"""Every rule, refused by the model and by the API server (schema and CEL), naming the same field.

The third refuser, the admission webhook, is walked the same way in tests/operator/test_webhook.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.api.base import Model
from controller.api.errors import SpecError
from controller.api.hypervisor_host import HypervisorHost
from controller.api.migration_policy import MigrationPolicy
from controller.api.resource import DomainMigration
from controller.api.rules import HOST_SPEC, MIGRATION_SPEC
from tests.api.violations import VALID_HOST, VALID_MIGRATION, Violation, all_violations
from tests.deploy.test_manifests import CRD_FILES
from tests.kube.emulator import ApiError, ApiServer

VIOLATIONS = all_violations()
MODELS: dict[str, type[Model]] = {
    "DomainMigration": DomainMigration,
    "HypervisorHost": HypervisorHost,
    "MigrationPolicy": MigrationPolicy,
}
PLURALS = {
    "DomainMigration": "domainmigrations",
    "HypervisorHost": "hypervisorhosts",
    "MigrationPolicy": "migrationpolicies",
}


def model_fields(v: Violation) -> list[str]:
    try:
        MODELS[v.kind].parse(v.document)
    except SpecError as exc:
        return [line.split(": ", 1)[0] for line in exc.problems]
    return []


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    with ApiServer(crds=CRD_FILES) as server:
        yield server


def api_fields(api: ApiServer, v: Violation) -> list[str]:
    try:
        api.create(v.document)
    except ApiError as exc:
        assert exc.status == 422, exc
        causes = (exc.details or {}).get("causes", [])
        return [c.get("field", "") for c in causes]
    api.delete_object(PLURALS[v.kind], v.document["metadata"]["name"], v.document["metadata"].get("namespace"))
    return []


def test_the_book_is_complete() -> None:
    # The issue's own examples, each a rule of its own.
    messages = {rule.message for rule in MIGRATION_SPEC}
    assert "offline and autoConverge cannot be combined: auto-converge throttles a running domain" in messages
    assert {r.path for r in MIGRATION_SPEC} >= {"params[downtime]", "params[xen.port]", "params", "destination"}
    assert {r.path for r in HOST_SPEC} == {"uri", "test", "peerToPeer"}
    assert len(VIOLATIONS) > 80


def test_valid_documents_pass_everywhere(api: ApiServer) -> None:
    DomainMigration.parse(VALID_MIGRATION)
    HypervisorHost.parse(VALID_HOST)
    api.create(VALID_HOST)
    api.create(VALID_MIGRATION)
    api.delete_object("hypervisorhosts", "host-a")
    api.delete_object("domainmigrations", "m", "default")


@pytest.mark.parametrize("violation", VIOLATIONS, ids=lambda v: v.id)
def test_the_model_and_the_api_server_refuse_naming_the_field(api: ApiServer, violation: Violation) -> None:
    assert violation.field in model_fields(violation), model_fields(violation)
    fields = api_fields(api, violation)
    assert violation.field in fields, fields
