"""Serving the resource requests: GET/LIST/WATCH, POST, PUT, PATCH, DELETE, and their responses."""

import copy
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kmock

from .errors import ApiError, FieldCause, _bad_request, _invalid, _resource_not_found, _status, _warning_header
from .patching import PatchError, json_patch, merge_patch
from .query import _Query
from .resources import ResourceDef
from .typedefs import Body
from .writing import _Write


def _options(params: Mapping[str, str]) -> Body:
    """The Create/UpdateOptions of a request, from its query (as webhooks see them in ``options``)."""
    options: Body = {}
    if "dryRun" in params:
        options["dryRun"] = [params["dryRun"] or "All"]
    for key in ("fieldManager", "fieldValidation"):
        if params.get(key):
            options[key] = params[key]
    return options


def _delete_options(params: Mapping[str, str], body: Mapping[str, Any]) -> Body:
    options: Body = {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
    if "dryRun" in params:
        options["dryRun"] = [params["dryRun"] or "All"]
    for key in ("propagationPolicy", "gracePeriodSeconds"):
        if params.get(key):
            options[key] = int(params[key]) if key == "gracePeriodSeconds" else params[key]
    return options


class ServingMixin:
    """Mixed into :class:`.server.ApiServer`, which holds the state used here (``_state``, ``_defs``, ...)."""

    __slots__ = ()

    def _query(self, request: kmock.Request) -> _Query:
        res = request.resource
        assert res is not None and res.group is not None and res.plural is not None
        with self._state:
            rdef = self._defs.get((res.group, res.plural))
        if rdef is None or res.version not in rdef.versions or not rdef.versions[res.version].served:
            raise _resource_not_found()
        if request.namespace is not None and not rdef.namespaced:
            raise _resource_not_found()
        if request.subresource not in (None, "status") or (
            request.subresource == "status" and not rdef.has_status(res.version)
        ):
            raise _resource_not_found()
        return _Query(
            rdef=rdef,
            version=str(res.version),
            namespace=request.namespace,
            name=request.name,
            subresource=request.subresource,
            params=request.params,
        )

    async def _serve_resource(self, request: kmock.Request) -> kmock.Payload:
        q = self._query(request)
        method = str(request.method.value).upper()
        if method == "GET" and request.action == kmock.action.WATCH:
            stream = self._watch(q)
            fault = self.faults.watch_fault(request) if self.faults is not None else None
            if fault == "expire":
                stream = self.faults.expire(stream, q.params)
            elif fault == "drop":
                stream = self.faults.drop(stream, request)
            return self._respond(200, stream, content_type="application/json")
        if q.rdef.namespaced and q.name and q.namespace is None:
            raise _resource_not_found()
        if method == "GET":
            with self._state:
                if not q.name:
                    return self._respond(200, self._list(q))
                obj = self._get(q.rdef, q.namespace, q.name)
                if obj is None:
                    raise self._not_found(q.rdef, q.name)
                return self._respond(200, self._output(q.rdef, q.version, obj))

        # Writes: NOT under the lock, which _write() takes & releases around the admission webhooks.
        dry_run = "dryRun" in q.params
        validation = q.params.get("fieldValidation", "Warn")
        if method == "POST" and not q.name:
            self._check_body(request.data, q)
            ns = (
                q.namespace or (request.data.get("metadata") or {}).get("namespace") or "default"
                if q.rdef.namespaced
                else None
            )
            obj, warnings = await self._write(
                functools.partial(self._fresh_create, q, ns, request.data, dry_run, validation, _options(q.params))
            )
            return self._respond(201, obj, warnings=warnings)
        if method == "PUT" and q.name:
            self._check_body(request.data, q)
            replacement = copy.deepcopy(request.data)
            if not ((replacement.get("metadata") or {}).get("resourceVersion")):
                raise _invalid(
                    q.rdef.kind,
                    q.rdef.group,
                    q.name,
                    [
                        FieldCause(
                            "FieldValueInvalid",
                            "metadata.resourceVersion",
                            "Invalid value: 0x0: must be specified for an update",
                        )
                    ],
                )
            return await self._serve_update(q, lambda _: copy.deepcopy(replacement), dry_run, validation)
        if method == "PATCH" and q.name:
            with self._state:
                fn = self._patcher(request, q)
            if fn is None:  # server-side apply of an absent object creates it
                obj, warnings = await self._write(
                    functools.partial(
                        self._fresh_create, q, q.namespace, request.data, dry_run, validation, _options(q.params)
                    )
                )
                return self._respond(201, obj, warnings=warnings)
            return await self._serve_update(q, fn, dry_run, validation)
        if method == "DELETE" and q.name:
            options = request.data if isinstance(request.data, dict) else {}
            obj, warnings = await self._write(
                functools.partial(
                    self._delete_candidate,
                    q.rdef,
                    q.namespace,
                    q.name,
                    preconditions=options.get("preconditions") or {},
                    dry_run=dry_run or bool(options.get("dryRun")),
                    version=q.version,
                    options=_delete_options(q.params, options),
                )
            )
            return self._respond(200, obj, warnings=warnings)
        if method == "DELETE":
            with self._state:
                listing = self._list(q)
            for item in listing["items"]:
                meta = item["metadata"]
                try:
                    await self._write(
                        functools.partial(
                            self._delete_candidate,
                            q.rdef,
                            meta.get("namespace"),
                            meta["name"],
                            version=q.version,
                            options=_delete_options(q.params, {}),
                        )
                    )
                except ApiError as e:
                    if e.status != 404:  # gone meanwhile: as kube's DeleteCollection, not an error
                        raise
            return self._respond(200, listing)
        raise _status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _fresh_create(
        self, q: _Query, namespace: str | None, data: Any, dry_run: bool, validation: str, options: Body
    ) -> _Write:
        # A fresh copy for every attempt: the candidate is computed in place.
        return self._create_candidate(
            q.rdef,
            namespace,
            copy.deepcopy(data),
            version=q.version,
            dry_run=dry_run,
            field_validation=validation,
            options=options,
        )

    async def _serve_update(
        self, q: _Query, fn: Callable[[Body], Body], dry_run: bool, validation: str
    ) -> kmock.Response:
        assert q.name is not None
        obj, warnings = await self._write(
            functools.partial(
                self._update_candidate,
                q.rdef,
                q.version,
                q.namespace,
                q.name,
                fn,
                subresource=q.subresource,
                dry_run=dry_run,
                field_validation=validation,
                options=_options(q.params),
            )
        )
        return self._respond(200, obj, warnings=warnings)

    @staticmethod
    def _respond(
        status: int, payload: Any, *, content_type: str | None = None, warnings: Sequence[str] = ()
    ) -> kmock.Response:
        # NB: kmock merges these headers into its reaction's (shared) Response, so ALWAYS set the same
        # keys, with None for "absent" (kmock skips None values when rendering the actual response).
        return kmock.Response(
            status=status,
            payload=payload,
            headers={"Content-Type": content_type, "Warning": _warning_header(warnings)},
        )

    @staticmethod
    def _check_body(data: Any, q: _Query) -> None:
        if not isinstance(data, dict):
            raise _bad_request(
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json, application/yaml"
            )

    def _patcher(self, request: kmock.Request, q: _Query) -> Callable[[Body], Body] | None:
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        data = request.data
        if ctype == "application/merge-patch+json":
            if not isinstance(data, dict):
                raise _bad_request("the body of the request was not a JSON object")
            return functools.partial(merge_patch, patch=data)
        if ctype == "application/json-patch+json":
            return functools.partial(self._json_patch_or_422, patch=data)
        if ctype == "application/strategic-merge-patch+json" and not q.rdef.custom:
            return functools.partial(merge_patch, patch=data)  # an approximation for built-ins
        if ctype == "application/apply-patch+yaml":  # an approximation of server-side apply
            if not isinstance(data, dict):
                raise _bad_request("the body of the request was not a YAML/JSON object")
            assert q.name is not None
            if self._get(q.rdef, q.namespace, q.name) is None:
                return None
            fields = {k: v for k, v in data.items() if k not in ("apiVersion", "kind")}
            return functools.partial(merge_patch, patch=fields)
        raise _status(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted "
            "media types include: application/json-patch+json, application/merge-patch+json, "
            "application/apply-patch+yaml" + ("" if q.rdef.custom else ", application/strategic-merge-patch+json"),
        )

    @staticmethod
    def _json_patch_or_422(body: Body, patch: Any) -> Body:
        try:
            result = json_patch(body, patch)
        except PatchError as e:
            # As kube-apiserver does for JSON-patch application errors (incl. failed "test" ops).
            raise _status(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {e}",
                {"causes": [{"message": str(e)}]},
            ) from e
        if not isinstance(result, dict):
            raise _status(422, "Invalid", "the server rejected our request: the patched object is not an object")
        return result

    def _not_found(self, rdef: ResourceDef, name: str) -> ApiError:
        return _status(
            404,
            "NotFound",
            f"{rdef.group_resource} {json.dumps(name)} not found",
            {"name": name, "group": rdef.group, "kind": rdef.plural},
        )
