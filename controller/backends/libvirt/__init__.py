"""The libvirt backend (needs libvirt-python; imported only when a host uses driver: libvirt).

Nothing is imported here: the model imports this package's declaration without libvirt-python.
"""
