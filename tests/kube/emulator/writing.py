"""Writing the state: creations, updates (incl. the status subresource), deletions with finalizers & cascades."""

import contextlib
import copy
import datetime
import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ApiError, FieldCause, _bad_request, _invalid, _status
from .resources import _CRD_GP, _NS_GP, ResourceDef, _parse_crd
from .schema import prune_and_default, validate
from .typedefs import _MISSING, Body
from .watching import _WatchEvent


class StateWritingMixin:
    """Mixed into :class:`.server.ApiServer`, which holds the state used here (``_state``, ``_defs``, ...)."""

    __slots__ = ()

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _commit(self, rdef: ResourceDef, etype: str, body: Body, old: Body | None) -> None:
        meta = body["metadata"]
        key = (rdef.key, meta.get("namespace"), meta["name"])
        stored = copy.deepcopy(body)
        if key not in self._objects:
            self._objects[key] = stored
        else:
            self._objects[key].history.append(stored)
        if etype == "DELETED":
            self._objects[key].delete()
        event = _WatchEvent(
            rv=int(meta["resourceVersion"]),
            gp=(rdef.group, rdef.plural),
            type=etype,
            obj=stored,
            old=copy.deepcopy(old) if old is not None else None,
        )
        self._log.append(event)
        self._log_rvs.append(event.rv)
        if len(self._log) > self.watch_cache_size * 2:
            cut = len(self._log) - self.watch_cache_size
            self._log_floor = self._log_rvs[cut - 1]
            del self._log[:cut], self._log_rvs[:cut]
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake_watchers)

    def _wake_watchers(self) -> None:
        for event in list(self._wakeups):
            event.set()

    def _prepare(
        self, rdef: ResourceDef, version: str, body: Body, old: Body | None, field_validation: str
    ) -> list[str]:
        """Prune, default, and validate a body in place. Returns the warnings (unknown fields)."""
        meta = body.setdefault("metadata", {})
        name = meta.get("name") or meta.get("generateName") or ""
        if not isinstance(meta, dict):
            raise _bad_request("metadata must be an object")
        for field in ("labels", "annotations"):
            values = meta.get(field) or {}
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                raise _bad_request(
                    f"json: cannot unmarshal {field} into Go struct field ObjectMeta.metadata.{field} "
                    f"of type map[string]string: {values!r}"
                )
        finalizers = meta.get("finalizers") or []
        if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
            raise _bad_request(f"json: cannot unmarshal metadata.finalizers of type []string: {finalizers!r}")
        schema = rdef.schema(version)
        if schema is None:
            return []
        unknown: list[str] = []
        pruned = prune_and_default(body, schema, "", unknown)
        body.clear()
        body.update(pruned)
        if unknown and field_validation == "Strict":
            raise _bad_request("strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown))
        causes = validate(body, schema, old if old is not None else _MISSING)
        if causes:
            raise _invalid(rdef.kind, rdef.group, name, causes)
        return [] if field_validation == "Ignore" else [f'unknown field "{p}"' for p in unknown]

    def _create(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        body: Any,
        *,
        version: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Warn",
    ) -> tuple[Body, list[str]]:
        version = version or rdef.storage_version
        if not isinstance(body, dict):
            raise _bad_request("the object must be a JSON/YAML mapping")
        if body.get("kind") not in (None, rdef.kind):
            raise _bad_request(f"the kind {body.get('kind')!r} does not match the expected kind {rdef.kind!r}")
        meta = body.setdefault("metadata", {})
        if rdef.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise _bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
            if self.strict_namespaces and self._get(self._defs[_NS_GP], None, str(namespace)) is None:
                raise _status(
                    404,
                    "NotFound",
                    f"namespaces {json.dumps(namespace)} not found",
                    {"name": namespace, "kind": "namespaces"},
                )
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            alphabet = "bcdfghjklmnpqrstvwxz2456789"  # as in K8s: no vowels, no confusables
            for _ in range(100):
                meta["name"] = meta["generateName"] + "".join(random.choices(alphabet, k=5))
                if self._get(rdef, namespace, meta["name"]) is None:
                    break
        name = meta.get("name")
        if not name:
            raise _invalid(
                rdef.kind,
                rdef.group,
                "",
                [FieldCause("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")],
            )
        self._check_name(rdef, name)
        if rdef.has_status(version):
            body.pop("status", None)  # ignored on creation when the status subresource is enabled
        for field in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
            "managedFields",
        ):
            meta.pop(field, None)
        warnings = self._prepare(rdef, version, body, None, field_validation)
        if (rdef.group, rdef.plural) == _CRD_GP:
            new_def = _parse_crd(body)  # may raise 422
        if self._get(rdef, namespace, name) is not None:
            raise _status(
                409,
                "AlreadyExists",
                f"{rdef.group_resource} {json.dumps(name)} already exists",
                {"name": name, "group": rdef.group, "kind": rdef.plural},
            )
        meta.update(
            {
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "generation": 1,
            }
        )
        body["apiVersion"] = rdef.api_version(rdef.storage_version)
        body["kind"] = rdef.kind
        if (rdef.group, rdef.plural) == _NS_GP:
            body["status"] = {"phase": "Active"}
        if (rdef.group, rdef.plural) == _CRD_GP:
            body["status"] = {
                "acceptedNames": (body.get("spec") or {}).get("names") or {},
                "storedVersions": [new_def.storage_version],
                "conditions": [
                    {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": _now()}
                    for t, r, m in [
                        ("NamesAccepted", "NoConflicts", "no conflicts found"),
                        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                    ]
                ],
            }
        if dry_run:
            return body, warnings
        meta["resourceVersion"] = self._next_rv()
        if (rdef.group, rdef.plural) == _CRD_GP:
            self._register(new_def)
        self._commit(rdef, "ADDED", body, None)
        return body, warnings

    @staticmethod
    def _check_name(rdef: ResourceDef, name: str) -> None:
        if (rdef.group, rdef.plural) == _NS_GP:
            ok, what = re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, "RFC 1123 label"
        else:
            label = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
            ok = re.fullmatch(rf"{label}(\.{label})*", name) and len(name) <= 253
            what = "RFC 1123 subdomain"
        if not ok:
            raise _invalid(
                rdef.kind,
                rdef.group,
                name,
                [
                    FieldCause(
                        "FieldValueInvalid",
                        "metadata.name",
                        f"Invalid value: {json.dumps(name)}: a lowercase {what} must consist of lower case "
                        f"alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                    )
                ],
            )

    def _update(
        self,
        rdef: ResourceDef,
        version: str,
        namespace: str | None,
        name: str,
        transform: Callable[[Body], Body],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Warn",
    ) -> tuple[Body, list[str]]:
        old = self._get(rdef, namespace, name)
        if old is None:
            raise self._not_found(rdef, name)
        old_view = self._output(rdef, version, old)
        new = transform(copy.deepcopy(old_view))
        if not isinstance(new, dict):
            raise _bad_request("the patched object is not an object")
        new_meta = new.get("metadata")
        if not isinstance(new_meta, dict):
            new_meta = new["metadata"] = {}
        old_meta = old["metadata"]

        # Optimistic concurrency: a resourceVersion in the new body must match the current one.
        new_rv = new_meta.get("resourceVersion")
        if new_rv not in (None, "") and str(new_rv) != old_meta["resourceVersion"]:
            raise _status(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {rdef.group_resource} "
                f"{json.dumps(name)}: the object has been modified; please apply your changes to the "
                f"latest version and try again",
                {"name": name, "group": rdef.group, "kind": rdef.plural},
            )

        # The status subresource isolation: status-only via /status, everything-but-status otherwise.
        if rdef.has_status(version):
            if subresource == "status":
                status = new.get("status", _MISSING)
                new = copy.deepcopy(old_view)
                if status is _MISSING:
                    new.pop("status", None)
                else:
                    new["status"] = status
            elif "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        new_meta = new["metadata"]

        # Server-managed & immutable metadata fields are preserved from the current state.
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ):
            if field in old_meta:
                new_meta[field] = old_meta[field]
            else:
                new_meta.pop(field, None)
        new["apiVersion"] = rdef.api_version(version)
        new["kind"] = rdef.kind
        if old_meta.get("deletionTimestamp"):
            added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise _invalid(
                    rdef.kind,
                    rdef.group,
                    name,
                    [
                        FieldCause(
                            "FieldValueForbidden",
                            "metadata.finalizers",
                            f"Forbidden: no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {sorted(added)!r}",
                        )
                    ],
                )
        warnings = self._prepare(rdef, version, new, old_view, field_validation)
        if (rdef.group, rdef.plural) == _CRD_GP:
            new_def = _parse_crd(new)
        new["apiVersion"] = rdef.api_version(rdef.storage_version)
        if new == old:
            return old, warnings  # no-op: no new resourceVersion, no watch event (as in K8s)
        if _spec_of(new, rdef) != _spec_of(old, rdef):
            new_meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if dry_run:
            return new, warnings
        new_meta["resourceVersion"] = self._next_rv()
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            self._commit(rdef, "DELETED", new, old)  # the last finalizer is gone: delete for real
            self._after_delete(rdef, new)
        else:
            if (rdef.group, rdef.plural) == _CRD_GP:
                self._register(new_def)
            self._commit(rdef, "MODIFIED", new, old)
        return new, warnings

    def _delete(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Body:
        old = self._get(rdef, namespace, name)
        if old is None:
            raise self._not_found(rdef, name)
        for field in ("uid", "resourceVersion"):
            expected = (preconditions or {}).get(field)
            if expected is not None and expected != old["metadata"].get(field):
                raise _status(
                    409,
                    "Conflict",
                    f"Operation cannot be fulfilled on {rdef.group_resource} "
                    f"{json.dumps(name)}: the {field} in the precondition ({expected}) does not match "
                    f"the {field} in record ({old['metadata'].get(field)}). The object might have been "
                    f"deleted and then recreated",
                    {"name": name, "group": rdef.group, "kind": rdef.plural},
                )
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old  # already being deleted: nothing changes
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if dry_run:
                return new
            new["metadata"]["resourceVersion"] = self._next_rv()
            self._commit(rdef, "MODIFIED", new, old)
            return new
        new = copy.deepcopy(old)
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._commit(rdef, "DELETED", new, old)
        self._after_delete(rdef, new)
        return new

    def _after_delete(self, rdef: ResourceDef, body: Body) -> None:
        """Cascades: a namespace takes its objects with it; a CRD takes its resource & objects."""
        if (rdef.group, rdef.plural) == _NS_GP:
            ns = body["metadata"]["name"]
            for other in list(self._defs.values()):
                if other.namespaced:
                    for obj in list(self._iter(other, ns)):
                        with contextlib.suppress(ApiError):
                            self._delete(other, ns, obj["metadata"]["name"])
        elif (rdef.group, rdef.plural) == _CRD_GP:
            spec = body.get("spec") or {}
            gone = self._defs.get((spec.get("group"), (spec.get("names") or {}).get("plural")))
            if gone is not None and gone.custom:
                for obj in list(self._iter(gone, None)):
                    new = copy.deepcopy(obj)
                    new["metadata"]["resourceVersion"] = self._next_rv()
                    self._commit(gone, "DELETED", new, obj)
                self._unregister_discovery(gone)
                del self._defs[gone.group, gone.plural]


def _spec_of(body: Body, rdef: ResourceDef) -> Body:
    """What bumps metadata.generation: everything but metadata (and status if it is a subresource)."""
    skipped = {"metadata", "apiVersion", "kind"} | ({"status"} if rdef.has_status() else set())
    return {k: v for k, v in body.items() if k not in skipped}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
