"""`domig migrate`, `domig demo` and `domig validate`: a document run or checked here, no cluster involved."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import yaml

from controller.api.errors import SpecError
from controller.api.resource import DomainMigration
from controller.api.status import DomainMigrationStatus
from controller.backends.registry import DriverTable
from controller.cli.defaults import DEMO_HOSTS, DEMO_MIGRATION
from controller.cli.documents import HostsFile, load_hosts, load_hosts_file, load_migration_file, load_policies_file
from controller.cli.running import EXIT_OK, report, run_migration
from controller.cli.stderr import Stderr


def cmd_migrate(args: argparse.Namespace) -> int:
    err = Stderr()
    if args.file is None:
        migration = DomainMigration.parse(yaml.safe_load(DEMO_MIGRATION))
        hosts = load_hosts(list(yaml.safe_load_all(DEMO_HOSTS)), Path("<embedded default>"))
        err.print("[dim]Running the embedded default: web (4 GiB) from host-a to host-b on the test driver[/]")
    else:
        migration = load_migration_file(Path(args.file))
        if args.hosts is None:
            raise SpecError(["--hosts: required with -f (a YAML file of HypervisorHost documents)"])
        hosts = load_hosts_file(Path(args.hosts))
    if getattr(args, "dry_run", False):
        migration.spec.dry_run = True
    if getattr(args, "policies", None):
        from controller.api.migration_policy import select_policy

        # Standalone there is no namespace to label: policies select by the migration's own labels.
        chosen = select_policy(load_policies_file(Path(args.policies)), {}, migration.metadata.labels)
        if chosen is not None:
            migration.status.policy, migration.status.applied_policy = chosen.metadata.name, chosen.spec.dump()
            err.print(f"[dim]MigrationPolicy {chosen.metadata.name} applies[/]")
    if migration.spec.destination is None:
        known(hosts, "source", migration.spec.source)
    status = asyncio.run(_migrate(migration, hosts, args.output, err))
    return report(status, args.output, err)


async def _migrate(migration: DomainMigration, hosts: HostsFile, output: str, err: Stderr) -> DomainMigrationStatus:
    """Run it; without a destination, choose one first, as the operator would, and say why."""
    drivers = DriverTable()
    migration.status.destination = migration.spec.destination
    try:
        if migration.spec.destination is None:
            # Only then: choosing a destination is the admission's work, which a named one needs not load.
            from controller.cli.destinations import Placer, place

            if not await place(Placer(hosts, drivers), migration):
                return migration.status
            said = migration.status.placement.message if migration.status.placement else migration.spec.destination
            err.print(f"[dim]Scheduled:[/] {said}", soft_wrap=True)
        return await run_migration(migration, hosts, output, err, drivers=drivers)
    finally:
        await drivers.close()


def known(hosts: HostsFile, field: str, name: str) -> None:
    if hosts.find(name) is None:
        raise SpecError([f"spec.{field}: no host named {name!r} in {hosts.path} (known: {', '.join(hosts.names)})"])


def cmd_validate(args: argparse.Namespace) -> int:
    migration = load_migration_file(Path(args.file))
    if args.hosts:
        hosts = load_hosts_file(Path(args.hosts))
        for field, name in (("source", migration.spec.source), ("destination", migration.spec.destination)):
            if name is not None:
                known(hosts, field, name)
    print(f"{args.file}: valid DomainMigration {migration.metadata.name}")
    return EXIT_OK
