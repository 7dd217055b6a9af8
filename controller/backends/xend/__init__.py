"""The `xend` driver: Xen's HTTP API (xend, up to Xen 4.4), over TCP or its unix socket."""

from controller.backends.xend.driver import CAPABILITIES, XendConnection, XendDriver

__all__ = ["CAPABILITIES", "XendConnection", "XendDriver"]
