"""The operator's log lines, plain or JSON, each naming the resource it is about.

kopf's per-object logger puts a `k8s_ref` on its records; kopf's plain formatter prefixes it as
`[namespace/name]`. Lines logged by other loggers while a handler works on a resource (the engine,
a backend, a client library) get the same `k8s_ref` from a context variable, so both formats name
the resource on every line about it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import kopf

FORMATS = ("plain", "json")

current: ContextVar[dict[str, Any] | None] = ContextVar("domig_log_object", default=None)


def about(body: Mapping[str, Any]) -> None:
    """Name this resource on the lines logged from here on, in this task and the tasks it starts."""
    meta = body.get("metadata") or {}
    current.set(
        {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "namespace": meta.get("namespace"),
        }
    )


class ObjectContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ref = current.get()
        if ref is not None and not hasattr(record, "k8s_ref"):
            record.k8s_ref = ref
        return True


class Unsaid(logging.Filter):
    """kopf says "Handler 'edited_after_the_end' succeeded." after every watch event of every
    migration (ten lines for each, most of the log of a busy operator) to say nothing happened."""

    SILENT = frozenset({"Handler 'edited_after_the_end' succeeded."})

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.SILENT


class JsonLines(logging.Formatter):
    """One JSON object per line, with the fields log pipelines index on.

    kopf's own JSON formatter writes only the message, a timestamp and a severity unless given a
    format string, which kopf.configure does not pass on; this one writes the level and the
    logger as well, and the resource's namespace and name at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, Mapping):
            if ref.get("namespace"):
                line["namespace"] = ref["namespace"]
            line["name"] = ref.get("name")
            line["kind"] = ref.get("kind")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure(log_format: str = "plain", verbose: bool = False) -> None:
    """kopf's logging set-up, in the chosen format, plus the resource on every line about one."""
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r}: one of {', '.join(FORMATS)}")
    json_lines = log_format == "json"
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.FULL, log_prefix=not json_lines)
    if not verbose:
        logging.getLogger("kopf.objects").addFilter(Unsaid())
    for handler in logging.getLogger().handlers:
        handler.addFilter(ObjectContext())
        if json_lines:
            handler.setFormatter(JsonLines())
    # What Python would print itself, a warning or a crash's traceback, goes through the log instead.
    logging.captureWarnings(True)
    if json_lines:
        sys.excepthook = _log_uncaught
        threading.excepthook = lambda args: _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)


def _log_uncaught(kind: type[BaseException], error: BaseException | None, trace: TracebackType | None) -> None:
    if error is not None:
        logging.getLogger("domig").critical(f"uncaught {kind.__name__}: {error}", exc_info=(kind, error, trace))
