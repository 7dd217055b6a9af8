"""After a failure or abort: make sure the source runs again, and say where the domain is."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from controller.api.status import DomainState
from controller.backends.base import BackendError, DomainInfo
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
    if run.source is None:
        return f"nothing moved; {spec.domain} was not touched"
    postcopy = run.status.progress is not None and run.status.progress.mode == "PostCopy"
    here, here_err = await _look(spec.source, run.src.lookup, run.source_name)
    there: DomainInfo | None = None
    there_err: str | None = "not connected"
    if run.dest is not None:
        there, there_err = await _look(spec.destination, run.dst.lookup, run.target_name)
    if here is not None and here.state is DomainState.paused and not postcopy and not _runs(there):
        try:
            await run.src.resume(run.source_name)
            here = await run.src.lookup(run.source_name)
        except BackendError as exc:
            here_err = f"resuming it failed ({exc})"
    if run.status.source is not None:
        run.status.source.state = here.state if here else (None if here_err else DomainState.absent)
    if run.status.target is not None:
        run.status.target.state = there.state if there else (None if there_err else DomainState.absent)
    return _where(run, here, here_err, there, there_err, postcopy)


def _runs(info: DomainInfo | None) -> bool:
    return info is not None and info.state is DomainState.running


def _where(
    run: Run,
    here: DomainInfo | None,
    here_err: str | None,
    there: DomainInfo | None,
    there_err: str | None,
    postcopy: bool,
) -> str:
    spec = run.spec
    if _runs(here) and not _runs(there):
        return f"{run.source_name} runs on {spec.source}"
    if _runs(there) and not _runs(here):
        return f"{run.target_name} runs on {spec.destination}"
    parts = []
    for host, name, info, err in (
        (spec.source, run.source_name, here, here_err),
        (spec.destination, run.target_name, there, there_err),
    ):
        parts.append(f"on {host}: {err}" if err else f"{name} is {info.state.value if info else 'absent'} on {host}")
    if postcopy:
        parts.append("the guest's memory was split between the hosts by post-copy; it cannot safely resume")
    return "; ".join(parts)
