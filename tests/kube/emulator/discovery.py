"""The discovery endpoints: kmock's, fed with the registered resources and with K8s-like version preferences."""

import contextlib
from typing import Any

import kmock

from .resources import _VERBS, ResourceDef, _version_priority
from .typedefs import Body


class DiscoveryMixin:
    """Mixed into :class:`.server.ApiServer`, which holds the state used here (``_state``, ``_defs``, ...)."""

    __slots__ = ()

    def _register(self, rdef: ResourceDef) -> None:
        with self._state:
            old = self._defs.get((rdef.group, rdef.plural))
            if old is not None:
                self._unregister_discovery(old)
            self._defs[rdef.group, rdef.plural] = rdef
            for v in rdef.served_versions():
                self._resources[kmock.resource(rdef.group, v, rdef.plural)] = kmock.ResourceInfo(
                    kind=rdef.kind,
                    singular=rdef.singular,
                    namespaced=rdef.namespaced,
                    verbs=_VERBS,
                    shortnames=rdef.shortnames,
                    categories=rdef.categories,
                    subresources={"status"} if rdef.has_status(v) else set(),
                )

    def _unregister_discovery(self, rdef: ResourceDef) -> None:
        for v in rdef.versions:
            with contextlib.suppress(KeyError):
                del self._resources[kmock.resource(rdef.group, v, rdef.plural)]

    def _get_resources(self) -> list[kmock.resource]:
        with self._state:
            return list(self._resources)

    async def _serve_apis(self, request: kmock.Request) -> kmock.Payload:
        with self._state:
            result: Any = await super()._serve_apis(request)
        for group in result["groups"]:
            self._fix_versions(group)
        return result

    async def _serve_group(self, request: kmock.Request) -> kmock.Payload:
        with self._state:
            result: Any = await super()._serve_group(request)
        self._fix_versions(result)
        return result

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        with self._state:
            return await super()._serve_version(request)

    async def _serve_root(self, request: kmock.Request) -> kmock.Payload:
        with self._state:
            return await super()._serve_root(request)

    @staticmethod
    def _fix_versions(group: Body) -> None:
        # kmock picks a random "preferred" version from a set; K8s prefers GA > beta > alpha.
        group["versions"].sort(key=lambda v: _version_priority(v["version"]))
        group["preferredVersion"] = group["versions"][0]
