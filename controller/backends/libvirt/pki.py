"""TLS client certificates from a host's Secret, for ``qemu+tls://``.

libvirt's client reads its certificates from files only: the folder named by the URI's
``pkipath`` parameter (``cacert.pem``, ``clientcert.pem``, ``clientkey.pem``), else /etc/pki. A
Secret holding those three keys is written once per process into a private folder (0700, the key
0600) and our own connections to the host get ``pkipath`` pointing there; a URI that names its
own ``pkipath`` keeps it. Not the peer-to-peer destination URI: the source *daemon* opens that on
its own host, where this folder does not exist, with that host's certificates.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from controller.api.enums import Reason
from controller.backends.protocol import BackendError, HostConfig

FILES = ("cacert.pem", "clientcert.pem", "clientkey.pem")  # libvirt's names, and the Secret's keys
OPTIONAL = ("cacrl.pem",)

_lock = threading.Lock()
_written: dict[tuple[str, str], Path] = {}  # (host, digest of the files) -> folder


def client_uri(host: HostConfig) -> str:
    """The URI our own connections to ``host`` open: with ``pkipath`` when its Secret has certificates."""
    folder = _folder(host)
    if folder is None or "pkipath" in parse_qs(urlsplit(host.uri).query):
        return host.uri
    joiner = "&" if urlsplit(host.uri).query else "?"
    return f"{host.uri}{joiner}pkipath={quote(str(folder))}"


def _folder(host: HostConfig) -> Path | None:
    credentials = host.credentials
    if credentials is None:
        return None
    present = {name: credentials.get(name) for name in FILES + OPTIONAL}
    given = [name for name in FILES if present[name]]
    if not given:
        return None
    if len(given) < len(FILES):
        missing = ", ".join(name for name in FILES if not present[name])
        raise BackendError(
            f"the credentials Secret of {host.name} has TLS certificates but not {missing}"
            f" (libvirt needs {', '.join(FILES)})",
            Reason.HostUnreachable,
        )
    digest = hashlib.sha256(
        b"\0".join(f"{name}={present[name] or ''}".encode() for name in FILES + OPTIONAL)
    ).hexdigest()
    with _lock:
        folder = _written.get((host.name, digest))
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="domig-pki-"))  # 0700
            for name, text in present.items():
                if text:
                    path = folder / name
                    path.touch(0o600)
                    path.write_text(text)
            _written[(host.name, digest)] = folder
    return folder


@atexit.register
def _remove() -> None:
    with _lock:
        for folder in _written.values():
            shutil.rmtree(folder, ignore_errors=True)
        _written.clear()
