"""A controller process to kill: runs one migration and saves its status at every report.

``python -m tests.libvirt.engine_child MIGRATION.yaml HOSTS.yaml STATUS.json``
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from controller.api import DomainMigrationStatus
from controller.backends.registry import DriverTable
from controller.cli.documents import load_hosts_file, load_migration_file
from controller.engine import Engine, RunPolicy, Transition


async def main(migration: Path, hosts: Path, out: Path) -> None:
    async def save(status: DomainMigrationStatus, _t: Transition | None) -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(status.dump()))
        os.replace(tmp, out)  # the killer never reads half a file

    engine = Engine(DriverTable(), load_hosts_file(hosts), RunPolicy(poll_interval=0.2))
    await engine.run(load_migration_file(migration), save)


if __name__ == "__main__":
    asyncio.run(main(*(Path(a) for a in sys.argv[1:4])))
