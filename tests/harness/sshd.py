"""An OpenSSH server per harness host, for libvirt's ``qemu+ssh://`` transport.

libvirt's ssh transport runs ``ssh`` and, on the far side, ``virt-ssh-helper qemu:///system``
(or ``nc -U <socket>``), which speaks to the daemon over its UNIX socket. Each harness daemon
keeps its socket in its own mount namespace (``/run/libvirt`` there is ``<root>/<host>/run``), so
each host's sshd runs *inside that namespace* (``nsenter --mount``): whatever the login runs sees
that host's ``/run/libvirt/libvirt-sock``, as a login on a real hypervisor host would. No
``socket=`` parameter is needed, and ``virt-ssh-helper`` finds the daemon by libvirt's own rules.

Everything is made per run and nothing global changes: a host key per server, a known_hosts
naming those keys, one user key (``keyfile=``), sshd's own config, pid file and port on the host's
loopback address. libvirt passes ssh no known_hosts option (only its libssh transports have
one), so the URI's ``command=`` names a two-line wrapper running the real ``ssh`` with
``UserKnownHostsFile`` set to ours and ``StrictHostKeyChecking=yes``: the server's key is checked,
not skipped (``no_verify=1`` would skip it and write root's ~/.ssh/known_hosts).

Needs root, ``sshd`` (openssh-server), ``ssh-keygen``, ``nsenter`` (util-linux).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .libvirtd import HarnessError, LibvirtHost, _ensure_port_free, _which

SSHD = "sshd"
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without its privilege-separation folder


def missing_ssh_prerequisites() -> list[str]:
    missing = [f"{b} not installed" for b in (SSHD, "ssh", "ssh-keygen", "nsenter") if _which(b) is None]
    if missing:
        missing.append("run scripts/install-libvirt.sh (openssh-server)")
    return missing


def _keygen(path: Path, comment: str) -> str:
    """An ed25519 key pair at ``path`` (+ ``.pub``); returns the public key line."""
    path.unlink(missing_ok=True)
    subprocess.run(
        [_which("ssh-keygen") or "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


@dataclass
class SshServer:
    """One sshd in a harness host's mount namespace, on ``address:port``, letting in one user key."""

    host: LibvirtHost
    address: str
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    host_key_line: str = ""

    @property
    def config_file(self) -> Path:
        return self.folder / "sshd_config"

    @property
    def log_file(self) -> Path:
        return self.folder / "sshd.log"

    def start(self, authorized_keys: Path, timeout: float = 15.0) -> None:
        daemon = self.host.proc
        if daemon is None or daemon.poll() is not None:
            raise HarnessError(f"host {self.host.name}: libvirtd is not running; no namespace to enter")
        _ensure_port_free(self.address, self.port, f"{self.host.name} (sshd)")
        self.folder.mkdir(parents=True, exist_ok=True)
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        host_key = self.folder / "ssh_host_ed25519_key"
        self.host_key_line = _keygen(host_key, f"host-{self.host.name}")
        self.config_file.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:{self.port}",
                    f"HostKey {host_key}",
                    f"PidFile {self.folder / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized_keys}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",  # the files live in a temporary folder, not in ~root/.ssh
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        sshd = _which(SSHD) or f"/usr/sbin/{SSHD}"
        with open(self.log_file, "wb") as out:
            # -D: stay in the foreground (our child); -e: log to stderr (our log file).
            self.proc = subprocess.Popen(
                ["nsenter", f"--mount=/proc/{daemon.pid}/ns/mnt", sshd, "-D", "-e", "-f", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log_file.read_text(errors="replace")[-3000:]
                self.stop()
                raise HarnessError(
                    f"sshd for host {self.host.name} did not start on {self.address}:{self.port}:\n{log}"
                )
            time.sleep(0.05)

    def _listening(self) -> bool:
        import socket

        with socket.socket() as s, contextlib.suppress(OSError):
            s.settimeout(0.5)
            s.connect((self.address, self.port))
            return True
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class SshAccess:
    """sshd on each harness host, a user key they accept, and ``qemu+ssh://`` URIs that use it."""

    def __init__(self, hosts: list[tuple[LibvirtHost, str, int]], folder: Path) -> None:
        self.folder = folder
        self.servers = [SshServer(h, address, port, folder / h.name) for h, address, port in hosts]
        self.key = folder / "id_ed25519"
        self.known_hosts = folder / "known_hosts"
        self.wrapper = folder / "ssh"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        authorized = self.folder / "authorized_keys"
        authorized.write_text(_keygen(self.key, "domig-tests") + "\n")
        try:
            for server in self.servers:
                server.start(authorized)
        except BaseException:
            self.stop()
            raise
        self.known_hosts.write_text(
            "".join(f"[{s.address}]:{s.port} {' '.join(s.host_key_line.split()[:2])}\n" for s in self.servers)
        )
        ssh = _which("ssh") or "ssh"
        self.wrapper.write_text(
            "#!/bin/sh\n# The real ssh, checking the servers' keys against this run's known_hosts.\n"
            f'exec {ssh} -o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes "$@"\n'
        )
        self.wrapper.chmod(0o755)

    def uri(self, host: LibvirtHost) -> str:
        server = next(s for s in self.servers if s.host is host)
        return (
            f"qemu+ssh://root@{server.address}:{server.port}/system?keyfile={self.key}&command={self.wrapper}&no_tty=1"
        )

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def diagnostics(self) -> str:
        return "\n".join(
            f"--- {s.log_file} ---\n{s.log_file.read_text(errors='replace')[-3000:]}"
            for s in self.servers
            if s.log_file.exists()
        )
