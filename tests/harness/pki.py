"""A certificate authority made for one test run: server certificates for the daemons, one client's.

libvirt's TLS transport (``qemu+tls://``) wants, on the daemon, ``ca_file``/``cert_file``/``key_file``
(libvirtd.conf) and, on the client, a folder holding ``cacert.pem``, ``clientcert.pem`` and
``clientkey.pem``, named by the URI's ``pkipath`` parameter (else ``/etc/pki/CA`` and
``/etc/pki/libvirt``, which the tests leave alone). libvirt checks what it is given as strictly
as its docs say: the CA's basic constraints and key usage, the server certificate's
``serverAuth`` purpose and a name matching the URI's host (here an IP address SAN), the client's
``clientAuth``. The daemons verify the client certificate against the CA
(``tls_no_verify_certificate = 0``, libvirt's default), so a client without one is refused.

Keys are P-256 (ECDSA): milliseconds to make, which RSA keys are not.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "cacert.pem"
CLIENT_CERT = "clientcert.pem"
CLIENT_KEY = "clientkey.pem"
SERVER_CERT = "servercert.pem"
SERVER_KEY = "serverkey.pem"


@dataclass(frozen=True)
class ServerTls:
    """What one daemon's libvirtd.conf names: its CA, its certificate and its key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "domig tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


class TestCA:
    """A CA valid for a day, kept in ``folder`` (``cacert.pem``, its key beside it)."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path, name: str = "domig test CA") -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(name)
        now = datetime.datetime.now(datetime.UTC)
        self.not_before, self.not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before)
            .not_valid_after(self.not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.cert_file = _write(folder / CA_CERT, self.cert_pem)
        _write(folder / "cakey.pem", _pem_key(self.key), 0o600)

    def issue(
        self, common_name: str, *, server: bool, addresses: tuple[str, ...] = (), names: tuple[str, ...] = ()
    ) -> tuple[bytes, bytes]:
        """A certificate and key (PEM) for a server (``serverAuth``, SANs) or a client (``clientAuth``)."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before)
            .not_valid_after(self.not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        sans += [x509.DNSName(n) for n in names]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

    def server(
        self, folder: Path, common_name: str, addresses: tuple[str, ...], names: tuple[str, ...] = ()
    ) -> ServerTls:
        """A daemon's files in ``folder``: the CA, its certificate (for ``addresses``), its key."""
        cert, key = self.issue(common_name, server=True, addresses=addresses, names=names)
        return ServerTls(
            ca_file=_write(folder / CA_CERT, self.cert_pem),
            cert_file=_write(folder / SERVER_CERT, cert),
            key_file=_write(folder / SERVER_KEY, key, 0o600),
        )

    def qemu(self, folder: Path, common_name: str, addresses: tuple[str, ...]) -> Path:
        """QEMU's own TLS folder for the migration stream (``migrate_tls_x509_cert_dir``, flag ``tls``):
        the CA, a server certificate for the addresses the peer's QEMU connects to, and a client one."""
        cert, key = self.issue(common_name, server=True, addresses=addresses)
        client_cert, client_key = self.issue(f"{common_name} (client)", server=False)
        _write(folder / "ca-cert.pem", self.cert_pem)
        _write(folder / "server-cert.pem", cert)
        _write(folder / "server-key.pem", key, 0o600)
        _write(folder / "client-cert.pem", client_cert)
        _write(folder / "client-key.pem", client_key, 0o600)
        return folder

    def client(self, folder: Path, common_name: str = "domig") -> Path:
        """A client's ``pkipath`` folder: ``cacert.pem``, ``clientcert.pem``, ``clientkey.pem``."""
        cert, key = self.issue(common_name, server=False)
        _write(folder / CA_CERT, self.cert_pem)
        _write(folder / CLIENT_CERT, cert)
        _write(folder / CLIENT_KEY, key, 0o600)
        return folder


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
