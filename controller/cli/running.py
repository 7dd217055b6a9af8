"""How a command ends, for `domig`, `domig xend-demo`, `domig operator` and `kubectl domig` alike:
a migration run here to its end, the final report, and the exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import NoReturn

import yaml

from controller.api.enums import Phase
from controller.api.errors import SpecError
from controller.api.resource import DomainMigration
from controller.api.status import DomainMigrationStatus
from controller.backends.registry import DriverTable
from controller.cli.lazy import Command
from controller.cli.stderr import Stderr
from controller.engine import Controls, Engine, RunPolicy, StaticHosts

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
    migration: DomainMigration,
    hosts: StaticHosts,
    output: str,
    err: Stderr,
    poll: float = 0.25,
    drivers: DriverTable | None = None,
) -> DomainMigrationStatus:
    """Run it to its end; `drivers`, when given, are the caller's to close (placement used them)."""
    controls = Controls()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Ctrl-C aborts the migration (the source keeps running) instead of killing us mid-way.
        loop.add_signal_handler(sig, controls.request_abort)
    # Ctrl-\ forces it to complete: post-copy when allowed, else a pause of the guest.
    loop.add_signal_handler(signal.SIGQUIT, controls.request_force_complete)
    owned = drivers is None
    drivers = drivers or DriverTable()
    engine = Engine(drivers, hosts, RunPolicy(poll_interval=poll))
    try:
        # The progress bar is loaded only to be shown (rich.progress is a tenth of the start-up).
        from controller.cli.render import LiveView, quiet

        if output == "json":
            return await engine.run(migration, quiet, controls)
        with LiveView(err.console) as view:
            return await engine.run(migration, view, controls)
    finally:
        if owned:
            await drivers.close()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            loop.remove_signal_handler(sig)


def report(status: DomainMigrationStatus, output: str, err: Stderr) -> int:
    """The final word on a migration, here or in a cluster: its status as asked, and the exit code."""
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


def report_invalid(prog: str, exc: SpecError) -> int:
    for problem in exc.problems:
        print(f"{prog}: invalid: {problem}", file=sys.stderr)
    return EXIT_INVALID


def finish(code: int) -> NoReturn:
    """End the process once its work is done and said: Python's own teardown after that (modules,
    joining the driver's idle threads) was 0.2 s of a 3 s `domig migrate` on libvirt, for nothing."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the reader went away, or the stream is closed: nothing more can be said
    os._exit(code)


def run_command(prog: str, command: Command, args: argparse.Namespace) -> int:
    """A command's exit code; bad input is one line per problem, never a traceback."""
    try:
        return command(args)
    except SpecError as exc:
        return report_invalid(prog, exc)
    except BrokenPipeError:
        # The reader went away (`| head`): what it wanted, it has.
        return EXIT_OK
