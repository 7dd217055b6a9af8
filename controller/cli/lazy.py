"""Commands named by module and function, imported only when they run.

The parsers of `domig` and `kubectl domig` hold these instead of the functions, so building a
parser (and `--help`, and a usage error) loads no command's dependencies: not the engine for
`domig operator --help`, not kopf or kubernetes for `domig validate`.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass

Command = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Lazy:
    module: str
    function: str

    def resolve(self) -> Command:
        command: Command = getattr(importlib.import_module(self.module), self.function)
        return command

    def __call__(self, args: argparse.Namespace) -> int:
        return self.resolve()(args)
