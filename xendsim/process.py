"""Run a simulated xend host as a child process, for tests and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from types import TracebackType

READY_PREFIX = "XENDSIM READY "

# The directory holding this package, so the child imports the same copy as its parent, installed or not.
_SOURCE_ROOT = Path(__file__).resolve().parents[1]


class XendProcess:
    """
    async with XendProcess("--name", "hostB", "--domain", "name=web,memory=256") as proc:
        proc.url, proc.relocation_port, proc.info
    """

    def __init__(self, *args: str, python: str = sys.executable, ready_timeout: float = 20.0) -> None:
        self.args = list(args)
        self.python = python
        self.ready_timeout = ready_timeout
        self.info: dict[str, object] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self._require().pid

    @property
    def returncode(self) -> int | None:
        return self._require().returncode

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def relocation_port(self) -> int:
        relocation = self.info.get("relocation")
        if not isinstance(relocation, list):
            raise RuntimeError("the process has no relocation listener")
        return int(relocation[1])

    @property
    def control_url(self) -> str | None:
        value = self.info.get("control_url")
        return str(value) if value else None

    async def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SOURCE_ROOT), env.get("PYTHONPATH")]))
        self._proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "xendsim", *self.args,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )  # fmt: skip
        try:
            self.info = await asyncio.wait_for(self._read_ready(), self.ready_timeout)
        except BaseException:
            await self.stop()
            raise
        self._drain = asyncio.create_task(self._drain_stdout())

    async def _read_ready(self) -> dict[str, object]:
        stdout = self._require().stdout
        assert stdout is not None
        while True:
            line = await stdout.readline()
            if not line:
                raise RuntimeError(f"xendsim exited before it was ready (code {await self._require().wait()})")
            text = line.decode().strip()
            if text.startswith(READY_PREFIX):
                info = json.loads(text[len(READY_PREFIX) :])
                assert isinstance(info, dict)
                return info

    async def _drain_stdout(self) -> None:
        # A child blocked on a full stdout pipe would stop answering.
        stdout = self._require().stdout
        assert stdout is not None
        while await stdout.readline():
            pass

    async def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
        proc = self._require()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._drain is not None:
            await self._drain
        assert proc.returncode is not None
        return proc.returncode

    def _require(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise RuntimeError("the process was not started")
        return self._proc

    async def __aenter__(self) -> XendProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
