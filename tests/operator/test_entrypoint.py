"""`domig operator`, the image's entry point, as a process against a kubeconfig."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import urllib.request

import pytest

from tests.kube.emulator import ApiServer
from tests.operator.conftest import FAST, host, migration, until, wait_phase, where

FINISHED = 'domig_migrations_finished_total{driver="test",phase="Succeeded",reason="Completed"} 1.0'


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()  # type: ignore[no-any-return]


@pytest.mark.slow
async def test_domig_operator_runs_a_migration(kube: ApiServer, world: str) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 1024}]))
    kube.apply(host("host-b", world))
    env = {**os.environ, **FAST, "KUBECONFIG": str(kube.kubeconfig)}
    # Port 0 in the liveness URL would not mean "any": kopf reads it as no port, i.e. 80.
    with socket.socket() as one, socket.socket() as other:
        one.bind(("127.0.0.1", 0))
        other.bind(("127.0.0.1", 0))
        liveness_port, metrics_port = one.getsockname()[1], other.getsockname()[1]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller.cli.main",
                "operator",
                "--standalone",
                "--liveness",
                f"http://127.0.0.1:{liveness_port}/healthz",
                "--metrics-port",
                str(metrics_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            kube.apply(migration("m"))
            try:
                done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=60)
            except TimeoutError:
                log.seek(0)
                pytest.fail(f"no end in 60 s; the operator said:\n{log.read().decode(errors='replace')[-5000:]}")
            # The counter goes up just after the status patch that the wait above saw.
            await until(lambda: FINISHED in scrape(metrics_port), within=10)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        log.seek(0)
        output = log.read().decode(errors="replace")
    assert done["status"]["phase"] == "Succeeded", output[-3000:]
    assert where(world) == {"host-a": "shutoff", "host-b": "running"}
    assert proc.returncode == 0, output[-3000:]
