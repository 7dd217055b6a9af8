"""Twenty DomainMigrations created at once, two at a time out of the source host (maxOutbound: 2),
all end Succeeded within a minute: the emulated API server keeps up with a busy operator (its request
dispatching once re-filtered the whole request log per request, and slowed down until nothing moved)."""

from __future__ import annotations

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import NS, host, migration, until

COUNT = 20


async def test_twenty_migrations_at_once_all_succeed(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    domains = [{"name": f"vm-{i:02d}", "memoryMiB": 512} for i in range(COUNT)]
    kube.apply(host("host-a", world, domains, linkMiBps=4000, limits={"maxOutbound": 2}))
    kube.apply(host("host-b", world, linkMiBps=4000))
    for domain in domains:
        kube.apply(migration(domain["name"], domain=domain["name"]))

    def all_succeeded() -> bool:
        phases = [(m.get("status") or {}).get("phase") for m in kube.list_objects("domainmigrations", NS)]
        return phases.count("Succeeded") == COUNT

    await until(all_succeeded, within=60)
