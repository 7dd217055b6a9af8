"""The migration phase machine and its policies: pure async logic over the backend protocol."""

from controller.engine.controls import Controls
from controller.engine.host_directory import HostDirectory, StaticHosts, host_config
from controller.engine.machine import Engine
from controller.engine.run import Sink, Transition
from controller.engine.run_policy import OnTimeout, RunPolicy

__all__ = [
    "Controls",
    "Engine",
    "HostDirectory",
    "OnTimeout",
    "RunPolicy",
    "Sink",
    "StaticHosts",
    "Transition",
    "host_config",
]
