"""libvirtError -> BackendError, with a typed reason where libvirt's error code has one."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import libvirt

from controller.api.enums import Reason
from controller.backends.protocol import BackendError, Credentials, HostConfig


def _codes(*names: str) -> frozenset[int]:
    # Some codes are newer than the oldest libvirt we may meet; a missing one simply never matches.
    return frozenset(int(getattr(libvirt, name)) for name in names if hasattr(libvirt, name))


UNREACHABLE = _codes(
    "VIR_ERR_NO_CONNECT",
    "VIR_ERR_INVALID_CONN",
    "VIR_ERR_RPC",
    "VIR_ERR_SYSTEM_ERROR",
    "VIR_ERR_AUTH_FAILED",
    "VIR_ERR_AUTH_CANCELLED",
    "VIR_ERR_AUTH_UNAVAILABLE",
)
AUTH = _codes("VIR_ERR_AUTH_FAILED", "VIR_ERR_AUTH_CANCELLED", "VIR_ERR_AUTH_UNAVAILABLE")
NO_SUPPORT = _codes(
    "VIR_ERR_NO_SUPPORT",
    "VIR_ERR_ARGUMENT_UNSUPPORTED",
    "VIR_ERR_CONFIG_UNSUPPORTED",
    "VIR_ERR_OPERATION_UNSUPPORTED",
)
REASONS: dict[int, Reason] = {
    **dict.fromkeys(UNREACHABLE, Reason.HostUnreachable),
    **dict.fromkeys(NO_SUPPORT, Reason.NoSupport),
    **dict.fromkeys(_codes("VIR_ERR_NO_DOMAIN"), Reason.DomainNotFound),
    **dict.fromkeys(_codes("VIR_ERR_DOM_EXIST"), Reason.NameClash),
    **dict.fromkeys(_codes("VIR_ERR_OPERATION_ABORTED"), Reason.Aborted),
    # Only the destination judges the guest's CPU (its Prepare step): the guest never left.
    **dict.fromkeys(_codes("VIR_ERR_CPU_INCOMPATIBLE"), Reason.TargetFailed),
}


def peer_unreachable(exc: libvirt.libvirtError) -> bool:
    """Whether a peer-to-peer call failed because the source daemon could not open the destination's
    URI: it reports its own connect failure as ours (seen with libvirt 9.0: VIR_ERR_SYSTEM_ERROR
    "unable to connect to server at ...", VIR_ERR_AUTH_FAILED "No authentication callback
    available"); older daemons wrap it as "Failed to connect to remote libvirt URI"."""
    code = code_of(exc)
    if code in UNREACHABLE:
        return True
    return code == getattr(libvirt, "VIR_ERR_OPERATION_FAILED", None) and "connect to remote libvirt URI" in str(exc)


def redact(message: str, credentials: Credentials | None) -> str:
    """libvirt never echoes a password, but a daemon's message might; never let one through."""
    if credentials is not None:
        secret = credentials.get("password")
        if secret:
            message = message.replace(secret, "***")
    return message


def code_of(exc: libvirt.libvirtError) -> int | None:
    code = exc.get_error_code()
    return int(code) if code is not None else None


def backend_error(exc: libvirt.libvirtError, credentials: Credentials | None, what: str = "") -> BackendError:
    message = redact(str(exc) or "libvirt gave no message", credentials)
    code = code_of(exc)
    return BackendError(f"{what}: {message}" if what else message, REASONS.get(code) if code is not None else None)


def connect_error(exc: libvirt.libvirtError, host: HostConfig) -> BackendError:
    """A failed open. libvirt's auth failures name neither the host nor whether we had credentials
    ("authentication failed: authentication failed"), so say both; the reason stays HostUnreachable."""
    error = backend_error(exc, host.credentials)
    reason = error.reason or Reason.HostUnreachable
    if code_of(exc) not in AUTH:
        return BackendError(error.message, reason)
    detail = error.message.removeprefix("authentication failed: ")
    if _is_tls(host.uri) and "certificate" in detail.lower():
        # libvirt reports a refused certificate, ours or the daemon's, as an auth failure too.
        hint = (
            " (TLS: the client certificate, in the URI's pkipath folder or /etc/pki/libvirt, and the host's"
            " must both be signed by the CA the other side trusts, and the host's must name the URI's host)"
        )
    elif host.credentials is None:
        hint = " (no credentials: set spec.credentialsSecretRef to a Secret with username and password)"
    else:
        hint = ""
    return BackendError(f"authentication failed for {host.name}{hint}: {detail}", reason)


def _is_tls(uri: str) -> bool:
    """libvirt's TLS transport: ``driver+tls://``, or a remote URI without a transport (TLS is its default)."""
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2]
    if "transport" in parse_qs(parts.query):
        return False  # only libssh2/libssh URIs name one that way; not TLS
    return transport == "tls" or (not transport and bool(parts.hostname))
