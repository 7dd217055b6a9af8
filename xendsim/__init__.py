"""A protocol-faithful stand-in for Xen's xend (removed in Xen 4.5), for tests and demos.

Each ``XendHost`` serves xend's HTTP API (``/xend/domain``, ``/xend/node``; SXP replies)
and a relocation listener; ``op=migrate`` streams the domain to the destination's
listener over real TCP, as xend did. ``/_test/...`` routes and ``Faults`` are test-only.
"""

from xendsim.config import HostConfig
from xendsim.faults import Faults
from xendsim.host import XendHost
from xendsim.process import XendProcess
from xendsim.state import Domain, DomainSpec, HostState, Power

__all__ = [
    "Domain",
    "DomainSpec",
    "Faults",
    "HostConfig",
    "HostState",
    "Power",
    "XendHost",
    "XendProcess",
]
