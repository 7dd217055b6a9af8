"""The migration phase machine and its policies: pure async logic over the backend protocol."""

from controller.engine.controls import Controls
from controller.engine.hosts import HostDirectory, StaticHosts, host_config
from controller.engine.machine import Engine
from controller.engine.policy import OnTimeout, Policy
from controller.engine.run import Sink, Transition

__all__ = [
    "Controls",
    "Engine",
    "HostDirectory",
    "OnTimeout",
    "Policy",
    "Sink",
    "StaticHosts",
    "Transition",
    "host_config",
]
