"""`domig xend-demo`: two test xends, in this process, and one migration through the xend driver.

The xends listen where the hosts file says (``xend+http://HOST:PORT``) and take migrations on
PORT+2, xend's own layout (8000 for HTTP, 8002 for relocation). The source starts with the
migration's domain running.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from controller.api.errors import SpecError
from controller.api.resource import DomainMigration
from controller.api.status import DomainMigrationStatus
from controller.backends.protocol import BackendError, HostConfig
from controller.backends.xend.transport import parse_uri
from controller.cli.documents import load_hosts_file, load_migration_file
from controller.cli.running import EXIT_INVALID, report, run_migration
from controller.cli.stderr import Stderr
from controller.engine.host_directory import StaticHosts

if TYPE_CHECKING:
    from xendsim import XendHost

RELOCATION_OFFSET = 2  # xend-port 8000, xend-relocation-port 8002
DEMO_MEMORY_MIB = 1024
# Bytes streamed per MiB of guest memory at the test xend's 8 Mbit/s: 1 GiB takes ~2 s.
DEMO_MEMORY_SCALE = 2048
# The simulator is its own distribution (xendsim/ in the repository), absent from domig's wheel and image.
SIMULATOR_MISSING = (
    "domig xend-demo: the xend simulator is not installed; "
    "from a domig checkout run `pip install ./xendsim` (or `make setup`)"
)


def relocation_port(http_port: int) -> int:
    return http_port + RELOCATION_OFFSET


def http_address(host: HostConfig) -> tuple[str, int]:
    """Where a test xend for this host must listen; only TCP xend hosts can have one."""
    if host.driver != "xend":
        raise SpecError([f"host {host.name}: driver is {host.driver}; the xend demo needs xend hosts"])
    try:
        endpoint = parse_uri(host.uri)
    except BackendError as exc:
        raise SpecError([f"host {host.name}: {exc.message}"]) from None
    if endpoint.socket is not None:
        raise SpecError([f"host {host.name}: the xend demo serves TCP only, not {endpoint.shown}"])
    address, _, port = endpoint.base_url.removeprefix("http://").rpartition(":")
    return address.strip("[]"), int(port)


def simulator() -> type[XendHost] | None:
    """The test xend, or None where it is not installed (the operator image, a plain `pip install`)."""
    # Loaded only here: no other command needs it, and the xend driver never does.
    try:
        from xendsim import XendHost
    except ModuleNotFoundError as exc:
        if exc.name != "xendsim":
            raise  # the simulator is there but broken: let that show
        return None
    return XendHost


def cmd_xend_demo(args: argparse.Namespace) -> int:
    xend_host = simulator()
    if xend_host is None:
        print(SIMULATOR_MISSING, file=sys.stderr)
        return EXIT_INVALID
    migration = load_migration_file(Path(args.file))
    hosts = load_hosts_file(Path(args.hosts))
    err = Stderr()
    status = asyncio.run(_demo(xend_host, migration, hosts, args.output, err))
    return report(status, args.output, err)


async def _demo(
    xend_host: type[XendHost], migration: DomainMigration, hosts: StaticHosts, output: str, err: Stderr
) -> DomainMigrationStatus:

    spec = migration.spec
    source, destination = hosts.find(spec.source), hosts.find(spec.destination or "")
    for field, name, found in (("source", spec.source, source), ("destination", spec.destination, destination)):
        if found is None:
            raise SpecError([f"spec.{field}: no host named {name!r} (known: {hosts.names})"])
    assert source is not None and destination is not None
    (source_ip, source_port), (destination_ip, destination_port) = http_address(source), http_address(destination)
    async with AsyncExitStack() as stack:
        try:
            b = await stack.enter_async_context(
                xend_host(
                    name=destination.name,
                    http=(destination_ip, destination_port),
                    relocation=(destination_ip, relocation_port(destination_port)),
                    memory_scale=DEMO_MEMORY_SCALE,
                )
            )
            a = await stack.enter_async_context(
                xend_host(
                    name=source.name,
                    http=(source_ip, source_port),
                    relocation=(source_ip, relocation_port(source_port)),
                    # port=0 means "the relocation port": the destination's, in this layout.
                    relocation_default_port=relocation_port(destination_port),
                    memory_scale=DEMO_MEMORY_SCALE,
                    domains=[f"name={spec.domain},memory={DEMO_MEMORY_MIB}"],
                )
            )
        except OSError as exc:
            raise SpecError([f"cannot start the test xends: {exc.strerror or exc}"]) from None
        if output == "text":
            err.print(f"[dim]test xends: {a.name} at {a.url}, {b.name} at {b.url}; {spec.domain} runs on {a.name}[/]")
        status = await run_migration(migration, hosts, output, err, poll=0.1)
        if output == "text":
            for xend in (a, b):
                err.print(f"[dim]{xend.name} runs: {', '.join(xend.state.names())}[/]")
        return status
