"""`domig migrate` of a migration that names no destination: chosen among the hosts file's hosts
as the operator chooses, said on stderr and in the status, or refused with every host's reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.cli.worlds import domig, host, running_on, write_hosts


def migration(tmp_path: Path, **spec: Any) -> Path:
    doc = {
        "apiVersion": "domig.dev/v1alpha1",
        "kind": "DomainMigration",
        "metadata": {"name": "web-away"},
        "spec": {"domain": "web", "source": "host-a", "flags": ["live", "persistDest", "undefineSource"], **spec},
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def hosts(tmp_path: Path, world: Path) -> Path:
    """web (2 GiB) on host-a; in rack r1 host-b is too small, host-c has room, host-d is in
    maintenance; host-e, the emptiest, is in rack r2."""
    return write_hosts(
        tmp_path,
        [
            host("host-a", world, 16384, [{"name": "web", "memoryMiB": 2048}]),
            host("host-b", world, 1024, labels={"rack": "r1"}),
            host("host-c", world, 8192, labels={"rack": "r1"}),
            host("host-d", world, 65536, labels={"rack": "r1"}, maintenance=True),
            host("host-e", world, 65536, labels={"rack": "r2"}),
        ],
    )


def test_no_destination_lands_on_the_host_with_room_and_says_why(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    done = domig(
        "migrate", "-f", str(migration(tmp_path, destinationSelector={"rack": "r1"})),
        "--hosts", str(hosts(tmp_path, world)), "-o", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["phase"] == "Succeeded" and status["destination"] == "host-c"
    assert status["target"]["host"] == "host-c" and status["target"]["state"] == "running"
    placement = status["placement"]
    assert placement["destination"] == "host-c"
    reasons = {fit["host"]: fit["reason"] for fit in placement["hosts"]}
    assert reasons == {
        "host-a": "the source",
        "host-b": "not enough memory",
        "host-c": "8.0 GiB free after what is on its way in, 0 migration(s) in flight",
        "host-d": "in maintenance",
        "host-e": "not matching destinationSelector",
    }
    said = "Scheduled: host-c: 8.0 GiB free after what is on its way in, 0 migration(s) in flight (1/5 hosts fit)"
    assert said in done.stderr
    assert running_on(world, "host-c") == {"web": 2048} and running_on(world, "host-a") == {}


def test_without_a_selector_the_emptiest_of_the_fewest_in_flight_wins(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    done = domig("migrate", "-f", str(migration(tmp_path)), "--hosts", str(hosts(tmp_path, world)), "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["destination"] == "host-e"  # 64 GiB free; host-d has as much but is closed
    assert running_on(world, "host-e") == {"web": 2048}


def test_nothing_fits_exits_non_zero_with_the_per_host_counts(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    small = write_hosts(
        tmp_path,
        [
            host("host-a", world, 16384, [{"name": "web", "memoryMiB": 4096}]),
            host("host-b", world, 1024),
            host("host-c", world, 2048),
            host("host-d", world, 65536, maintenance=True),
        ],
    )
    done = domig("migrate", "-f", str(migration(tmp_path)), "--hosts", str(small), "-o", "json")
    assert done.returncode == 1
    status = json.loads(done.stdout)
    assert (status["phase"], status["reason"]) == ("Failed", "Unschedulable")
    assert status["message"] == "0/4 hosts fit: 2 not enough memory, 1 in maintenance, 1 the source; nothing moved"
    assert "destination" not in status["placement"] and "destination" not in status
    assert [fit["fits"] for fit in status["placement"]["hosts"]] == [False] * 4
    assert status.get("migrationStartTime") is None
    assert running_on(world, "host-a") == {"web": 4096}
    text = domig("migrate", "-f", str(migration(tmp_path)), "--hosts", str(small))
    assert text.returncode == 1 and "Failed (Unschedulable): 0/4 hosts fit: 2 not enough memory" in text.stderr
    assert "Traceback" not in text.stderr


def test_dry_run_without_a_destination_chooses_then_checks(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    done = domig(
        "migrate", "--dry-run", "-f", str(migration(tmp_path)), "--hosts", str(hosts(tmp_path, world)), "-o", "json"
    )
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert (status["phase"], status["reason"], status["destination"]) == ("Succeeded", "DryRun", "host-e")
    assert {c["name"] for c in status["preflight"]} >= {"HostsReachable", "Domain", "MemoryFits"}
    assert running_on(world, "host-a") == {"web": 2048}  # nothing moved


def test_a_domain_the_source_does_not_define_is_named(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    done = domig("migrate", "-f", str(migration(tmp_path, domain="nope")), "--hosts", str(hosts(tmp_path, world)))
    assert done.returncode == 1 and "Failed (DomainNotFound): nope is not defined on host-a" in done.stderr


def test_validate_takes_a_migration_without_destination(tmp_path: Path) -> None:
    world = tmp_path / "world.json"
    done = domig("validate", "-f", str(migration(tmp_path)), "--hosts", str(hosts(tmp_path, world)))
    assert done.returncode == 0 and "valid DomainMigration web-away" in done.stdout
    unknown = domig("validate", "-f", str(migration(tmp_path, source="host-z")), "--hosts", str(hosts(tmp_path, world)))
    assert unknown.returncode == 2 and "spec.source: no host named 'host-z'" in unknown.stderr
