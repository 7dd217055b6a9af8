"""The libvirt backend (needs libvirt-python; imported only when a host uses driver: libvirt)."""

from controller.backends.libvirt.driver import CAPABILITIES, LibvirtDriver

__all__ = ["CAPABILITIES", "LibvirtDriver"]
