"""Where a command talks to its user: rich's Console on stderr, made when first written to.

`domig migrate -o json` to a named host writes nothing there, and loading rich.console was a
tenth of its start-up, before the migrate call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class Stderr:
    def __init__(self) -> None:
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)
