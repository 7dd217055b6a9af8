"""`domig migrate` as a user runs it, against the two real daemons, with the libvirt examples."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.guest import idle_domain_xml
from tests.harness.libvirtd import LibvirtHosts

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]


def test_examples_name_the_harness_daemons(clean_libvirt_hosts: LibvirtHosts) -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "hosts-libvirt.yaml").read_text()))
    hosts = clean_libvirt_hosts
    assert [d["spec"]["uri"] for d in docs] == [hosts.a.uri, hosts.b.uri]
    assert [d["spec"]["migrationAddress"] for d in docs] == [h.spec.migration_address for h in hosts]


def test_domig_migrate_libvirt_example_succeeds(clean_libvirt_hosts: LibvirtHosts, use_kvm: bool) -> None:
    import libvirt

    spec = yaml.safe_load((EXAMPLES / "migration-libvirt.yaml").read_text())["spec"]
    name = spec["domain"]
    conn = clean_libvirt_hosts.a.open()
    try:
        conn.defineXML(idle_domain_xml(name, kvm=use_kvm)).create()
    finally:
        conn.close()
    done = subprocess.run(
        [
            sys.executable, "-m", "controller.cli.main", "migrate",
            "-f", str(EXAMPLES / "migration-libvirt.yaml"),
            "--hosts", str(EXAMPLES / "hosts-libvirt.yaml"),
            "-o", "json",
        ],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    status = json.loads(done.stdout)
    assert status["phase"] == "Succeeded" and status["reason"] == "Completed"
    assert status["target"]["hostname"] == "127.0.0.2" and status["target"]["state"] == "running"
    assert status["progress"]["percent"] == 100.0 and status["progress"]["dataTotalBytes"] > 0
    b = clean_libvirt_hosts.b.open()
    try:
        assert b.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        b.close()
    a = clean_libvirt_hosts.a.open()
    try:
        assert name not in {d.name() for d in a.listAllDomains(0)}
    finally:
        a.close()


def _domig_migrate(migration: Path) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable, "-m", "controller.cli.main", "migrate",
            "-f", str(migration), "--hosts", str(EXAMPLES / "hosts-libvirt.yaml"), "-o", "json",
        ],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    status: dict[str, Any] = json.loads(done.stdout)
    return status, time.monotonic() - started


def _where(hosts: LibvirtHosts, name: str) -> dict[str, tuple[str, bool, str] | None]:
    """Per host: the domain's (state, persistent, uuid), None where it is not defined."""
    import libvirt

    names = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_SHUTOFF: "shutoff"}
    found: dict[str, tuple[str, bool, str] | None] = {}
    for label, host in (("host-a", hosts.a), ("host-b", hosts.b)):
        conn = host.open()
        try:
            dom = conn.lookupByName(name)
            state = dom.state()[0]
            found[label] = (names.get(state, str(state)), bool(dom.isPersistent()), dom.UUIDString())
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            found[label] = None
        finally:
            conn.close()
    return found


def test_domig_migrate_there_and_back_without_undefine_source(
    clean_libvirt_hosts: LibvirtHosts, use_kvm: bool, tmp_path: Path
) -> None:
    """The maintenance round trip: A keeps its shut-off definition, and the way back runs on it."""
    example = yaml.safe_load((EXAMPLES / "migration-libvirt.yaml").read_text())
    name = example["spec"]["domain"]
    conn = clean_libvirt_hosts.a.open()
    try:
        uuid = conn.defineXML(idle_domain_xml(name, kvm=use_kvm)).UUIDString()
        conn.lookupByName(name).create()
    finally:
        conn.close()
    legs = []
    for leg, (source, destination) in enumerate([("host-a", "host-b"), ("host-b", "host-a")], start=1):
        doc = {**example, "metadata": {"name": f"{name}-leg-{leg}"}}
        flags = ["live", "persistDest"]
        doc["spec"] = {**example["spec"], "source": source, "destination": destination, "flags": flags}
        path = tmp_path / f"leg-{leg}.yaml"
        path.write_text(yaml.safe_dump(doc))
        status, seconds = _domig_migrate(path)
        assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), status["message"]
        assert status["source"]["uuid"] == status["target"]["uuid"] == uuid
        legs.append((status, seconds, _where(clean_libvirt_hosts, name)))
    (there, t1, after_there), (back, t2, after_back) = legs
    # persistDest defines it on B; A keeps its own definition, shut off, which the way back runs on.
    assert after_there == {"host-a": ("shutoff", True, uuid), "host-b": ("running", True, uuid)}
    assert there["target"]["hostname"] == "127.0.0.2" and there["source"]["state"] == "shutoff"
    assert after_back == {"host-a": ("running", True, uuid), "host-b": ("shutoff", True, uuid)}
    assert back["target"]["hostname"] == "127.0.0.3" and back["target"]["state"] == "running"
    print(f"\n[libvirt-cli] there and back: leg 1 {t1:.1f} s, leg 2 {t2:.1f} s, uuid {uuid}")
