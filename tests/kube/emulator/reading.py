"""Reading the state: single objects, iteration, listings with pagination, and filters."""

import base64
import copy
import json
from collections.abc import Iterator

from .errors import _bad_request
from .query import _Query
from .resources import ResourceDef
from .selectors import Predicate, parse_field_selector, parse_label_selector
from .typedefs import Body


class StateReadingMixin:
    """Mixed into :class:`.server.ApiServer`, which holds the state used here (``_state``, ``_defs``, ...)."""

    __slots__ = ()

    def _get(self, rdef: ResourceDef, namespace: str | None, name: str) -> Body | None:
        obj = self._by_resource.get(rdef.key, {}).get((namespace, name))
        return None if obj is None or obj.deleted else obj.last.raw

    def _iter(self, rdef: ResourceDef, namespace: str | None) -> Iterator[Body]:
        found = [
            (ns or "", name, obj)
            for (ns, name), obj in self._by_resource.get(rdef.key, {}).items()
            if not obj.deleted and (namespace is None or ns == namespace)
        ]
        for _, _, obj in sorted(found, key=lambda t: (t[0], t[1])):
            yield obj.last.raw

    def _output(self, rdef: ResourceDef, version: str, body: Body) -> Body:
        result = copy.deepcopy(body)
        result["apiVersion"] = rdef.api_version(version)
        result["kind"] = rdef.kind
        return result

    def _list(self, q: _Query) -> Body:
        predicate = self._filter(q)
        items = [obj for obj in self._iter(q.rdef, q.namespace) if predicate(obj)]
        limit = int(q.params.get("limit") or 0)
        cont = q.params.get("continue")
        if cont:
            try:
                start = json.loads(base64.b64decode(cont))["start"]
            except Exception as e:
                raise _bad_request(f"invalid continue token: {e}") from e
            items = [o for o in items if [o["metadata"].get("namespace") or "", o["metadata"]["name"]] > start]
        next_token = None
        if limit and len(items) > limit:
            items = items[:limit]
            last = items[-1]["metadata"]
            next_token = base64.b64encode(
                json.dumps({"start": [last.get("namespace") or "", last["name"]]}).encode()
            ).decode()
        meta: Body = {"resourceVersion": str(self._rv)}
        if next_token:
            meta["continue"] = next_token
        return {
            "apiVersion": q.rdef.api_version(q.version),
            "kind": f"{q.rdef.kind}List",
            "metadata": meta,
            "items": [self._output(q.rdef, q.version, obj) for obj in items],
        }

    def _filter(self, q: _Query) -> Predicate:
        checks: list[Predicate] = []
        if q.params.get("labelSelector"):
            checks.append(parse_label_selector(q.params["labelSelector"]))
        if q.params.get("fieldSelector"):
            checks.append(parse_field_selector(q.params["fieldSelector"]))
        if q.name:
            checks.append(lambda body: body["metadata"]["name"] == q.name)
        if q.namespace:
            checks.append(lambda body: body["metadata"].get("namespace") == q.namespace)
        return lambda body: all(check(body) for check in checks)
