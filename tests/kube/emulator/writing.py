"""
Writing the state: creations, updates (incl. the status subresource), deletions with finalizers & cascades.

Each write has two phases, so that admission webhooks can be called between them without the lock held:
a *candidate* (``_create_candidate`` & co.: everything a real server does before admission -- defaulting,
pruning, validation, server-set metadata) and a *commit* (``_commit_write``: what storage does -- the
existence & version checks, the new resourceVersion, the watch event). ``_create``/``_update``/``_delete``
run both at once, for the emulator's own writes (pre-created namespaces, cascades), which kube does not admit.
"""

import contextlib
import copy
import dataclasses
import datetime
import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

from .errors import ApiError, FieldCause, _bad_request, _invalid, _status
from .resources import _CRD_GP, _NS_GP, ResourceDef, _parse_crd
from .schema import prune_and_default, validate
from .typedefs import _MISSING, Body
from .watching import _WatchEvent
from .webhookconfigs import _WEBHOOK_CONFIG_GPS, default_webhook_configuration, validate_webhook_configuration

# As kube-apiserver does since 1.21, so that namespaceSelectors can select namespaces by their names.
_NS_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclasses.dataclass
class _Write:
    """A write computed up to admission: what would be stored, and what is needed to store it."""

    op: Literal["CREATE", "UPDATE", "DELETE"]
    rdef: ResourceDef
    version: str  # the version of the request (objects are shown to webhooks & clients in it)
    namespace: str | None
    name: str
    new: Body  # as it will be stored (for deletions: with a deletionTimestamp, or as it was last)
    old: Body | None = None  # the stored object (updates & deletions)
    subresource: str | None = None
    request_name: str = ""  # the name as requested (empty for generateName creations, as in kube's admission)
    warnings: list[str] = dataclasses.field(default_factory=list)
    options: Body = dataclasses.field(default_factory=dict)  # CreateOptions/UpdateOptions/DeleteOptions
    dry_run: bool = False
    noop: bool = False  # nothing changes: no new resourceVersion, no watch event
    admitted: bool = True  # False if kube does not call admission at all (a repeated deletion)
    new_def: ResourceDef | None = None  # for CRDs: the resource to (re-)register on commit
    gone: bool = False  # the object disappears on commit (deleted, or its last finalizer removed)

    @property
    def old_rv(self) -> str | None:
        return None if self.old is None else str(self.old["metadata"]["resourceVersion"])


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
            self._by_resource.setdefault(rdef.key, {})[key[1:]] = self._objects[key]
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
        if (rdef.group, rdef.plural) == _NS_GP and meta.get("name"):
            meta.setdefault("labels", {})[_NS_NAME_LABEL] = meta["name"]
        if (rdef.group, rdef.plural) in _WEBHOOK_CONFIG_GPS:
            mutating = rdef.kind.startswith("Mutating")
            default_webhook_configuration(body, mutating=mutating, kind=rdef.kind)
            causes = validate_webhook_configuration(body, mutating=mutating)
            if causes:
                raise _invalid(rdef.kind, rdef.group, name, causes)
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

    # -- the two phases ---------------------------------------------------------------------------

    def _create_candidate(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        body: Any,
        *,
        version: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Warn",
        options: Body | None = None,
    ) -> _Write:
        version = version or rdef.storage_version
        if not isinstance(body, dict):
            raise _bad_request("the object must be a JSON/YAML mapping")
        for key in ("apiVersion", "kind"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise _bad_request(f"json: cannot unmarshal into Go struct field TypeMeta.{key} of type string")
        if body.get("kind") not in (None, "", rdef.kind):
            raise _bad_request(f"the kind {body.get('kind')!r} does not match the expected kind {rdef.kind!r}")
        expected = f"{rdef.group}/{version}" if rdef.group else version
        if body.get("apiVersion") not in (None, "", expected):
            raise _bad_request(
                f"the API version in the data ({body['apiVersion']}) does not match"
                f" the expected API version ({expected})"
            )
        if body.get("metadata") is None:  # JSON null decodes to an empty ObjectMeta in kube
            body["metadata"] = {}
        meta = body["metadata"]
        if not isinstance(meta, dict):
            raise _bad_request(
                f"json: cannot unmarshal {type(meta).__name__} into Go struct field .metadata of type v1.ObjectMeta"
            )
        for key in ("name", "generateName", "namespace"):
            if meta.get(key) is not None and not isinstance(meta[key], str):
                raise _bad_request(
                    f"json: cannot unmarshal into Go struct field ObjectMeta.metadata.{key} of type string"
                )
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
        request_name = str(meta.get("name") or "")
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
        new_def = _parse_crd(body) if (rdef.group, rdef.plural) == _CRD_GP else None  # may raise 422
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
        if new_def is not None:
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
        return _Write(
            op="CREATE",
            rdef=rdef,
            version=version,
            namespace=namespace if rdef.namespaced else None,
            name=name,
            new=body,
            request_name=request_name,
            warnings=warnings,
            options=dict(options or {}),
            dry_run=dry_run,
            new_def=new_def,
        )

    def _update_candidate(
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
        options: Body | None = None,
    ) -> _Write:
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
            raise self._conflict(rdef, name)

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
        new_def = _parse_crd(new) if (rdef.group, rdef.plural) == _CRD_GP else None
        new["apiVersion"] = rdef.api_version(rdef.storage_version)
        noop = new == old
        if not noop and _spec_of(new, rdef) != _spec_of(old, rdef):
            new_meta["generation"] = int(old_meta.get("generation", 1)) + 1
        return _Write(
            op="UPDATE",
            rdef=rdef,
            version=version,
            namespace=namespace,
            name=name,
            new=new,
            old=old,
            subresource=subresource,
            request_name=name,
            warnings=warnings,
            options=dict(options or {}),
            dry_run=dry_run,
            noop=noop,
            new_def=new_def,
            gone=bool(new_meta.get("deletionTimestamp")) and not new_meta.get("finalizers"),
        )

    def _delete_candidate(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        version: str | None = None,
        options: Body | None = None,
    ) -> _Write:
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
        w = _Write(
            op="DELETE",
            rdef=rdef,
            version=version or rdef.storage_version,
            namespace=namespace,
            name=name,
            new=copy.deepcopy(old),
            old=old,
            request_name=name,
            options=dict(options or {}),
            dry_run=dry_run,
            gone=True,
        )
        if old["metadata"].get("finalizers"):
            w.gone = False
            if old["metadata"].get("deletionTimestamp"):
                # Already being deleted: nothing changes, and kube does not even call admission.
                w.noop, w.admitted = True, False
            else:
                w.new["metadata"]["deletionTimestamp"] = _now()
                w.new["metadata"]["deletionGracePeriodSeconds"] = 0
        return w

    def _commit_write(self, w: _Write) -> Body:
        """Store a candidate (unless a dry run or a no-op); returns the stored object."""
        if w.op == "CREATE" and self._get(w.rdef, w.namespace, w.name) is not None:
            raise _status(
                409,
                "AlreadyExists",
                f"{w.rdef.group_resource} {json.dumps(w.name)} already exists",
                {"name": w.name, "group": w.rdef.group, "kind": w.rdef.plural},
            )
        if w.noop:
            assert w.old is not None
            return w.old
        if w.dry_run:
            return w.new
        w.new["metadata"]["resourceVersion"] = self._next_rv()
        if w.gone:
            self._commit(w.rdef, "DELETED", w.new, w.old)  # deleted, or the last finalizer is gone
            self._after_delete(w.rdef, w.new)
            return w.new
        if w.new_def is not None:
            self._register(w.new_def)
        self._commit(w.rdef, "ADDED" if w.op == "CREATE" else "MODIFIED", w.new, w.old)
        return w.new

    def _conflict(self, rdef: ResourceDef, name: str) -> ApiError:
        return _status(
            409,
            "Conflict",
            f"Operation cannot be fulfilled on {rdef.group_resource} "
            f"{json.dumps(name)}: the object has been modified; please apply your changes to the "
            f"latest version and try again",
            {"name": name, "group": rdef.group, "kind": rdef.plural},
        )

    # -- both phases at once, without admission ----------------------------------------------------

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
        w = self._create_candidate(
            rdef, namespace, body, version=version, dry_run=dry_run, field_validation=field_validation
        )
        return self._commit_write(w), w.warnings

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
        w = self._update_candidate(
            rdef,
            version,
            namespace,
            name,
            transform,
            subresource=subresource,
            dry_run=dry_run,
            field_validation=field_validation,
        )
        return self._commit_write(w), w.warnings

    def _delete(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Body:
        return self._commit_write(
            self._delete_candidate(rdef, namespace, name, preconditions=preconditions, dry_run=dry_run)
        )

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
