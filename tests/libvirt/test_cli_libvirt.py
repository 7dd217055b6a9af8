"""`domig migrate` as a user runs it, against the two real daemons, with the libvirt examples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
