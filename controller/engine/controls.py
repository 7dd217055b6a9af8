"""What may change while a migration runs: an abort request and live tuning."""

import asyncio


class Controls:
    def __init__(self) -> None:
        self.abort_requested = asyncio.Event()
        self.force_complete_requested = asyncio.Event()
        self._tuning: dict[str, int] = {}

    def request_abort(self) -> None:
        self.abort_requested.set()

    def request_force_complete(self) -> None:
        self.force_complete_requested.set()

    def tune(self, name: str, value: int) -> None:
        self._tuning[name] = value

    def take_tuning(self) -> dict[str, int]:
        pending, self._tuning = self._tuning, {}
        return pending

    @property
    def aborting(self) -> bool:
        return self.abort_requested.is_set()
