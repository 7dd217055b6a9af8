"""`domig operator` as a process against the emulated API server, as the image's entry point runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from typing import IO

import pytest

from tests.kube.emulator import ApiServer
from tests.operator.conftest import FAST


class OperatorProcess:
    """`domig operator ARGS`, its output in a file that can be read while it runs."""

    def __init__(self, kube: ApiServer, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.log: IO[bytes] = tempfile.TemporaryFile()
        environment = {**os.environ, **FAST, **(env or {}), "KUBECONFIG": str(kube.kubeconfig)}
        command = [sys.executable, "-m", "controller.cli.main", "operator", *args]
        self.proc = subprocess.Popen(command, env=environment, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def exited(self, within: float = 60) -> int:
        return self.proc.wait(timeout=within)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=30)


@pytest.fixture
def processes() -> Iterator[list[OperatorProcess]]:
    """Every process a test starts into this list is stopped after it."""
    started: list[OperatorProcess] = []
    yield started
    for process in started:
        process.stop()
        process.log.close()
