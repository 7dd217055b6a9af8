"""`domig`: run a migration standalone, validate a document, or start the operator."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

import yaml
from rich.console import Console

from controller.api.enums import Phase
from controller.api.errors import SpecError
from controller.api.policy import select_policy
from controller.api.resource import DomainMigration
from controller.api.status import DomainMigrationStatus
from controller.backends.registry import DriverTable
from controller.cli.defaults import DEMO_HOSTS, DEMO_MIGRATION
from controller.cli.documents import load_hosts, load_hosts_file, load_migration_file, load_policies_file
from controller.cli.render import LiveView, quiet
from controller.engine import Controls, Engine, Policy, StaticHosts

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_ABORTED = 0, 1, 2, 3


def exit_code(status: DomainMigrationStatus) -> int:
    if status.phase is Phase.Succeeded:
        return EXIT_OK
    if status.phase is Phase.Aborted:
        return EXIT_ABORTED
    if status.reason is not None and status.reason.value in ("InvalidSpec", "NoSupport"):
        return EXIT_INVALID
    return EXIT_FAILED


async def run_migration(
    migration: DomainMigration, hosts: StaticHosts, output: str, err: Console, poll: float = 0.25
) -> DomainMigrationStatus:
    controls = Controls()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Ctrl-C aborts the migration (the source keeps running) instead of killing us mid-way.
        loop.add_signal_handler(sig, controls.request_abort)
    drivers = DriverTable()
    engine = Engine(drivers, hosts, Policy(poll_interval=poll))
    try:
        if output == "json":
            return await engine.run(migration, quiet, controls)
        with LiveView(err) as view:
            return await engine.run(migration, view, controls)
    finally:
        await drivers.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _report(status: DomainMigrationStatus, output: str, out: Console, err: Console) -> int:
    if output == "json":
        print(json.dumps(status.dump(), indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(status.dump(), sort_keys=False))
    else:
        style = "green" if status.phase is Phase.Succeeded else "red"
        err.print(
            f"[bold {style}]{status.phase.value}[/] ({status.reason.value if status.reason else '-'}): "
            f"{status.message or ''}"
        )
    return exit_code(status)


def cmd_migrate(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    if args.file is None:
        migration = DomainMigration.parse(yaml.safe_load(DEMO_MIGRATION))
        hosts = load_hosts(list(yaml.safe_load_all(DEMO_HOSTS)), Path("<embedded default>"))
        err.print("[dim]Running the embedded default: web (4 GiB) from host-a to host-b on the test driver[/]")
    else:
        migration = load_migration_file(Path(args.file))
        if args.hosts is None:
            raise SpecError(["--hosts: required with -f (a YAML file of HypervisorHost documents)"])
        hosts = load_hosts_file(Path(args.hosts))
    if getattr(args, "policies", None):
        # Standalone there is no namespace to label: policies select by the migration's own labels.
        chosen = select_policy(load_policies_file(Path(args.policies)), {}, migration.metadata.labels)
        if chosen is not None:
            migration.status.policy, migration.status.applied_policy = chosen.metadata.name, chosen.spec.dump()
            err.print(f"[dim]MigrationPolicy {chosen.metadata.name} applies[/]")
    status = asyncio.run(run_migration(migration, hosts, args.output, err))
    return _report(status, args.output, Console(), err)


def cmd_validate(args: argparse.Namespace) -> int:
    migration = load_migration_file(Path(args.file))
    if args.hosts:
        hosts = load_hosts_file(Path(args.hosts))
        for field, name in (("source", migration.spec.source), ("destination", migration.spec.destination)):
            if hosts.find(name) is None:
                raise SpecError([f"spec.{field}: no host named {name!r} in {args.hosts} (known: {hosts.names})"])
    print(f"{args.file}: valid DomainMigration {migration.metadata.name}")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="domig", description="Live-migrate domains between hypervisor hosts.")
    sub = top.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="run a DomainMigration document standalone")
    m.add_argument("-f", "--file", help="the DomainMigration YAML (default: the embedded demo)")
    m.add_argument("--hosts", help="YAML of HypervisorHost documents")
    m.add_argument("--policies", help="YAML of MigrationPolicy documents (selected by the migration's labels)")
    m.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    m.set_defaults(func=cmd_migrate)
    d = sub.add_parser("demo", help="migrate the embedded default on the test driver")
    d.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    d.set_defaults(func=cmd_migrate, file=None, hosts=None)
    v = sub.add_parser("validate", help="check a DomainMigration document without running it")
    v.add_argument("-f", "--file", required=True)
    v.add_argument("--hosts", help="also check the host names against this hosts file")
    v.set_defaults(func=cmd_validate)
    from controller.cli.xend_demo import add_parser as add_xend_demo  # kept out of the top: it imports main

    add_xend_demo(sub)
    from controller.cli.operator import add_parser as add_operator

    add_operator(sub)
    return top


def report_invalid(prog: str, exc: SpecError) -> int:
    for problem in exc.problems:
        print(f"{prog}: invalid: {problem}", file=sys.stderr)
    return EXIT_INVALID


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except SpecError as exc:
        return report_invalid("domig", exc)
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
