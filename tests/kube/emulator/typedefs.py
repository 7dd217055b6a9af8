"""Type aliases and sentinels shared by all parts of the emulator."""

from typing import Any, TypeAlias

Body: TypeAlias = dict[str, Any]

_MISSING: Any = object()
