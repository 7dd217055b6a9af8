"""The `xend` driver: Xen's HTTP API (xend, up to Xen 4.4), over TCP or its unix socket.

Nothing is imported here: the model imports this package's declaration, which must stay light.
"""
