"""Real-libvirt test harness: two libvirtd daemons on this machine, guest builders, integrity check."""
