"""Showing a running migration: a rich progress bar on stderr, or nothing (for -o json)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.api.status import DomainMigrationStatus, Outlook, Progress
from controller.engine.run import Transition

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID


def human_bytes(value: float | None) -> str:
    if value is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{value:.0f} B"
        value /= 1024
    return "?"


def _elapsed(ms: int | None) -> str:
    return f"{ms / 1000:.0f}s elapsed, no progress figures" if ms is not None else ""


def outlook_text(p: Progress, markup: bool = True) -> str:
    """What the forecast says: an ETA only when it converges, never a guess (the bar and the list)."""
    if p.forecast is Outlook.NotConverging:
        return "[yellow]not converging" if markup else "not converging"
    if not p.eta_seconds:
        return ""
    downtime = f", ~{p.expected_downtime_ms} ms pause" if p.expected_downtime_ms is not None else ""
    return f"ETA {p.eta_seconds:.0f}s{downtime}"


def _details(status: DomainMigrationStatus) -> dict[str, Any]:
    p = status.progress
    if p is None:
        return {"rate": "", "remaining": "", "eta": "", "iteration": ""}
    return {
        # Some hypervisors (xend) report no figures while they migrate: show time, not guesses.
        "rate": f"{human_bytes(p.bytes_per_second)}/s" if p.bytes_per_second is not None else _elapsed(p.elapsed_ms),
        "remaining": f"{human_bytes(p.data_remaining_bytes)} left" if p.data_remaining_bytes is not None else "",
        "eta": outlook_text(p),
        "iteration": f"pass {p.iteration}" if p.iteration else "",
    }


class LiveView:
    """The progress line: percent, rate, remaining, ETA (like `virsh migrate --verbose`, richer)."""

    def __init__(self, console: Console) -> None:
        # Here, not at the top: `-o json` shows no bar and need not load it.
        from rich.progress import BarColumn, TextColumn
        from rich.progress import Progress as Bar

        self.console = console
        self.progress = Bar(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            TextColumn("{task.fields[percent]:>7}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[remaining]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("[dim]{task.fields[iteration]}"),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None
        self.steps_shown = 0
        self.limitations_shown = 0

    def __enter__(self) -> LiveView:
        self.progress.start()
        self.task = self.progress.add_task("Pending", total=100, percent="", **_details(DomainMigrationStatus()))
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    async def __call__(self, status: DomainMigrationStatus, transition: Transition | None) -> None:
        self.show(status, transition)

    def show(self, status: DomainMigrationStatus, transition: Transition | None) -> None:
        assert self.task is not None
        percent = status.progress.percent if status.progress else None
        self.progress.update(
            self.task,
            description=status.phase.value,
            completed=percent or 0,
            percent=f"{percent:.2f}%" if percent is not None else "--",
            **_details(status),
        )
        # The final word is printed once, by the caller, after the bar.
        if transition is not None and transition.message and not transition.after.terminal:
            self.progress.console.print(f"[dim]{transition.after.value}:[/] {transition.message}")
        for record in status.convergence[self.steps_shown :]:
            self.progress.console.print(
                f"[dim]step {record.step + 1}, {record.action} ({record.trigger}):[/] "
                f"{record.outcome.lower()}: {record.message}"
            )
        self.steps_shown = max(self.steps_shown, len(status.convergence))
        for said in status.limitations[self.limitations_shown :]:
            self.progress.console.print(f"[yellow]limitation:[/] {said}")
        self.limitations_shown = max(self.limitations_shown, len(status.limitations))


async def quiet(status: DomainMigrationStatus, transition: Transition | None) -> None:
    return None
