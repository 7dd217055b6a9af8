"""After a failure or abort: make sure the source runs again, and say where the domain is."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from controller.api.status import DomainState
from controller.backends.protocol import BackendError, DomainInfo
from controller.engine.run import Run


async def _look(
    conn_name: str, lookup: Callable[[str], Awaitable[DomainInfo | None]], name: str
) -> tuple[DomainInfo | None, str | None]:
    try:
        return await lookup(name), None
    except BackendError as exc:
        return None, f"{conn_name} did not answer ({exc})"


async def recover(run: Run) -> str:
    """Resume the source if it was left paused; return where the domain now is, in words."""
    spec = run.spec
    if "source" not in run.connections:
        return f"nothing moved; {spec.domain} was not touched"
    postcopy = run.status.progress is not None and run.status.progress.mode == "PostCopy"
    at_source, source_err = await _look(spec.source, run.source.lookup, run.source_name)
    at_destination: DomainInfo | None = None
    destination_err: str | None = "not connected"
    if "destination" in run.connections:
        at_destination, destination_err = await _look(spec.destination or "", run.destination.lookup, run.target_name)
    if at_source is not None and at_source.state is DomainState.paused and not postcopy and not _runs(at_destination):
        try:
            await run.source.resume(run.source_name)
            at_source = await run.source.lookup(run.source_name)
        except BackendError as exc:
            source_err = f"resuming it failed ({exc})"
    if run.status.source is not None:
        run.status.source.state = at_source.state if at_source else (None if source_err else DomainState.absent)
    if run.status.target is not None:
        run.status.target.state = (
            at_destination.state if at_destination else (None if destination_err else DomainState.absent)
        )
    return _where(run, at_source, source_err, at_destination, destination_err, postcopy)


def _runs(info: DomainInfo | None) -> bool:
    return info is not None and info.state is DomainState.running


def _where(
    run: Run,
    at_source: DomainInfo | None,
    source_err: str | None,
    at_destination: DomainInfo | None,
    destination_err: str | None,
    postcopy: bool,
) -> str:
    spec = run.spec
    if _runs(at_source) and not _runs(at_destination):
        return f"{run.source_name} runs on {spec.source}"
    if _runs(at_destination) and not _runs(at_source):
        return f"{run.target_name} runs on {spec.destination}"
    parts = []
    for host, name, info, err in (
        (spec.source, run.source_name, at_source, source_err),
        (spec.destination, run.target_name, at_destination, destination_err),
    ):
        parts.append(f"on {host}: {err}" if err else f"{name} is {info.state.value if info else 'absent'} on {host}")
    if postcopy:
        parts.append("the guest's memory was split between the hosts by post-copy; it cannot safely resume")
    return "; ".join(parts)
