"""
The emulated API server: its lifecycle in a background thread, kubeconfigs, and the user-side access.

The request serving, the state, discovery, and watching are in the mixins of :class:`ApiServer`.
"""

import asyncio
import copy
import functools
import os
import pathlib
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Self

import attrs
import kmock
import kopf
import yaml

from .access import AccessReviews
from .admitting import AdmittingMixin
from .discovery import DiscoveryMixin
from .documents import PEERING_CRDS, CrdSource, _load_docs
from .errors import AdmissionError, ApiError, _status
from .faults import Faults, InjectedError, Tripwire
from .handler import RequestHandlerMixin
from .patching import merge_patch
from .reading import StateReadingMixin
from .resources import _NS_GP, ResourceDef, _builtin_defs
from .selectors import parse_label_selector
from .serving import ServingMixin
from .typedefs import Body
from .watching import WatchingMixin, _WatchEvent
from .writing import StateWritingMixin


@attrs.mutable
class _LoopbackServer(kmock.Server):
    """
    kmock's TCP server, minus the DNS interceptor and the client session.

    REPLACED PART (why): ``kmock.Server.__aenter__`` installs a process-wide monkey-patch of
    ``aiohttp.TCPConnector._resolve_host`` and insists on LIFO un-patching; with several
    emulators (module- & test-scoped) in different threads/loops, that chain gets inconsistent
    and fails at exit. We connect by IP anyway, so neither the interceptor nor the client is needed.
    """

    async def __aenter__(self) -> Self:
        self._managed_server = self._server_cls(self.handler, host=self._host, port=self._port)
        await self._managed_server.start_server()
        self.handler.servers.append(self)
        return self

    async def __aexit__(self, *_: Any) -> None:
        self.handler.servers.remove(self)
        assert self._managed_server is not None
        await self._managed_server.close()
        self._managed_server = None


@attrs.define(kw_only=True, eq=False)
class ApiServer(
    AdmittingMixin,
    DiscoveryMixin,
    RequestHandlerMixin,
    ServingMixin,
    StateReadingMixin,
    StateWritingMixin,
    WatchingMixin,
    kmock.KubernetesEmulator,
):
    """
    A stateful emulator of the Kubernetes API that kopf (and kubectl-like clients) can work with.

    It runs in a background thread with its own event loop, so that it is usable from sync
    and async tests, from any event loop, and from subprocesses (via :attr:`kubeconfig`).
    All direct accessors (:meth:`read`, :meth:`create`, :meth:`apply`, ...) are thread-safe.

    The writing accessors go through admission webhooks as API requests do. The sync ones block
    the calling thread meanwhile: if the webhook server runs in the caller's event loop (e.g. kopf's,
    in a ``KopfOperator`` without ``thread=True``), use their async twins (:meth:`acreate`, ...).
    """

    crds: Sequence[CrdSource] = ()  # CRD files/YAML texts/dicts to register at startup
    peering: bool = True  # register kopf's peering CRDs (kopfpeerings & clusterkopfpeerings)
    namespaces: Sequence[str] = ("default", "kube-system")  # pre-created namespaces
    strict_namespaces: bool = True  # 404 on objects in non-existent namespaces (as K8s does)
    watch_cache_size: int = 10_000  # how many events are kept for ?resourceVersion=N replays (else 410)
    host: str = "127.0.0.1"
    access: AccessReviews = attrs.field(factory=AccessReviews)  # SelfSubjectAccessReviews; .deny(...) in tests
    faults: Faults | None = None  # random faults, opt-in (see .faults); may be set or cleared while running
    tripwires: list[Tripwire] = attrs.field(factory=list)  # one-shot actions on cue (see .faults)

    _defs: dict[tuple[str, str], ResourceDef] = attrs.field(factory=dict, init=False)
    _state: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _log: list[_WatchEvent] = attrs.field(factory=list, init=False)
    _log_rvs: list[int] = attrs.field(factory=list, init=False)
    _log_floor: int = attrs.field(default=0, init=False)
    # kmock's object store, by resource: listing one resource (the webhook configurations, at every
    # write) must not walk every object of every resource (10,000 migrations and their Events).
    _by_resource: dict[Any, dict[tuple[str | None, str], Any]] = attrs.field(factory=dict, init=False)
    _wakeups: set[asyncio.Event] = attrs.field(factory=set, init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)
    _stopping: asyncio.Event | None = attrs.field(default=None, init=False)
    _startup_error: BaseException | None = attrs.field(default=None, init=False)
    _tmpdir: tempfile.TemporaryDirectory[str] | None = attrs.field(default=None, init=False)
    _port: int | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        # NB: skip KubernetesEmulator.__attrs_post_init__: its LIST/WATCH/FETCH/CREATE/UPDATE/DELETE
        # fallbacks mutate the state naively (before any reaction) and cannot be hooked partially.
        # We keep the scaffold's discovery & 404 fallbacks, and add our one realistic fallback.
        kmock.KubernetesScaffold.__attrs_post_init__(self)
        self.fallback[self.access.matches] << self.access.serve  # before the resources: no store behind it
        self.fallback[self._is_resource_request] << self._serve_resource
        with self._state:
            for rdef in _builtin_defs():
                self._register(rdef)
            for ns in self.namespaces:
                self._create(self._defs[_NS_GP], None, {"metadata": {"name": ns}})
        # NB: not under the lock: the accessors take it themselves, maybe in another thread.
        for source in ([PEERING_CRDS] if self.peering else []) + list(self.crds):
            for doc in _load_docs(source):
                self.apply(doc)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("The API server is already started.")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="kube-api", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30) or self._startup_error is not None:
            raise RuntimeError("The emulated API server failed to start.") from self._startup_error
        self._tmpdir = tempfile.TemporaryDirectory(prefix="kube-api-")
        self.write_kubeconfig(pathlib.Path(self._tmpdir.name) / "kubeconfig")
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=30)
        self._thread = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def _thread_main(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._amain(ready))
        except BaseException as e:  # pragma: no cover
            self._startup_error = e
            ready.set()

    async def _amain(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with self, _LoopbackServer(self, host=self.host) as server:
            self._port = server.port
            ready.set()
            await self._stopping.wait()
            self._wake_watchers()  # let all the watch-streams exit before the server closes
            await asyncio.sleep(0)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("The API server is not started.")
        return self._port

    @property
    def server_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def kubeconfig(self) -> pathlib.Path:
        """A kubeconfig file pointing to this server (exists while the server runs)."""
        if self._tmpdir is None:
            raise RuntimeError("The API server is not started.")
        return pathlib.Path(self._tmpdir.name) / "kubeconfig"

    def write_kubeconfig(self, path: str | os.PathLike[str], namespace: str = "default") -> pathlib.Path:
        path = pathlib.Path(path)
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "preferences": {},
                    "clusters": [{"name": "emulator", "cluster": {"server": self.server_url}}],
                    "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
                    "contexts": [
                        {
                            "name": "emulator",
                            "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
                        }
                    ],
                    "current-context": "emulator",
                }
            )
        )
        return path

    def connection_info(self, *, priority: int = 1000) -> kopf.ConnectionInfo:
        """Credentials for kopf's ``@kopf.on.login`` handlers."""
        return kopf.ConnectionInfo(
            server=self.server_url,
            insecure=True,
            token="emulator-token",
            default_namespace="default",
            priority=priority,
        )

    # -- assertion helpers -----------------------------------------------------------------------

    @property
    def server_errors(self) -> list[Exception]:
        """Unexpected errors (bugs of the emulator or of user reactions), excluding K8s-like 4xx, admission
        and injected faults."""
        errors = self._errors[-1] if self._errors else []
        return [
            e
            for e in errors
            if not isinstance(e, ApiError) or (e.status >= 500 and not isinstance(e, AdmissionError | InjectedError))
        ]

    def log(self) -> list[kmock.Request]:
        """A snapshot of all requests served so far (kmock's request objects)."""
        return list(self._requests)

    def compact(self) -> None:
        """Forget the watch history, as etcd compaction does: older resourceVersions get 410 Gone."""
        with self._state:
            self._log.clear()
            self._log_rvs.clear()
            self._log_floor = self._rv

    # -- direct (user-side) access, thread-safe ------------------------------------------------

    def find_resource(self, spec: str) -> ResourceDef:
        """By plural, ``plural.group``, ``group/version/plural``, ``v1/plural``, kind, or a short name."""
        with self._state:
            rdefs = list(self._defs.values())
        for rdef in rdefs:
            names = {
                rdef.plural,
                rdef.kind,
                rdef.kind.lower(),
                rdef.singular,
                *rdef.shortnames,
                rdef.group_resource,
                *(f"{rdef.api_version(v)}/{rdef.plural}" for v in rdef.versions),
            }
            if spec in names:
                return rdef
        raise LookupError(f"No such resource: {spec!r}")

    def _find_by_kind(self, api_version: str, kind: str) -> tuple[ResourceDef, str]:
        group, _, version = api_version.rpartition("/")
        with self._state:
            for rdef in self._defs.values():
                if rdef.group == group and rdef.kind == kind and version in rdef.versions:
                    return rdef, version
        raise _status(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"')

    def read(self, resource: str, name: str, namespace: str | None = None) -> Body | None:
        """The current state of an object (a deep copy), or None if it does not exist."""
        rdef = self.find_resource(resource)
        with self._state:
            obj = self._get(rdef, namespace if rdef.namespaced else None, name)
            return None if obj is None else self._output(rdef, rdef.storage_version, obj)

    def list_objects(self, resource: str, namespace: str | None = None, *, label_selector: str = "") -> list[Body]:
        rdef = self.find_resource(resource)
        predicate = parse_label_selector(label_selector) if label_selector else (lambda _: True)
        with self._state:
            return [
                self._output(rdef, rdef.storage_version, obj) for obj in self._iter(rdef, namespace) if predicate(obj)
            ]

    def create(self, body: Mapping[str, Any], namespace: str | None = None) -> Body:
        """Create an object as a user would (with validation & admission); raises ApiError on refusals."""
        return self._run_sync(self.acreate(body, namespace))

    async def acreate(self, body: Mapping[str, Any], namespace: str | None = None) -> Body:
        rdef, version = self._find_by_kind(body.get("apiVersion", ""), body.get("kind", ""))
        ns = (namespace or (body.get("metadata") or {}).get("namespace") or "default") if rdef.namespaced else None
        data = copy.deepcopy(dict(body))
        obj, _ = await self._write(lambda: self._create_candidate(rdef, ns, copy.deepcopy(data), version=version))
        return obj

    def apply(self, body: Mapping[str, Any], namespace: str | None = None) -> Body:
        """Like ``kubectl apply``: create if absent, else merge-patch the given fields."""
        return self._run_sync(self.aapply(body, namespace))

    async def aapply(self, body: Mapping[str, Any], namespace: str | None = None) -> Body:
        rdef, version = self._find_by_kind(body.get("apiVersion", ""), body.get("kind", ""))
        meta = body.get("metadata") or {}
        ns = (namespace or meta.get("namespace") or "default") if rdef.namespaced else None
        with self._state:
            exists = bool(meta.get("name")) and self._get(rdef, ns, meta["name"]) is not None
        if not exists:
            return await self.acreate(body, ns)
        patch = {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
        obj, _ = await self._write(
            functools.partial(
                self._update_candidate, rdef, version, ns, meta["name"], functools.partial(merge_patch, patch=patch)
            )
        )
        if rdef.has_status(version) and "status" in body:
            obj, _ = await self._write(
                functools.partial(
                    self._update_candidate,
                    rdef,
                    version,
                    ns,
                    meta["name"],
                    functools.partial(merge_patch, patch={"status": body["status"]}),
                    subresource="status",
                )
            )
        return obj

    def load_yaml(self, source: CrdSource) -> list[Body]:
        """Apply all documents of a YAML file or text (CRDs first-class: they register resources)."""
        return [self.apply(doc) for doc in _load_docs(source)]

    def patch_object(
        self,
        resource: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        patch_type: Literal["merge", "json"] = "merge",
    ) -> Body:
        return self._run_sync(
            self.apatch_object(resource, name, patch, namespace, subresource=subresource, patch_type=patch_type)
        )

    async def apatch_object(
        self,
        resource: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        patch_type: Literal["merge", "json"] = "merge",
    ) -> Body:
        rdef = self.find_resource(resource)
        fn = functools.partial(merge_patch if patch_type == "merge" else self._json_patch_or_422, patch=patch)
        ns = namespace if rdef.namespaced else None
        obj, _ = await self._write(
            functools.partial(self._update_candidate, rdef, rdef.storage_version, ns, name, fn, subresource=subresource)
        )
        return obj

    def delete_object(self, resource: str, name: str, namespace: str | None = None) -> Body:
        return self._run_sync(self.adelete_object(resource, name, namespace))

    async def adelete_object(self, resource: str, name: str, namespace: str | None = None) -> Body:
        rdef = self.find_resource(resource)
        ns = namespace if rdef.namespaced else None
        obj, _ = await self._write(functools.partial(self._delete_candidate, rdef, ns, name))
        return obj

    async def wait_for(
        self,
        resource: str,
        name: str,
        namespace: str | None = None,
        predicate: Callable[[Body | None], bool] = lambda obj: obj is not None,
        *,
        within: float = 10.0,
        interval: float = 0.02,
    ) -> Body | None:
        """Poll an object until the predicate is true (the object is None if absent); else fail."""
        deadline = time.monotonic() + within
        while True:
            obj = self.read(resource, name, namespace)
            if predicate(obj):
                return obj
            if time.monotonic() > deadline:
                raise TimeoutError(f"{resource}/{name} did not satisfy the condition in {within}s; last: {obj!r}")
            await asyncio.sleep(interval)
