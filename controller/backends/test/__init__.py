"""The in-memory `test` driver: deterministic hosts and a migration model for demos and tests."""

from controller.backends.test.driver import TestConnection, TestDriver
from controller.backends.test.world import World

__all__ = ["TestConnection", "TestDriver", "World"]
