"""`domig operator` as a process against the emulator: what it serves on /metrics, what it prints."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.kube.emulator import ApiServer
from tests.operator.conftest import FAST


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Scrape:
    text: str
    samples: list[Sample]

    def value(self, metric: str, /, **labels: str) -> float | None:
        found = [s.value for s in self.samples if s.name == metric and s.labels == labels]
        assert len(found) <= 1, (metric, labels, found)
        return found[0] if found else None

    def series(self, metric: str) -> list[dict[str, str]]:
        return [s.labels for s in self.samples if s.name == metric]


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    metrics_port: int
    logs: Path
    stdout: str = ""  # what it printed, once it has stopped
    stderr: str = ""

    def scrape_now(self) -> Scrape:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        families = text_string_to_metric_families(text)
        samples = [Sample(s.name, dict(s.labels), s.value) for family in families for s in family.samples]
        return Scrape(text, samples)

    async def scrape(self) -> Scrape:
        """Off the event loop: the emulator and the test hypervisors run on it."""
        async with asyncio.timeout(20):
            while True:
                try:
                    return await asyncio.to_thread(self.scrape_now)
                except (ConnectionError, urllib.error.URLError):
                    assert self.proc.poll() is None, "the operator exited"
                    await asyncio.sleep(0.1)

    def output(self) -> str:
        """What it printed so far, for the message of a failing assertion."""
        return "".join((self.logs / n).read_text(errors="replace") for n in ("stdout", "stderr"))


@contextlib.contextmanager
def domig_operator(kube: ApiServer, *args: str) -> Iterator[OperatorProcess]:
    """Run it; on exit stop it (SIGTERM, as Kubernetes does) and keep what it printed."""
    env = {**os.environ, **FAST, "KUBECONFIG": str(kube.kubeconfig)}
    port = free_port()
    command = [sys.executable, "-m", "controller.cli.main", "operator", "--standalone", "--metrics-port", str(port)]
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        # Files of their own, read through other handles: reading never moves where the child writes.
        with (logs / "stdout").open("ab") as out, (logs / "stderr").open("ab") as err:
            proc = subprocess.Popen([*command, *args], env=env, stdout=out, stderr=err)
        running = OperatorProcess(proc, port, logs)
        try:
            yield running
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            running.stdout = (logs / "stdout").read_text(errors="replace")
            running.stderr = (logs / "stderr").read_text(errors="replace")
