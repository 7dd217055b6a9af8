"""kill -9 of the controller mid-migration: managed (the client drives libvirt's protocol) versus
peer-to-peer (the source daemon drives it), then a fresh engine resuming from the saved status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.api import load_migration
from controller.api.enums import Phase
from controller.engine import Controls
from tests.harness.libvirtd import LibvirtHosts
from tests.libvirt.lab import A, B, Lab, report

ROOT = Path(__file__).resolve().parents[2]
WATCH_SECONDS = 8.0  # how long we watch the source's job after the kill

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]


@pytest.fixture
def lab(clean_libvirt_hosts: LibvirtHosts, use_kvm: bool) -> Lab:
    return Lab(clean_libvirt_hosts, use_kvm)


def _hosts_yaml(lab: Lab, p2p: bool | None) -> str:
    docs = []
    for name, host in ((A, lab.hosts.a), (B, lab.hosts.b)):
        spec: dict[str, Any] = {"driver": "libvirt", "uri": host.uri, "migrationAddress": host.spec.migration_address}
        if p2p is not None:
            spec["peerToPeer"] = p2p
        docs.append(
            {"apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": name}, "spec": spec}
        )
    return yaml.safe_dump_all(docs)


def _wait_for(path: Path, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            status: dict[str, Any] = json.loads(path.read_text())
            if status.get("phase") == "Migrating" and status.get("progress", {}).get("iteration", 0) >= 1:
                return status
        time.sleep(0.1)
    raise AssertionError(f"the child never reported a running migration: {path.read_text() if path.exists() else ''}")


def _job_lifetime(lab: Lab, name: str, limit: float) -> float | None:
    """Seconds until the source's migration job ends, None if it still runs after `limit`."""
    import libvirt

    conn = lab.hosts.a.open()
    try:
        dom = conn.lookupByName(name)
        started = time.monotonic()
        while time.monotonic() - started < limit:
            try:
                if dom.jobStats(0).get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
                    return time.monotonic() - started
            except libvirt.libvirtError:
                return time.monotonic() - started
            time.sleep(0.1)
        return None
    finally:
        conn.close()


@pytest.mark.parametrize("p2p", [False, True], ids=["managed", "peer-to-peer"])
async def test_controller_killed_mid_migration(lab: Lab, tmp_path: Path, p2p: bool | None) -> None:
    name = lab.dirtying_guest("dirty-crash")
    spec = {
        "domain": name,
        "source": A,
        "destination": B,
        "flags": ["live", "persistDest", "undefineSource"],
        "params": {"bandwidth": 10},
        "timeouts": {"progress": 600},
    }
    (tmp_path / "m.yaml").write_text(
        yaml.safe_dump({"kind": "DomainMigration", "metadata": {"name": "crash"}, "spec": spec})
    )
    (tmp_path / "hosts.yaml").write_text(_hosts_yaml(lab, p2p))
    out = tmp_path / "status.json"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.libvirt.engine_child",
            str(tmp_path / "m.yaml"),
            str(tmp_path / "hosts.yaml"),
            str(out),
        ],
        cwd=ROOT,
    )
    try:
        saved = _wait_for(out, 60)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    lifetime = _job_lifetime(lab, name, WATCH_SECONDS)

    # A fresh controller picks the migration up from the status the dead one saved.
    migration = load_migration({"metadata": {"name": "crash", "generation": 1}, "spec": spec, "status": saved})
    controls = Controls()
    controls.request_force_complete()  # if the job still runs, pause the guest so it converges
    status, _, seconds = await lab.run(migration, controls=controls, p2p=p2p)
    where = lab.running_on(name)
    report(
        "controller killed",
        mode={False: "managed", True: "peer-to-peer", None: "default"}[p2p],
        job_ended_after_s=lifetime,
        resumed=f"{status.phase.value}/{status.reason}",
        resume_s=seconds,
        runs_on=where,
        message=status.message,
    )
    if p2p is not False:  # the default is peer-to-peer
        assert lifetime is None, "the source daemon should carry a peer-to-peer migration on"
        assert status.phase is Phase.Succeeded, status.message
        assert where == [B] and lab.states(name)[A] is None
    else:
        assert lifetime is not None, "libvirt should abort a managed migration whose client died"
        assert status.phase in (Phase.Failed, Phase.Aborted), status.message
        assert where == [A] and lab.states(name)[B] is None
