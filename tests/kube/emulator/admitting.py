"""
Admitting writes: validating webhooks between the candidate and the commit of every write.

kube-apiserver calls validating webhooks after mutation, pruning, defaulting and validation, right before
storage. Here the candidate is computed under the state lock, the lock is released while the webhooks are
called (a webhook may read the API meanwhile: the emulator keeps serving), then the lock is re-taken and the
candidate is committed -- unless the object has changed in between: then the write is recomputed from the
new state and admitted again, as kube's GuaranteedUpdate retries do.
"""

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

import attrs

from .admission import Attributes, Hook, dispatch, matching_hooks
from .errors import AdmissionError
from .resources import _NS_GP
from .typedefs import Body
from .webhookconfigs import _WEBHOOK_CONFIG_GPS, VWC_GP
from .writing import _Write

T = TypeVar("T")

_ATTEMPTS = 5  # how often a write is recomputed when the object changes during admission
_OPTIONS_KINDS = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}


class AdmittingMixin:
    """Mixed into :class:`.server.ApiServer`, which holds the state used here (``_state``, ``_defs``, ...)."""

    __slots__ = ()

    async def _write(self, plan: Callable[[], _Write]) -> tuple[Body, list[str]]:
        """
        Compute a write with ``plan`` (called under the lock, maybe several times), admit it, commit it.

        Returns the object as seen in the request's version, and the warnings for the client.
        """
        for _ in range(_ATTEMPTS):
            with self._state:
                w = plan()
                hooks, attributes = self._admission(w)
                if not hooks or attributes is None:
                    return self._output(w.rdef, w.version, self._commit_write(w)), w.warnings
            try:
                warnings = await dispatch(hooks, attributes)
            except AdmissionError as e:
                raise attrs.evolve(e, warnings=(*w.warnings, *e.warnings)) from None
            with self._state:
                if w.op == "CREATE" or self._unchanged(w):  # a creation re-checks existence on commit
                    return self._output(w.rdef, w.version, self._commit_write(w)), [*w.warnings, *warnings]
        raise self._conflict(w.rdef, w.name)

    def _unchanged(self, w: _Write) -> bool:
        current = self._get(w.rdef, w.namespace, w.name)
        if current is None:
            raise self._not_found(w.rdef, w.name)
        return str(current["metadata"]["resourceVersion"]) == w.old_rv

    def _admission(self, w: _Write) -> tuple[list[Hook], Attributes | None]:
        """The webhooks to call for a write (none for the webhook configurations themselves, as in kube)."""
        vwc = self._defs.get(VWC_GP)
        if not w.admitted or vwc is None or (w.rdef.group, w.rdef.plural) in _WEBHOOK_CONFIG_GPS:
            return [], None
        configs = list(self._iter(vwc, None))
        if not configs:
            return [], None  # the usual case: no copies of the objects are made for nothing
        attributes = self._attributes(w)
        hooks = matching_hooks(configs, attributes, self._namespace_labels(w, attributes))
        return [self._reachability(hook) for hook in hooks], attributes

    def _attributes(self, w: _Write) -> Attributes:
        is_namespace = (w.rdef.group, w.rdef.plural) == _NS_GP
        return Attributes(
            operation=w.op,
            group=w.rdef.group,
            version=w.version,
            resource=w.rdef.plural,
            kind=w.rdef.kind,
            subresource=w.subresource or "",
            # kube gives a namespace's own name as the namespace of requests for namespaces (since 1.20).
            namespace=w.request_name if is_namespace else (w.namespace or ""),
            name=w.request_name,
            obj=None if w.op == "DELETE" else self._output(w.rdef, w.version, w.new),
            old=None if w.old is None else self._output(w.rdef, w.version, w.old),
            dry_run=w.dry_run,
            options={"apiVersion": "meta.k8s.io/v1", "kind": _OPTIONS_KINDS[w.op], **w.options},
            namespaced=w.rdef.namespaced,
        )

    def _namespace_labels(self, w: _Write, a: Attributes) -> Mapping[str, str] | None:
        # A namespace being created or updated is matched by its new labels (it is not stored yet).
        if (w.rdef.group, w.rdef.plural) == _NS_GP and w.op != "DELETE" and not w.subresource:
            return dict((w.new.get("metadata") or {}).get("labels") or {})
        if not a.namespace:
            return None
        namespace = self._get(self._defs[_NS_GP], None, a.namespace)
        return None if namespace is None else dict(namespace["metadata"].get("labels") or {})

    def _reachability(self, hook: Hook) -> Hook:
        # There are no pods behind services here; kube's resolver says so in its own words.
        service = (hook.spec.get("clientConfig") or {}).get("service")
        if not service:
            return hook
        name = str(service.get("name"))
        exists = self._get(self._defs[("", "services")], service.get("namespace"), name) is not None
        why = f'no endpoints available for service "{name}"' if exists else f'service "{name}" not found'
        return dataclasses.replace(hook, unreachable=why)

    def _run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a write from sync code (the user-side accessors): on the emulator's loop if it runs."""
        loop = self._loop
        if loop is not None and loop.is_running() and threading.current_thread() is not self._thread:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()
        # Not started yet, or called from the emulator's own loop (which must not block): a private loop.
        # NB: not asyncio.run() in this thread: it would reset the caller's current event loop on exit.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kube-api-sync") as pool:
            return pool.submit(asyncio.run, coro).result()
