"""Start and stop two real libvirtd daemons ("hosts") on this one machine.

Each daemon runs inside its own private mount namespace (``unshare -m --propagation private``)
where libvirt's state directories are bind-mounted from a per-host folder, so the two daemons
(and the QEMU processes they spawn) never see each other's domains, sockets, or caches:

=====================  ==========================================
mount point            per-host source folder
=====================  ==========================================
``/etc/libvirt``       ``<root>/<host>/etc``   (libvirtd.conf, qemu.conf, persistent XML)
``/run/libvirt``       ``<root>/<host>/run``
``/var/lib/libvirt``   ``<root>/<host>/lib``
``/var/cache/libvirt`` ``<root>/<host>/cache`` (QEMU capabilities cache)
``/var/log/libvirt``   ``<root>/<host>/log``   (QEMU logs: ``log/qemu/<domain>.log``)
=====================  ==========================================

Host A listens for libvirt RPC on 127.0.0.1:16509, host B on 127.0.0.2:16510 (plain TCP,
no auth), and for TLS on 127.0.0.1:16514 and 127.0.0.2:16515 with certificates made for the run
(:mod:`.pki`: a CA, a server certificate per host, one client's, named by ``host.tls_uri``'s
``pkipath``; and QEMU's own, for a migration stream with flag ``tls``). Each has a distinct
``host_uuid`` -- libvirt refuses to migrate a domain to the "same host". Migration streams go to
the destination's ``migration_address`` (127.0.0.3 for A, 127.0.0.2 for B): libvirt rejects
127.0.0.1 for ``migration_host``/``migration_address`` ("must not be the address of the local
machine"), but other loopback addresses pass that check.

Needs root, ``unshare`` (util-linux), ``libvirtd`` and ``qemu-system-x86_64``
(see ``scripts/install-libvirt.sh``).

A third, optional daemon, host C (:class:`SaslLibvirtHost`, 127.0.0.4:16511), demands SASL
(``auth_tcp = "sasl"``): its namespace also bind-mounts ``<root>/c/sasl2`` on ``/etc/sasl2``, holding
``libvirt.conf`` (``mech_list: digest-md5``) and a sasldb with one user made by ``saslpasswd2``.
DIGEST-MD5 because, without TLS, libvirt insists on a SASL security layer (SSF >= 56): SCRAM-SHA-256
and PLAIN have none, so libvirt offers no mechanism at all ("no SASL mechanisms are available").
Needs ``saslpasswd2`` (sasl2-bin) and the DIGEST-MD5 and sasldb plugins (libsasl2-modules{,-db}).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pki import ServerTls, TestCA

LIBVIRTD = "libvirtd"
REAPER = Path(__file__).with_name("reaper.py")
QEMU = "qemu-system-x86_64"
EMULATOR = "/usr/bin/qemu-system-x86_64"
# libvirt's QEMU capabilities cache survives across runs here (libvirt re-validates it against the
# QEMU binary, libvirt version, kernel and KVM state, so a stale copy only costs a re-probe).
# Saves the 4-8 s probe per daemon. Set DOMIG_LIBVIRT_CAPS_CACHE="" to disable.
DEFAULT_CAPS_CACHE = os.environ.get(
    "DOMIG_LIBVIRT_CAPS_CACHE", str(Path.home() / ".cache" / "domig" / "libvirt-qemu-capabilities")
)
MOUNTS: tuple[tuple[str, str], ...] = (
    ("etc", "/etc/libvirt"),
    ("run", "/run/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("cache", "/var/cache/libvirt"),
    ("log", "/var/log/libvirt"),
)


class HarnessError(RuntimeError):
    """The daemons could not be started (or stopped) as expected."""


@dataclass(frozen=True)
class HostSpec:
    """Static addressing of one fake hypervisor host."""

    name: str
    listen_address: str  # libvirt RPC (libvirtd.conf listen_addr)
    tcp_port: int  # libvirt RPC (libvirtd.conf tcp_port)
    migration_address: str  # where this host's QEMU listens for incoming migrations
    migration_port_min: int
    migration_port_max: int
    host_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    auth_tcp: str = "none"  # libvirtd.conf auth_tcp: "none" or "sasl"
    tls_port: int | None = None  # libvirt RPC over TLS (listen_tls, tls_port); None: no TLS listener

    @property
    def uri(self) -> str:
        """libvirt connection URI of this host's daemon."""
        return f"qemu+tcp://{self.listen_address}:{self.tcp_port}/system"

    @property
    def migrate_uri(self) -> str:
        """Value for ``VIR_MIGRATE_PARAM_URI`` when this host is the migration *destination*."""
        return f"tcp://{self.migration_address}"

    def tls_uri(self, pkipath: Path) -> str:
        """``qemu+tls://`` to this host's TLS listener, the client's certificates in ``pkipath``."""
        if self.tls_port is None:
            raise HarnessError(f"host {self.name} has no TLS listener")
        return f"qemu+tls://{self.listen_address}:{self.tls_port}/system?pkipath={pkipath}"


HOST_A = "a"
HOST_B = "b"
HOST_C = "c"


def default_specs() -> tuple[HostSpec, HostSpec]:
    """The two hosts: A on 127.0.0.1:16509 (TLS :16514), B on 127.0.0.2:16510 (TLS :16515); fresh host UUIDs."""
    return (
        HostSpec(HOST_A, "127.0.0.1", 16509, "127.0.0.3", 49152, 49183, tls_port=16514),
        HostSpec(HOST_B, "127.0.0.2", 16510, "127.0.0.2", 49184, 49215, tls_port=16515),
    )


def sasl_spec() -> HostSpec:
    """Host C: 127.0.0.4:16511, ``auth_tcp = "sasl"`` (fresh host UUID each call; no guests)."""
    return HostSpec(HOST_C, "127.0.0.4", 16511, "127.0.0.4", 49216, 49247, auth_tcp="sasl")


def missing_prerequisites() -> list[str]:
    """Human-readable reasons why the daemons cannot run here (empty when they can)."""
    missing: list[str] = []
    if os.geteuid() != 0:
        missing.append("must run as root (libvirtd system instance + mount namespaces)")
    for binary in (LIBVIRTD, QEMU, "unshare", "mount"):
        if _which(binary) is None:
            missing.append(f"{binary} not installed")
    try:
        import libvirt  # noqa: F401
        import libvirt_qemu  # noqa: F401
    except ImportError:
        missing.append("python module libvirt (pip install libvirt-python) not importable")
    if missing:
        missing.append("run scripts/install-libvirt.sh")
    return missing


def kvm_usable() -> bool:
    """True when /dev/kvm can be opened read-write and answers KVM_GET_API_VERSION (QEMU can use KVM)."""
    import fcntl

    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, 0xAE00) == 12  # KVM_GET_API_VERSION
    except OSError:
        return False
    finally:
        os.close(fd)


_SBIN_PATH = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/local/sbin:/usr/sbin:/sbin"


def _which(binary: str) -> str | None:
    return shutil.which(binary, path=_SBIN_PATH)


def _libvirtd_conf(spec: HostSpec, log_file: Path, tls: ServerTls | None = None) -> str:
    if tls is None or spec.tls_port is None:
        tls_lines = ["listen_tls = 0"]
    else:
        # The client must show a certificate signed by the CA (tls_no_verify_certificate = 0).
        tls_lines = [
            "listen_tls = 1",
            f'tls_port = "{spec.tls_port}"',
            'auth_tls = "none"',
            f'ca_file = "{tls.ca_file}"',
            f'cert_file = "{tls.cert_file}"',
            f'key_file = "{tls.key_file}"',
            "tls_no_verify_certificate = 0",
        ]
    return "\n".join(
        [
            "listen_tcp = 1",
            *tls_lines,
            f'listen_addr = "{spec.listen_address}"',
            f'tcp_port = "{spec.tcp_port}"',
            f'auth_tcp = "{spec.auth_tcp}"',
            'auth_unix_rw = "none"',
            'auth_unix_ro = "none"',
            f'host_uuid = "{spec.host_uuid}"',
            "log_level = 3",
            f'log_outputs = "3:file:{log_file}"',
            "keepalive_interval = 5",
            "keepalive_count = 5",
            "max_clients = 64",
            "",
        ]
    )


def _qemu_conf(spec: HostSpec, migrate_tls: Path | None = None) -> str:
    # The migration stream's own TLS (flag `tls`): QEMU's certificates, checked both ways.
    tls_lines = (
        [] if migrate_tls is None else [f'migrate_tls_x509_cert_dir = "{migrate_tls}"', "migrate_tls_x509_verify = 1"]
    )
    return "\n".join(
        [
            *tls_lines,
            'user = "root"',
            'group = "root"',
            "dynamic_ownership = 0",
            'security_driver = "none"',
            "cgroup_controllers = [ ]",
            "namespaces = [ ]",
            'stdio_handler = "file"',  # no virtlogd
            f'migration_address = "{spec.migration_address}"',
            f'migration_host = "{spec.migration_address}"',
            f"migration_port_min = {spec.migration_port_min}",
            f"migration_port_max = {spec.migration_port_max}",
            "",
        ]
    )


class LibvirtHost:
    """One libvirtd daemon in its own mount namespace."""

    # libvirt error codes that end wait_ready() at once: the daemon answered, retrying cannot help.
    fatal_error_codes: frozenset[int] = frozenset()

    def __init__(self, spec: HostSpec, root: Path) -> None:
        self.spec = spec
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._spawned_at = 0.0
        self.tls: ServerTls | None = None  # set before spawn() to open the TLS listener
        self.client_pki: Path | None = None  # a client's pkipath folder for tls_uri
        self.migrate_tls: Path | None = None  # QEMU's TLS folder for the migration stream (flag tls)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def uri(self) -> str:
        return self.spec.uri

    @property
    def migrate_uri(self) -> str:
        return self.spec.migrate_uri

    @property
    def host_uuid(self) -> str:
        return self.spec.host_uuid

    @property
    def tls_uri(self) -> str:
        """``qemu+tls://`` to this daemon with the harness's client certificate (see :mod:`.pki`)."""
        if self.tls is None or self.client_pki is None:
            raise HarnessError(f"host {self.name}: no TLS listener configured")
        return self.spec.tls_uri(self.client_pki)

    @property
    def config_file(self) -> Path:
        return self.root / "libvirtd.conf"

    @property
    def pid_file(self) -> Path:
        return self.root / "libvirtd.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "libvirtd.log"

    @property
    def stdio_file(self) -> Path:
        return self.root / "libvirtd.stdio.log"

    @property
    def mounts(self) -> tuple[tuple[str, str], ...]:
        """(per-host folder, mount point) pairs bind-mounted in this daemon's namespace."""
        return MOUNTS

    def qemu_log(self, domain_name: str) -> Path:
        """QEMU's own log for a domain on this host (from outside the namespace)."""
        return self.root / "log" / "qemu" / f"{domain_name}.log"

    # -- lifecycle -------------------------------------------------------------------------------

    def spawn(self) -> None:
        """Write the configuration and launch libvirtd (does not wait for it)."""
        if self.proc is not None:
            raise HarnessError(f"host {self.name}: already started")
        _ensure_port_free(self.spec.listen_address, self.spec.tcp_port, self.name)
        if self.tls is not None and self.spec.tls_port is not None:
            _ensure_port_free(self.spec.listen_address, self.spec.tls_port, self.name)
        self.root.mkdir(parents=True, exist_ok=True)
        for sub, target in self.mounts:
            (self.root / sub).mkdir(exist_ok=True)
            Path(target).mkdir(parents=True, exist_ok=True)  # mount point must exist outside too
        self.config_file.write_text(_libvirtd_conf(self.spec, self.log_file, self.tls))
        (self.root / "etc" / "qemu.conf").write_text(_qemu_conf(self.spec, self.migrate_tls))
        (self.root / "etc" / "libvirtd.conf").write_text(_libvirtd_conf(self.spec, self.log_file, self.tls))
        mounts = " && ".join(f"mount --bind {_q(self.root / sub)} {_q(target)}" for sub, target in self.mounts)
        # Under the reaper (reaper.py): the QEMUs libvirtd ends are reaped at once, not on PID 1's
        # next whole second, as a host's init would.
        script = (
            f"set -e; {mounts}; exec {_q(sys.executable)} {_q(REAPER)} {_q(_which(LIBVIRTD) or LIBVIRTD)} --listen"
            f" --config {_q(self.config_file)} --pid-file {_q(self.pid_file)}"
        )
        with open(self.stdio_file, "wb") as out:
            # unshare without --fork execs sh, which execs the reaper: proc.pid is the reaper's, in
            # libvirtd's mount namespace; signals sent to it reach libvirtd, and its end is libvirtd's.
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "LC_ALL": "C", "PATH": _SBIN_PATH},
            )
        self._spawned_at = time.monotonic()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll ``libvirt.open(uri)`` until the daemon answers; on failure raise with its log."""
        import libvirt

        if self.proc is None:
            raise HarnessError(f"host {self.name}: not started")
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise HarnessError(
                    f"host {self.name}: libvirtd exited with code {rc} during startup\n{self.diagnostics()}"
                )
            try:
                conn = self.open()
            except libvirt.libvirtError as exc:
                last_error = str(exc)
                if exc.get_error_code() in self.fatal_error_codes:
                    raise HarnessError(
                        f"host {self.name}: libvirtd on {self.uri} refused us: {last_error}\n{self.diagnostics()}"
                    ) from None
            else:
                try:
                    conn.getHostname()
                    self.startup_seconds = time.monotonic() - self._spawned_at
                    return
                except libvirt.libvirtError as exc:
                    last_error = str(exc)
                finally:
                    conn.close()
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"host {self.name}: libvirtd did not answer on {self.uri} within {timeout:.0f}s"
                    f" (last error: {last_error})\n{self.diagnostics()}"
                )
            time.sleep(0.1)

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    @property
    def caps_dir(self) -> Path:
        """libvirt's QEMU capabilities cache of this host (from outside the namespace)."""
        return self.root / "cache" / "qemu" / "capabilities"

    def warm_up(self) -> float:
        """Make libvirtd probe QEMU now (else the first domain start pays 4-8 s); return seconds."""
        started = time.monotonic()
        conn = self.open()
        try:
            conn.getCapabilities()  # probes every installed qemu-system-* binary (x86_64, i386)
            conn.getDomainCapabilities(EMULATOR, "x86_64", "pc", "qemu", 0)
        finally:
            conn.close()
        return time.monotonic() - started

    def open(self) -> Any:
        """A new read-write ``libvirt.virConnect`` to this host (caller closes it)."""
        import libvirt

        return libvirt.open(self.uri)

    def destroy_all_domains(self) -> list[str]:
        """Destroy every running domain and undefine every persistent one; return their names."""
        import libvirt

        names: list[str] = []
        if self.proc is None or self.proc.poll() is not None:
            return names
        try:
            conn = self.open()
        except libvirt.libvirtError:
            return names
        try:
            for dom in conn.listAllDomains(0):
                names.append(dom.name())
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isPersistent():
                        dom.undefineFlags(
                            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                            | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                        )
        finally:
            conn.close()
        return names

    def stop(self, timeout: float = 15.0) -> None:
        """Destroy all guests, terminate libvirtd, wait, and kill leftover QEMU processes."""
        self.destroy_all_domains()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._kill_leftover_qemu()

    def _kill_leftover_qemu(self) -> None:
        _kill_qemu_of(self.root)

    def diagnostics(self, max_chars: int = 6000) -> str:
        """Tail of the daemon's stdio and log files, for failure messages."""
        parts = []
        for path in (self.stdio_file, self.log_file):
            try:
                text = path.read_text(errors="replace")
            except OSError as exc:
                text = f"<unreadable: {exc}>"
            parts.append(f"--- {path} ---\n{text[-max_chars:]}")
        return "\n".join(parts)


class LibvirtHosts:
    """Two libvirtd daemons, A and B, for real live-migration tests.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``root`` defaults to a fresh
    temporary directory that is removed by :meth:`stop` (unless ``keep`` is true).
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        specs: Sequence[HostSpec] | None = None,
        startup_timeout: float = 30.0,
        keep: bool = False,
        caps_cache: Path | str | None = DEFAULT_CAPS_CACHE,
    ) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="domig-libvirt-")) if root is None else root
        self.keep = keep
        self.startup_timeout = startup_timeout
        specs = tuple(specs) if specs is not None else default_specs()
        if len(specs) != 2 or len({s.host_uuid for s in specs}) != 2:
            raise ValueError("need exactly two host specs with distinct host_uuid")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "owner.pid").write_text(f"{os.getpid()}\n")
        self.hosts: tuple[LibvirtHost, LibvirtHost] = (
            LibvirtHost(specs[0], self.root / specs[0].name),
            LibvirtHost(specs[1], self.root / specs[1].name),
        )
        self.caps_cache = Path(caps_cache) if caps_cache else None
        self.startup_seconds: float | None = None
        self.warm_up_seconds: float | None = None
        self.ca: TestCA | None = None
        self.client_pki: Path | None = None

    def make_pki(self) -> None:
        """A CA for this run, a server certificate per host (its listen address), one client's."""
        self.ca = TestCA(self.root / "pki" / "ca")
        self.client_pki = self.ca.client(self.root / "pki" / "client")
        for h in self.hosts:
            if h.spec.tls_port is None:
                continue
            h.tls = self.ca.server(
                self.root / h.name / "pki", f"host-{h.name}", (h.spec.listen_address,), (f"host-{h.name}",)
            )
            h.client_pki = self.client_pki
            addresses = tuple(dict.fromkeys((h.spec.listen_address, h.spec.migration_address)))
            h.migrate_tls = self.ca.qemu(self.root / h.name / "qemu-tls", f"qemu-{h.name}", addresses)

    @property
    def a(self) -> LibvirtHost:
        return self.hosts[0]

    @property
    def b(self) -> LibvirtHost:
        return self.hosts[1]

    @property
    def uris(self) -> tuple[str, str]:
        return (self.a.uri, self.b.uri)

    def __iter__(self) -> Iterator[LibvirtHost]:
        return iter(self.hosts)

    def host(self, name_or_uri: str) -> LibvirtHost:
        for h in self.hosts:
            if name_or_uri in (h.name, h.uri):
                return h
        raise KeyError(name_or_uri)

    def workdir(self, name: str) -> Path:
        """A scratch folder visible to both hosts' QEMU processes (disk images, memory dumps)."""
        path = self.root / "shared" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self) -> None:
        """Start both daemons, wait until they answer, and have them probe QEMU (in parallel)."""
        started = time.monotonic()
        reap_stale_daemons()
        try:
            self.make_pki()
            for h in self.hosts:
                self._seed_caps(h)
                h.spawn()
            for h in self.hosts:
                h.wait_ready(self.startup_timeout)
            self.startup_seconds = time.monotonic() - started
            with ThreadPoolExecutor(len(self.hosts)) as pool:
                list(pool.map(LibvirtHost.warm_up, self.hosts))
            self.warm_up_seconds = time.monotonic() - started - self.startup_seconds
            self._save_caps(self.a)
        except BaseException:
            self.stop()
            raise

    def _seed_caps(self, host: LibvirtHost) -> None:
        if self.caps_cache is None or not self.caps_cache.is_dir():
            return
        host.caps_dir.mkdir(parents=True, exist_ok=True)
        for xml in self.caps_cache.glob("*.xml"):
            shutil.copy2(xml, host.caps_dir / xml.name)

    def _save_caps(self, host: LibvirtHost) -> None:
        if self.caps_cache is None:
            return
        with contextlib.suppress(OSError):
            self.caps_cache.mkdir(parents=True, exist_ok=True)
            for xml in host.caps_dir.glob("*.xml"):
                shutil.copy2(xml, self.caps_cache / xml.name)

    def stop(self) -> None:
        for h in self.hosts:  # destroy guests on both before stopping any daemon
            with contextlib.suppress(Exception):
                h.destroy_all_domains()
        errors: list[BaseException] = []
        for h in self.hosts:
            try:
                h.stop()
            except Exception as exc:
                errors.append(exc)
        if self._own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise HarnessError(f"stopping libvirtd failed: {errors!r}")

    def __enter__(self) -> LibvirtHosts:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


SASL_MECH = "DIGEST-MD5"
SASL_USER = "domig"
SASL_TARGET = "/etc/sasl2"  # where libvirtd's Cyrus SASL looks for libvirt.conf (bind-mounted)
SASL_PLUGIN_DIRS = ("/usr/lib/*/sasl2", "/usr/lib/sasl2", "/usr/lib64/sasl2")


def missing_sasl_prerequisites() -> list[str]:
    """Why the SASL daemon (host C) cannot run here: the daemons' prerequisites plus Cyrus SASL's."""
    missing = [m for m in missing_prerequisites() if not m.startswith("run ")]
    if _which("saslpasswd2") is None:
        missing.append("saslpasswd2 not installed (sasl2-bin)")
    for plugin, package in (("libdigestmd5.so", "libsasl2-modules"), ("libsasldb.so", "libsasl2-modules-db")):
        if not any(glob.glob(f"{folder}/{plugin}*") for folder in SASL_PLUGIN_DIRS):
            missing.append(f"SASL plugin {plugin} not installed ({package})")
    if missing:
        missing.append("run scripts/install-libvirt.sh")
    return missing


def sasl_auth(username: str | None, password: str | None) -> list[Any]:
    """An ``openAuth`` auth argument that answers libvirt's SASL prompts with these credentials."""
    import libvirt

    def answer(requested: list[list[Any]], _opaque: Any) -> int:
        for cred in requested:
            if cred[0] == libvirt.VIR_CRED_AUTHNAME and username is not None:
                cred[4] = username
            elif cred[0] == libvirt.VIR_CRED_PASSPHRASE and password is not None:
                cred[4] = password
            else:
                return -1
        return 0

    return [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], answer, None]


class SaslLibvirtHost(LibvirtHost):
    """Host C: one libvirtd that demands SASL (DIGEST-MD5) on TCP, with one user in its sasldb.

    ``root`` defaults to a fresh ``domig-libvirt-sasl-*`` temporary directory (the daemon's folder
    is ``<root>/c``), removed by :meth:`stop` unless ``keep``; :func:`reap_stale_daemons` finds it
    like the A/B daemons' folders. The password is random per instance unless given. QEMU
    capabilities are seeded from ``caps_cache`` (read only), else its first ``getVersion()`` probes
    QEMU for ~8 s. No guests and no migrations: the migration ports are only nominal.
    """

    fatal_error_codes = frozenset({45})  # VIR_ERR_AUTH_FAILED: our own user was refused

    def __init__(
        self,
        root: Path | None = None,
        *,
        spec: HostSpec | None = None,
        username: str = SASL_USER,
        password: str | None = None,
        mech: str = SASL_MECH,
        keep: bool = False,
        caps_cache: Path | str | None = DEFAULT_CAPS_CACHE,
    ) -> None:
        spec = spec if spec is not None else sasl_spec()
        if spec.auth_tcp != "sasl":
            raise ValueError("a SASL host needs a spec with auth_tcp='sasl'")
        self._own_root = root is None
        self.base = Path(tempfile.mkdtemp(prefix="domig-libvirt-sasl-")) if root is None else root
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "owner.pid").write_text(f"{os.getpid()}\n")
        super().__init__(spec, self.base / spec.name)
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.mech = mech
        self.keep = keep
        self.caps_cache = Path(caps_cache) if caps_cache else None

    def __repr__(self) -> str:
        return f"SaslLibvirtHost(name={self.name!r}, uri={self.uri!r}, username={self.username!r}, mech={self.mech!r})"

    @property
    def credentials(self) -> dict[str, str]:
        """The Secret data that logs in: ``{"username": ..., "password": ...}``."""
        return {"username": self.username, "password": self.password}

    @property
    def sasl_dir(self) -> Path:
        return self.root / "sasl2"

    @property
    def sasl_config_file(self) -> Path:
        return self.sasl_dir / "libvirt.conf"

    @property
    def sasldb(self) -> Path:
        return self.sasl_dir / "libvirt.sasldb"

    @property
    def mounts(self) -> tuple[tuple[str, str], ...]:
        return (*MOUNTS, ("sasl2", SASL_TARGET))

    def write_sasl_config(self) -> None:
        """``libvirt.conf`` (as seen at /etc/sasl2 inside the namespace) and a sasldb holding our user."""
        self.sasl_dir.mkdir(parents=True, exist_ok=True)
        self.sasl_config_file.write_text(
            f"mech_list: {self.mech.lower()}\nsasldb_path: {SASL_TARGET}/{self.sasldb.name}\n"
        )
        self.sasldb.unlink(missing_ok=True)
        # -p: the password comes from stdin (never on a command line); -a libvirt: the application
        # name libvirtd passes to sasl_server_init; the realm defaults to the hostname, as libvirtd's.
        saslpasswd2 = _which("saslpasswd2") or "saslpasswd2"
        done = subprocess.run(
            [saslpasswd2, "-a", "libvirt", "-f", str(self.sasldb), "-c", "-p", self.username],
            input=self.password.encode(),
            capture_output=True,
            timeout=30,
            env={**os.environ, "LC_ALL": "C"},
        )
        if done.returncode != 0 or not self.sasldb.exists():
            raise HarnessError(
                f"host {self.name}: saslpasswd2 failed with code {done.returncode}:"
                f" {done.stderr.decode(errors='replace').strip()}"
            )

    def spawn(self) -> None:
        if self.proc is not None:
            raise HarnessError(f"host {self.name}: already started")
        self.write_sasl_config()
        if self.caps_cache is not None and self.caps_cache.is_dir():
            # A/B's saved QEMU capabilities: without them the first getVersion() probes QEMU (~8 s).
            self.caps_dir.mkdir(parents=True, exist_ok=True)
            for xml in self.caps_cache.glob("*.xml"):
                shutil.copy2(xml, self.caps_dir / xml.name)
        super().spawn()

    def open(self) -> Any:
        """A new read-write ``virConnect``, logged in over SASL as our user (caller closes it)."""
        import libvirt

        return libvirt.openAuth(self.uri, sasl_auth(self.username, self.password), 0)

    def start(self, timeout: float = 30.0) -> None:
        reap_stale_daemons()
        try:
            super().start(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0) -> None:
        try:
            super().stop(timeout)
        finally:
            if self._own_root and not self.keep:
                shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> SaslLibvirtHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_qemu_of(host_root: Path) -> None:
    """Kill QEMU processes whose pid files live in a host folder's run/qemu (its /run/libvirt/qemu)."""
    for pid_file in (host_root / "run" / "qemu").glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().strip())
            if b"qemu" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def reap_stale_daemons(tmp: Path | None = None) -> list[int]:
    """Kill libvirtd daemons (and their QEMUs) left behind by an earlier harness run that died.

    Only processes that this harness started are touched, and only when the Python process that
    started them (``<root>/owner.pid``) is gone: a pid from a
    ``<tmp>/domig-libvirt-*/<host>/libvirtd.pid`` file whose command line names that folder's
    ``libvirtd.conf``. Returns the killed libvirtd pids.
    """
    killed: list[int] = []
    stale_roots: set[Path] = set()
    base = Path(tmp) if tmp is not None else Path(tempfile.gettempdir())
    for pid_file in base.glob("domig-libvirt-*/*/libvirtd.pid"):
        host_root = pid_file.parent
        if _owner_alive(host_root.parent):
            continue
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if str(host_root / "libvirtd.conf").encode() in cmdline and any(b"libvirtd" in c for c in cmdline):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                stale_roots.add(host_root.parent)
        _kill_qemu_of(host_root)
    if killed:
        time.sleep(0.5)  # let the kernel release the listening sockets
        for root in stale_roots:
            shutil.rmtree(root, ignore_errors=True)
    return killed


def _owner_alive(root: Path) -> bool:
    try:
        owner = int((root / "owner.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    if owner == os.getpid():
        return True
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _q(value: object) -> str:
    import shlex

    return shlex.quote(str(value))


def _ensure_port_free(address: str, port: int, name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as exc:
            raise HarnessError(
                f"host {name}: {address}:{port} is already in use ({exc}); a libvirtd from an"
                " earlier run may still be alive (look for it with `ss -ltnp`)"
            ) from exc
