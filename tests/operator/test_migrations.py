"""A DomainMigration's daemon decides from the status the API server holds, not from kopf's copy."""

from __future__ import annotations

import copy

import kmock

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import HANDLERS, NS, host, migration, until, wait_phase, where, world_state

SLOW_WEB = {"name": "web", "memoryMiB": 3072, "dirtyRateMiBps": 10}  # ~6 s at 500 MiB/s
MIGRATIONS = kmock.resource("domig.dev", "v1alpha1", "domainmigrations")


async def test_a_daemon_handed_a_body_older_than_the_saved_status_reattaches(
    kube: ApiServer, world: str, operator_env: dict[str, str]
) -> None:
    """kopf hands a daemon the body of the event that spawned it, which may be older than the
    previous daemon's last patch: when an operator stops, kopf still works through the events it
    has queued (settings.queueing.exit_timeout) and spawns the daemon again with one of them, and
    a replica taking over has only its own watch stream. Without the migrate-call marker in that
    body, a running migration looks like somebody else's, and the daemon would end it Busy."""
    kube.apply(host("host-a", world, [SLOW_WEB], linkMiBps=500))
    kube.apply(host("host-b", world, linkMiBps=500))
    async with KopfOperator(kube, HANDLERS):
        kube.apply(migration("m"))
        await until(lambda: world_state(world)["migrateCalls"] == 1)
    saved = kube.read("domainmigrations", "m", NS)
    assert saved is not None and saved["status"]["phase"] == "Migrating", saved
    assert saved["status"]["migrationStartTime"]  # saved before the call, so the call is ours

    # The next operator's copy of it predates the marker (as kopf's queued event did); its watch
    # starts from now, so nothing newer arrives until it writes itself.
    stale = copy.deepcopy(saved)
    del stale["status"]["migrationStartTime"]
    listing = {
        "apiVersion": "domig.dev/v1alpha1",
        "kind": "DomainMigrationList",
        "metadata": {"resourceVersion": saved["metadata"]["resourceVersion"]},
        "items": [stale],
    }
    listed = len(list(kube[kmock.action.LIST, MIGRATIONS]))
    kube[kmock.action.LIST, MIGRATIONS][listed : listed + 1] << listing  # the next listing only
    async with KopfOperator(kube, HANDLERS):
        done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=60)
    assert (done["status"]["phase"], done["status"]["reason"]) == ("Succeeded", "Completed"), done["status"]
    assert done["status"]["migrationStartTime"] == saved["status"]["migrationStartTime"]
    assert world_state(world)["migrateCalls"] == 1
    assert where(world) == {"host-a": "shutoff", "host-b": "running"}
