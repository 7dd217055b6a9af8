"""What the libvirt driver adds to the resource model (see controller/api/drivers.py).

Import-light on purpose: libvirt-python is needed to migrate, not to parse a host or build the CRD.
"""

from pydantic import StrictBool

from controller.api.drivers import DriverDeclaration, HostOption

DECLARATION = DriverDeclaration(
    name="libvirt",
    driver="controller.backends.libvirt.driver:LibvirtDriver",
    summary="libvirt-python against any libvirt daemon",
    uri_schemes=(),  # whatever libvirt opens: qemu+tcp, qemu+tls, qemu+ssh, qemu+unix, xen, ...
    uri_example="qemu+tcp://host-a/system",
    # Unset (the default): peer-to-peer (VIR_MIGRATE_PEER2PEER), the source daemon driving the
    # migration itself so that it goes on if the controller dies, and managed when the source
    # daemon cannot reach the destination. true: peer-to-peer or nothing. false: managed, the
    # controller driving libvirt's protocol between the daemons (libvirt aborts it if we die).
    host_options=(HostOption("peer_to_peer", StrictBool | None, None, example=True),),
)
