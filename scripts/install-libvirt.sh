#!/usr/bin/env bash
# Install a real libvirt + QEMU stack for the `libvirt`-marked tests (tests/libvirt).
#
# Idempotent; meant for CI on a fresh Debian 12 machine (run as root) and for developers.
# Usage: scripts/install-libvirt.sh [VENV]   (VENV defaults to .venv)
#
# Deliberately does NOT install libvirt-daemon-system (it pulls in systemd); the tests start
# their own libvirtd daemons via tests/harness/libvirtd.py.
set -euo pipefail

VENV="${1:-.venv}"
PACKAGES=(
    libvirt-daemon
    libvirt-daemon-driver-qemu
    libvirt-clients
    libvirt-dev
    qemu-system-x86
    # qemu-img: the storage migration's local qcow2 disks (tests/libvirt/test_storage.py)
    qemu-utils
    binutils
    pkg-config
    gcc
    python3-dev
    # SASL for the auth_tcp = "sasl" daemon (host C, tests/libvirt/test_sasl.py): saslpasswd2
    # creates its sasldb; libsasl2-modules brings the SCRAM/DIGEST-MD5 mechanisms, -db the sasldb plugin.
    sasl2-bin
    libsasl2-modules
    libsasl2-modules-db
    # qemu+ssh:// (tests/libvirt/test_transports.py): the tests run their own sshd per host, on
    # their own ports and config; the package's service is never started (see policy-rc.d below).
    openssh-server
)

log() { echo "install-libvirt: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
else
    SUDO=
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Packages with a service (openssh-server) must not start it: without a policy-rc.d of the
    # machine's own, one that forbids starting services is in place for the install only.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    # Update the package lists only if they are absent (fresh machine) or if the install fails.
    if ! compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null; then
        $SUDO apt-get update -qq || die "apt-get update failed"
    fi
    if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/install-libvirt-apt.log 2>&1; then
        log "apt-get install failed once; updating package lists and retrying"
        $SUDO apt-get update -qq || die "apt-get update failed"
        $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/install-libvirt-apt.log 2>&1 \
            || { cat /tmp/install-libvirt-apt.log >&2; die "apt-get install failed"; }
    fi
fi

for bin in libvirtd qemu-system-x86_64 as ld objcopy unshare saslpasswd2 qemu-img sshd ssh-keygen nsenter virt-ssh-helper; do
    command -v "$bin" >/dev/null || [[ -x "/usr/sbin/$bin" ]] || die "$bin not found after install"
done

if ! getent passwd libvirt-qemu >/dev/null; then
    log "creating system user libvirt-qemu"
    getent group libvirt-qemu >/dev/null || $SUDO groupadd --system libvirt-qemu
    $SUDO useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin \
        -g libvirt-qemu libvirt-qemu || die "useradd libvirt-qemu failed"
fi

PY="$VENV/bin/python"
[[ -x "$PY" ]] || die "no python in venv '$VENV' ($PY)"
if ! "$PY" -c "import libvirt, libvirt_qemu" 2>/dev/null; then
    log "pip install libvirt-python into $VENV"
    "$PY" -m pip install -q --disable-pip-version-check "libvirt-python>=9" \
        || die "pip install libvirt-python failed"
fi
"$PY" -c "import libvirt, libvirt_qemu" || die "libvirt-python does not import"
log "ok: $(libvirtd --version 2>/dev/null || /usr/sbin/libvirtd --version), $(qemu-system-x86_64 --version | head -1)"
