"""Patches: RFC 7386 merge-patch and RFC 6902 JSON-patch."""

import copy
from collections.abc import Sequence
from typing import Any

from .typedefs import Body


class PatchError(Exception):
    pass


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts are merged recursively, ``null`` removes a key, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: Body = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]] if path else []


def _resolve_pointer(doc: Any, parts: Sequence[str], path: str) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PatchError(f"path not found: {path}")
    return node


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 with all 6 operations; any failure (incl. a failed ``test``) raises PatchError."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError(f"invalid operation: {op!r}")
        kind, path = op.get("op"), op.get("path")
        parts = _pointer(path)
        if kind == "test":
            if _resolve_pointer(doc, parts, str(path)) != op.get("value"):
                raise PatchError(f"testing value {path} failed: test failed")
            continue
        if kind in ("move", "copy"):
            src = _pointer(op.get("from"))
            value = copy.deepcopy(_resolve_pointer(doc, src, str(op.get("from"))))
            if kind == "move":
                doc = _patch_remove(doc, src, str(op.get("from")))
            doc = _patch_add(doc, parts, value, str(path), replace=False)
        elif kind == "add":
            if "value" not in op:
                raise PatchError(f"missing value for add at {path}")
            doc = _patch_add(doc, parts, copy.deepcopy(op["value"]), str(path), replace=False)
        elif kind == "replace":
            if "value" not in op:
                raise PatchError(f"missing value for replace at {path}")
            _resolve_pointer(doc, parts, str(path))  # must exist
            doc = _patch_add(doc, parts, copy.deepcopy(op["value"]), str(path), replace=True)
        elif kind == "remove":
            doc = _patch_remove(doc, parts, str(path))
        else:
            raise PatchError(f"unexpected kind of operation: {kind!r}")
    return doc


def _patch_add(doc: Any, parts: Sequence[str], value: Any, path: str, *, replace: bool) -> Any:
    if not parts:
        return value
    parent = _resolve_pointer(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise PatchError(f"index out of bounds: {path}")
    else:
        raise PatchError(f"cannot add to a scalar at {path}")
    return doc


def _patch_remove(doc: Any, parts: Sequence[str], path: str) -> Any:
    if not parts:
        raise PatchError("cannot remove the root")
    parent = _resolve_pointer(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise PatchError(f"unable to remove nonexistent key: {last}: missing value")
    return doc
