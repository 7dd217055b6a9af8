"""The operator's reactions, one small function each; the logic lives in the modules they call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import kopf

from controller.api.enums import Phase
from controller.api.errors import SpecError
from controller.api.hypervisor_host import Evacuation, HypervisorHost
from controller.api.immutability import refused_changes
from controller.api.resource import GROUP, VERSION
from controller.backends.protocol import BackendError
from controller.backends.registry import DriverTable
from controller.engine.admission import Admission, Ticket
from controller.engine.placement import Room
from controller.operator import host_evacuation, logs, metrics
from controller.operator.config import OperatorConfig
from controller.operator.context import Context, Indexes, Store
from controller.operator.host_resources import connect, limits_of
from controller.operator.kube import Kube
from controller.operator.migrations import FINALIZER, MigrationDaemon, running_tickets, ticket_of
from controller.operator.policy_resources import policy_for
from controller.operator.probe import migration_counts, probe
from controller.operator.reporting import record_edit
from controller.operator.review import chosen_destination, review_host, review_migration, review_policy
from controller.operator.waiting import WaitingRoom
from controller.operator.webhook import CONFIGURATION, cluster_server, local_server

CONFIG = OperatorConfig.from_environment()
TERMINAL = {phase.value for phase in Phase if phase.terminal}
# kopf passes every index by its name (the indexing functions below); the defaults are only for
# the typing of kopf's callback protocols, which a parameter without one does not satisfy.
NO_INDEX: Mapping[str, Any] = MappingProxyType({})
ACTIVE = {phase.value for phase in Phase if phase.active}


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings,
    memo: Any,
    hypervisor_hosts: Mapping[str, Store] = NO_INDEX,
    active_migrations: Mapping[str, Iterable[Ticket]] = NO_INDEX,
    migration_policies: Mapping[str, Store] = NO_INDEX,
    namespace_labels: Mapping[str, Iterable[Mapping[str, str]]] = NO_INDEX,
    **_: Any,
) -> None:
    """Fill the memo once: kopf's indexes are the same objects for the whole run, empty until listed."""
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING  # our own Events say what happened; kopf's would repeat it
    metrics.host_ready.ttl = 3 * CONFIG.probe_interval
    # kopf gives each resource a shallow copy of the memo: shared state lives in one object.
    indexes = Indexes(hypervisor_hosts, active_migrations, migration_policies, namespace_labels)
    admission = Admission(
        CONFIG.max_parallel, lambda name: limits_of(indexes.hosts, name), lambda: running_tickets(indexes.active)
    )
    ctx = Context(
        config=CONFIG, kube=Kube.from_environment(), drivers=DriverTable(), admission=admission, indexes=indexes
    )
    memo.ctx = ctx
    memo.room = WaitingRoom(ctx)
    memo.sweeper = asyncio.create_task(ctx.wake_the_stopped())
    if CONFIG.webhook_listen:
        settings.admission.managed = CONFIGURATION
        settings.admission.server = (
            await cluster_server(CONFIG.webhook_listen, CONFIG.webhook_service, ctx.kube)
            if CONFIG.webhook_service
            else local_server(CONFIG.webhook_listen)
        )


@kopf.on.cleanup()
async def close(memo: Any, **_: Any) -> None:
    memo.sweeper.cancel()
    memo.room.stop()
    await memo.ctx.drivers.close()


@kopf.index(GROUP, VERSION, "hypervisorhosts")
def hypervisor_hosts(name: str, body: kopf.Body, **_: Any) -> dict[str, Any]:
    return {name: {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": dict(body.status)}}


@kopf.index(GROUP, VERSION, "domainmigrations")
def active_migrations(
    namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, **_: Any
) -> Any:
    """Migrations past admission and not finished: they hold slots, also across restarts."""
    if status.get("phase") in ACTIVE:
        accepted = status.get("acceptedSpec") or spec
        memory = int((status.get("source") or {}).get("memoryBytes") or 0)  # what it takes at the destination
        created = meta.get("creationTimestamp", "")
        return {f"{namespace}/{name}": ticket_of(namespace or "", name, accepted, created, memory)}
    return {}  # not None: kopf keeps an object's old entries when its indexer returns None


@kopf.index(GROUP, VERSION, "migrationpolicies")
def migration_policies(name: str, body: kopf.Body, **_: Any) -> dict[str, Any]:
    return {name: {"metadata": dict(body.metadata), "spec": dict(body.spec)}}


@kopf.index("v1", "namespaces")
def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[str, Any]:
    return {name: dict(labels)}


def begun(status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
    """Begun (Validating to Verifying), or ended with our finalizer still on: kopf must see the
    daemon end by itself. Stopped by a filter that no longer matches, kopf would keep the object's
    last body in memory for a daemon it may spawn again: 15 KiB a finished migration. And a
    finished one without the finalizer gets no daemon at all, after a restart too."""
    phase = status.get("phase")
    return phase in ACTIVE or (phase in TERMINAL and FINALIZER in (meta.get("finalizers") or []))


# Only for a migration that has begun: a waiting one is the waiting room's (waiting.py), which
# writes Validating when admission lets it start; kopf spawns this daemon at that event.
# A deleted migration is aborted before its finalizer goes, which takes as long as the hypervisor
# takes to cancel; kopf looks again whether the daemon has exited every second, not every minute.
# A daemon waiting for kopf's finalizer hears of its stop from Context.wake_the_stopped within a
# second: kopf, exiting, waits the backoff for that (with none it would cancel the daemon at once).
@kopf.daemon(
    GROUP,
    VERSION,
    "domainmigrations",
    when=begun,
    cancellation_backoff=2.0,
    cancellation_timeout=None,
    cancellation_polling=1,
    backoff=5,
)
async def migrate(
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    logs.about(body)
    await MigrationDaemon(memo.ctx, body, stopped, logger).run()


@kopf.on.event(GROUP, VERSION, "domainmigrations")
async def edited_after_the_end(
    type: str,
    body: kopf.Body,
    status: kopf.Status,
    name: str,
    namespace: str | None,
    memo: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Every event: a waiting migration's goes to the waiting room, a running one's wakes its
    daemon, and a finished migration, which has neither, has an edit recorded here as seen and
    not acted on.

    An event handler, not an update handler: it sees every edit, also one that lands before kopf
    has finished with the creation, and it does nothing once observedGeneration has caught up.
    """
    memo.room.see(type, body, logger)
    daemon = memo.ctx.daemons.get(f"{namespace}/{name}")
    if daemon is not None:
        daemon.wake.set()  # it looks at the live spec again (MigrationDaemon.follow)
    generation = body.metadata.get("generation")
    if type == "DELETED" or status.get("phase") not in TERMINAL or status.get("observedGeneration") == generation:
        return  # a running daemon observes its own edits (MigrationDaemon.follow)
    accepted = dict(status.get("acceptedSpec") or {})
    refused = refused_changes(accepted, dict(body.spec), chosen_destination(body)) if accepted else []
    said = await record_edit(memo.ctx.kube, body, refused)
    if said is not None:
        kopf.event(body, type="Warning", reason="SpecChangeRefused", message=said[2])


def validate_migration(body: kopf.Body, memo: Any, warnings: list[str], **kwargs: Any) -> None:
    indexes = memo.ctx.indexes
    labels = dict(body.metadata.get("labels") or {})
    policy = policy_for(indexes.policies, indexes.namespace_labels, str(body.metadata.namespace or ""), labels)
    verdict = review_migration(body, kwargs.get("old"), indexes.hosts, memo.ctx.drivers, policy)
    warnings.extend(verdict.warnings)
    if verdict.problems:
        raise kopf.AdmissionError(verdict.message, code=422)


def validate_host(body: kopf.Body, **_: Any) -> None:
    verdict = review_host(body)
    if verdict.problems:
        raise kopf.AdmissionError(verdict.message, code=422)


def validate_policy(body: kopf.Body, **_: Any) -> None:
    verdict = review_policy(body)
    if verdict.problems:
        raise kopf.AdmissionError(verdict.message, code=422)


# Only with a server to serve them: kopf refuses to run admission handlers without one.
# Ignore on failure: the operator checks everything again itself, and a webhook that is down must
# not stop users from aborting or deleting migrations (README: "The admission webhook").
if CONFIG.webhook_listen:
    kopf.on.validate(GROUP, VERSION, "domainmigrations", id="migrations", operations=["CREATE", "UPDATE"],
                     ignore_failures=True)(validate_migration)  # fmt: skip
    kopf.on.validate(GROUP, VERSION, "hypervisorhosts", id="hosts", operations=["CREATE", "UPDATE"],
                     ignore_failures=True)(validate_host)  # fmt: skip
    kopf.on.validate(GROUP, VERSION, "migrationpolicies", id="policies", operations=["CREATE", "UPDATE"],
                     ignore_failures=True)(validate_policy)  # fmt: skip


@kopf.timer(GROUP, VERSION, "hypervisorhosts", interval=CONFIG.probe_interval, initial_delay=0.1)
async def probe_host(body: kopf.Body, memo: Any, patch: kopf.Patch, **_: Any) -> None:
    logs.about(body)
    name = str(body.metadata.name)
    # Known without the host: the migrations admitted to and from it (the index and this replica's own).
    patch.status.update(migration_counts(name, memo.ctx.admission.holders().values()))
    memo.ctx.admission.schedule()  # the host's limits may have changed: waiting migrations need not wait for a release
    previous = {"conditions": body.status.get("conditions", [])}  # so Ready keeps its transition time
    try:
        host = HypervisorHost.parse({"metadata": dict(body.metadata), "spec": dict(body.spec), "status": previous})
    except SpecError as exc:
        patch.status["reachable"] = False
        patch.status["message"] = "; ".join(exc.problems)
        metrics.host_probed(name, str(body.spec.get("driver", metrics.UNKNOWN)), False)
        return
    read_at = memo.ctx.admission.clock()
    found = await probe(host, memo.ctx.drivers, memo.ctx.kube)
    if found.get("reachable"):
        memo.ctx.admission.read_room(name, Room(found.get("memoryFreeBytes"), read_at))
    patch.status.update(found)


@kopf.daemon(GROUP, VERSION, "hypervisorhosts", id="presence", cancellation_timeout=5)
async def keep_the_room_open(name: str, stopped: kopf.DaemonStopped, memo: Any, **_: Any) -> None:
    """While it runs, the waiting room looks at waiting migrations (waiting.WaitingRoom.acting):
    kopf stops every daemon when this replica pauses for the one that leads."""
    memo.room.opened(name)
    try:
        await stopped.wait()
    finally:
        memo.room.closed(name)


def evacuating(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    return bool(spec.get("evacuate")) or not host_evacuation.settled(status.get("evacuation"))


@kopf.timer(GROUP, VERSION, "hypervisorhosts", id="evacuation", interval=CONFIG.host_retry, when=evacuating)
async def evacuate_host(body: kopf.Body, memo: Any, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    """spec.evacuate: make what is missing, count what there is; back to false: abort what runs."""
    logs.about(body)
    ctx = memo.ctx
    try:
        host = HypervisorHost.parse(
            {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": dict(body.status)}
        )
        conn = await connect(host, ctx.drivers, ctx.kube)
    except (SpecError, BackendError) as exc:
        logger.warning(f"cannot see what runs on {body.metadata.name} to evacuate it: {exc}")
        return
    try:
        active = [info.name for info in await conn.list_domains() if info.active]
    finally:
        await conn.close()
    found: Evacuation | None
    if host.spec.evacuate:
        tickets = [*ctx.admission.holders().values(), *(t for t, _ in ctx.admission.waiting.values())]
        busy = {t.domain for t in tickets if t.source == host.name}
        caps = ctx.drivers.get(host.spec.driver).capabilities
        namespace, settle = ctx.config.evacuation_namespace, 3 * ctx.config.host_retry
        found = await host_evacuation.tend(ctx.kube, host, active, busy, caps, namespace, settle)
    else:
        found = await host_evacuation.cancel(ctx.kube, host, active)
    if found is not None:
        # A merge patch keeps what it does not name: say idleSince's absence too.
        patch.status["evacuation"] = {"idleSince": None, **found.dump()}


# DELETED comes after the finalizer is gone, so after the probe timer stopped: no probe re-adds it.
@kopf.on.event(GROUP, VERSION, "hypervisorhosts", when=lambda type, **_: type == "DELETED")
def host_deleted(name: str, **_: Any) -> None:
    metrics.host_gone(name)
