"""Failures a test can inject into one simulated host. Not part of xend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Literal

RelocationMode = Literal["accept", "refuse", "reject", "hangup"]
RELOCATION_MODES: tuple[RelocationMode, ...] = ("accept", "refuse", "reject", "hangup")


@dataclass
class Faults:
    """
    relocation: how the relocation listener treats a migration coming in:
        accept; refuse (not listening: connection refused); reject (answers
        ``(receive)`` with ``(err ...)``); hangup (closes without a word, as xend did
        for hosts not in xend-relocation-hosts-allow).
    drop_at: fraction (0..1) of the memory stream after which this host, as sender
        or receiver, resets the connection.
    http_down: the HTTP server is not listening (the relocation listener is unaffected).
    http_delay: seconds added before every xend HTTP reply.
    resume_delay: seconds the destination waits, after acknowledging a complete
        stream, before it runs the domain (real xend could be that late: its source
        returned when the stream was written, not when the guest ran).
    """

    relocation: RelocationMode = "accept"
    drop_at: float | None = None
    http_down: bool = False
    http_delay: float = 0.0
    resume_delay: float = 0.0

    def updated(self, changes: Mapping[str, object]) -> Faults:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        data = asdict(self)
        data.update(changes)
        return Faults.validated(data)

    @staticmethod
    def validated(data: Mapping[str, object]) -> Faults:
        relocation = str(data.get("relocation", "accept"))
        if relocation not in RELOCATION_MODES:
            raise ValueError(f"relocation must be one of {', '.join(RELOCATION_MODES)}")
        drop_at = data.get("drop_at")
        drop = None if drop_at is None else float(str(drop_at))
        if drop is not None and not 0.0 <= drop <= 1.0:
            raise ValueError("drop_at must be between 0 and 1")
        http_delay = float(str(data.get("http_delay", 0.0)))
        resume_delay = float(str(data.get("resume_delay", 0.0)))
        if http_delay < 0 or resume_delay < 0:
            raise ValueError("delays must not be negative")
        return Faults(
            relocation=relocation,
            drop_at=drop,
            http_down=bool(data.get("http_down", False)),
            http_delay=http_delay,
            resume_delay=resume_delay,
        )

    def as_json(self) -> dict[str, object]:
        return asdict(self)
