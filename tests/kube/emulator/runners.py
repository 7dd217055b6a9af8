"""Running kopf against the emulator: in-process (task or thread) and as a subprocess."""

import asyncio
import contextlib
import importlib
import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import types
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self, TypeAlias, cast

import kopf

from .server import ApiServer

HandlersSource: TypeAlias = (
    str | os.PathLike[str] | types.ModuleType | kopf.OperatorRegistry | Callable[[kopf.OperatorRegistry], None]
)


def fast_settings(settings: kopf.OperatorSettings | None = None) -> kopf.OperatorSettings:
    """
    Settings for quick tests & quick shutdowns of kopf (also applied by the runners below).

    * ``process.ultimate_exiting_timeout=None``: otherwise, if the operator exits NOT via
      the stop-flag (e.g. a crash), kopf SIGKILLs the thread (= the whole pytest process) later.
    * ``queueing.exit_timeout``: how long workers get at exit before cancellation (default 2 s).
    * ``networking.error_backoffs``: retries of 5xx/429 errors (default 1, 1, 2, 3, 5, ... s).
    * ``watching.reconnect_backoff``/``connect_timeout``: re-watching after a disconnect.
    * ``peering.stealth``: no keep-alive log noise.
    """
    s = settings if settings is not None else kopf.OperatorSettings()
    s.process.ultimate_exiting_timeout = None
    s.queueing.exit_timeout = 0.5
    s.networking.error_backoffs = [0.1, 0.2, 0.5]
    s.networking.connect_timeout = 2
    s.networking.request_timeout = 30
    s.watching.connect_timeout = 2
    s.watching.reconnect_backoff = 0.05
    s.peering.stealth = True
    return s


def load_handlers(source: HandlersSource) -> kopf.OperatorRegistry:
    """
    Put the handlers into a FRESH registry (so that operators and tests do not leak handlers).

    ``source`` is a registry (used as is), a callable that registers handlers into a given
    registry, a path to a ``.py`` file (executed as a new module), a module object or a dotted
    module name (imported or re-imported with the fresh registry being the default one).
    """
    if isinstance(source, kopf.OperatorRegistry):
        return source
    registry = kopf.OperatorRegistry()
    previous = kopf.get_default_registry()
    kopf.set_default_registry(registry)
    try:
        if isinstance(source, types.ModuleType):
            importlib.reload(source)
        elif isinstance(source, os.PathLike) or (isinstance(source, str) and source.endswith(".py")):
            path = pathlib.Path(source)
            modname = f"_kopf_handlers_{path.stem}_{uuid.uuid4().hex[:8]}"
            spec = importlib.util.spec_from_file_location(modname, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        elif isinstance(source, str):
            if source in sys.modules:
                importlib.reload(sys.modules[source])
            else:
                importlib.import_module(source)
        else:
            source(registry)
    finally:
        kopf.set_default_registry(previous)
    return registry


class KopfOperator:
    """
    A kopf operator running in-process against the emulator, with a stop-flag for quick exits.

    ``thread=False`` (default): ``kopf.operator()`` runs as a task in the current event loop.
    ``thread=True``: it runs in a separate thread with its own event loop -- needed when several
    operators run at once and one stops before the others: on exit, kopf waits for & cancels ALL
    tasks that appeared in ITS loop after its start (incl. other operators' tasks).

    Usage::

        async with KopfOperator(api, 'path/to/handlers.py', memo=kopf.Memo(x=1)) as op:
            ...  # the operator runs; op.registry, op.settings are available
    """

    def __init__(
        self,
        api: ApiServer,
        handlers: HandlersSource,
        *,
        peering: str | None = None,  # None means --standalone
        priority: int = 0,
        identity: str | None = None,
        namespaces: Sequence[str] | None = None,  # None means cluster-wide
        settings: kopf.OperatorSettings | None = None,
        memo: Any = None,
        thread: bool = False,
        startup_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        stop_grace: float = 1.0,
    ) -> None:
        super().__init__()
        self.api = api
        self.registry = load_handlers(handlers)
        self.settings = fast_settings(settings)
        self.peering = peering
        self.priority = priority
        self.identity = identity
        self.namespaces = namespaces
        self.memo = memo
        self.thread = thread
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.stop_grace = stop_grace
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._astop: asyncio.Event | None = None
        self._tstop = threading.Event()
        self._tready = threading.Event()

        def login(**_: Any) -> kopf.ConnectionInfo:
            return api.connection_info()

        kopf.on.login(registry=self.registry, id="emulator-login")(login)

    def _operator_coro(self, stop_flag: Any, ready_flag: Any) -> Any:
        scope: dict[str, Any] = (
            {"clusterwide": True} if self.namespaces is None else {"namespaces": list(self.namespaces)}
        )
        return kopf.operator(
            registry=self.registry,
            settings=self.settings,
            memo=self.memo,
            standalone=self.peering is None,
            peering_name=self.peering,
            priority=self.priority,
            identity=cast(Any, self.identity),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            **scope,
        )

    async def start(self) -> Self:
        if self.thread:
            self._thread = threading.Thread(target=self._thread_main, name=f"kopf-{self.identity}", daemon=True)
            self._thread.start()
            ok = await asyncio.to_thread(self._tready.wait, self.startup_timeout)
            if not ok or self._thread_error is not None:
                raise RuntimeError("The operator failed to start.") from self._thread_error
        else:
            self._astop = asyncio.Event()
            ready = asyncio.Event()
            self._task = asyncio.create_task(self._operator_coro(self._astop, ready), name="kopf-operator")
            waiter = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait(
                {self._task, waiter}, timeout=self.startup_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            if self._task in done:
                await self._task  # re-raise
                raise RuntimeError("The operator has exited prematurely.")
            if not done:
                raise RuntimeError("The operator failed to start in time.")
        return self

    def _thread_main(self) -> None:
        async def main() -> None:
            self._thread_loop = asyncio.get_running_loop()
            self._thread_task = asyncio.current_task()
            await self._operator_coro(self._tstop, self._tready)

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass  # cancelled by stop() after the grace period: a normal exit for us
        except BaseException as e:
            self._thread_error = e
            self._tready.set()

    async def stop(self) -> None:
        """
        Set the stop-flag; if kopf is still exiting after ``stop_grace`` seconds, cancel it.

        Why: after its root tasks exit, kopf waits a HARD-CODED 5 s for "hung" tasks, e.g.
        a timer's or a handler's API request caught by the closing session and waiting for
        re-authentication. On cancellation, kopf cancels such tasks immediately instead.
        """
        if self._thread is not None:
            thread, self._thread = self._thread, None
            self._tstop.set()
            await asyncio.to_thread(thread.join, self.stop_grace)
            if thread.is_alive() and self._thread_loop is not None and self._thread_task is not None:
                self._thread_loop.call_soon_threadsafe(self._thread_task.cancel)
                await asyncio.to_thread(thread.join, self.stop_timeout)
            if thread.is_alive():
                raise RuntimeError("The operator thread did not stop in time.")
            if self._thread_error is not None:
                raise self._thread_error
        if self._task is not None and self._astop is not None:
            task, self._task = self._task, None
            self._astop.set()
            done, _ = await asyncio.wait({task}, timeout=self.stop_grace)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=self.stop_timeout)
            elif not task.cancelled():
                task.result()  # re-raise the operator's errors, if any

    @property
    def running(self) -> bool:
        return (self._task is not None and not self._task.done()) or (
            self._thread is not None and self._thread.is_alive()
        )

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_: Any) -> None:
        await self.stop()


class KopfSubprocess:
    """
    ``kopf run`` in a separate process with ``KUBECONFIG`` pointing to the emulator (for kill -9 tests).

    The output goes to a log file (see :attr:`output`). Use as a (sync) context manager or
    ``start()``/``kill()``/``terminate()``/``wait()``.
    """

    def __init__(
        self,
        api: ApiServer,
        handlers: str | os.PathLike[str],
        *,
        peering: str | None = None,
        priority: int = 0,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        self.api = api
        self.args = [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--all-namespaces",
            *(["--verbose"] if verbose else []),
            *(["--standalone"] if peering is None else [f"--peering={peering}"]),
            f"--priority={priority}",
            *extra_args,
            str(handlers),
        ]
        self.env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), **(env or {})}
        self._logfile = tempfile.NamedTemporaryFile(prefix="kopf-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=self._logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        return self

    @property
    def output(self) -> str:
        return pathlib.Path(self._logfile.name).read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def terminate(self) -> None:
        self.kill(signal.SIGTERM)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait()
        self._logfile.close()
        with contextlib.suppress(OSError):
            os.unlink(self._logfile.name)
