#!/usr/bin/env bash
# Build the operator image from the Dockerfile, unchanged, with podman, on a machine that reaches no
# container registry: the Dockerfile's FROM image is replaced by a stand-in made here from Debian's
# own packages (scripts/image/python-standin.Containerfile over a debootstrap'd bookworm).
#   bash scripts/build-image.sh [TAG]     root; TAG defaults to localhost/domig:test
# The debootstrap'd root is cached in $DOMIG_IMAGE_CACHE (/var/cache/domig-image), podman's images
# in its own storage; a machine without either makes them (about 3 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-localhost/domig:test}
CACHE=${DOMIG_IMAGE_CACHE:-/var/cache/domig-image}
PODMAN=scripts/image/podman
SUITE=bookworm
FROM_IMAGE=$(awk '$1 == "FROM" { print $2; exit }' Dockerfile)
# The cached root file system, as a tarball and as a podman image; a new recipe needs a new name.
ROOTFS=$SUITE-minbase-slim-$(dpkg --print-architecture)
ROOTFS_IMAGE=localhost/domig-rootfs:$ROOTFS
# localhost/ is where podman looks first for a short name, so the FROM line finds the stand-in there.
STANDIN=localhost/$FROM_IMAGE

say() { printf 'build-image: %s\n' "$*" >&2; }
elapsed() { echo "$((SECONDS - $1)) s"; }

install_tools() {
    local missing=()
    for tool in podman buildah runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman buildah runc debootstrap >/dev/null
}

# The Debian mirrors this machine's apt uses ("URI suite" lines), for debootstrap and the stand-in.
debian_sources() {
    local query=(indextargets --format '$(REPO_URI) $(CODENAME)' 'Created-By: Packages' 'Origin: Debian')
    # Origin and codename come from the Release files: without apt's lists there are none.
    apt-get "${query[@]}" | grep -q . || apt-get update -qq
    apt-get "${query[@]}" | awk -v suite="$SUITE" '$2 ~ "^" suite "(-|$)"' | sort -u
}

# What debian:bookworm-slim is (debuerreotype --slim): no docs, manuals or locales, now or from
# packages installed later, and apt keeps no caches.
slim() {
    local root=$1
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/locale/*' \
        >"$root/etc/dpkg/dpkg.cfg.d/docker"
    printf '%s\n' 'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' >"$root/etc/apt/apt.conf.d/docker-clean"
    printf '%s\n' 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    printf '%s\n' 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,groff,lintian,linda,locale}/* \
        "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
}

make_rootfs_image() {
    "$PODMAN" image exists "$ROOTFS_IMAGE" && return
    local tarball=$CACHE/$ROOTFS.tar
    if [ ! -s "$tarball" ]; then
        local mirror root start=$SECONDS
        mirror=$(debian_sources | awk -v suite="$SUITE" '$2 == suite { print $1; exit }')
        [ -n "$mirror" ] || { say "apt has no Debian $SUITE source to debootstrap from"; exit 1; }
        root=$(mktemp -d "$CACHE/root.XXXXXX")
        say "debootstrap --variant=minbase $SUITE from $mirror"
        debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap.log" >&2; rm -rf "$root"; exit 1; }
        debian_sources | awk '{ print "deb " $1 " " $2 " main" }' >"$root/etc/apt/sources.list"
        slim "$root"
        tar -C "$root" --numeric-owner -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
        rm -rf "$root"
        say "root file system cached in $tarball ($(elapsed "$start"))"
    fi
    "$PODMAN" import --quiet "$tarball" "$ROOTFS_IMAGE" >/dev/null
}

# What this machine's pip and apt trust and where its pip looks, for a build to bind-mount over the
# base's own: its CA directory (with the bundle pip names, if another) at /etc/ssl/certs, and a
# pip.conf at /etc/pip.conf. Both paths exist in the stand-in, so no mount point is left in a layer.
write_trust() {
    local dir=$1
    cp -rL /etc/ssl/certs "$dir/certs"  # dereferenced: the hash links point into the host's /usr/share
    python3 - "$dir" <<'PY'
import re, shlex, subprocess, sys
from pathlib import Path

out = Path(sys.argv[1])
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
settings: dict[str, str] = {}
for line in listed.stdout.splitlines():  # global.cert='...', :env:.cert='...'; the environment wins
    key, _, value = line.partition("=")
    scope, _, name = key.rpartition(".")
    if scope == ":env:" or name not in settings:
        settings[name] = " ".join(shlex.split(value))
bundle = out / "certs" / "ca-certificates.crt"
cert = Path(settings.get("cert") or bundle)
if cert.resolve() != Path("/etc/ssl/certs/ca-certificates.crt").resolve():
    bundle.write_bytes(bundle.read_bytes() + b"\n" + cert.read_bytes())
conf = ["[global]", "cert = /etc/ssl/certs/ca-certificates.crt"]
for name in ("index-url", "extra-index-url", "trusted-host", "proxy", "timeout", "default-timeout", "retries"):
    # A file:// index or find-links lies on this machine's disk, not in the build: left out.
    values = [v for v in settings.get(name, "").split() if "index-url" not in name or re.match(r"https?://", v)]
    if values:
        conf.append(f"{name} = {' '.join(values)}")
(out / "pip.conf").write_text("\n".join(conf) + "\n")
PY
}

build() {  # build ARGS...: nothing pulled, the host's network (and so its proxy), cached layers
    "$PODMAN" build --pull=never --network host --layers "$@"
}

main() {
    [ "$(id -u)" -eq 0 ] || { say "run as root (apt, debootstrap and podman's storage)"; exit 1; }
    local start=$SECONDS
    mkdir -p "$CACHE"
    install_tools
    TRUST=$(mktemp -d)
    trap 'rm -rf "$TRUST"' EXIT
    write_trust "$TRUST"
    make_rootfs_image
    say "stand-in $STANDIN for $FROM_IMAGE"
    # Its apt needs no CA of ours while apt's Debian mirror is plain HTTP (packages are checked by their
    # signatures); mounting /etc/ssl/certs here would stop ca-certificates installing.
    build --build-arg "ROOTFS=$ROOTFS_IMAGE" -t "$STANDIN" \
        -f scripts/image/python-standin.Containerfile scripts/image >"$CACHE/standin.log" 2>&1 \
        || { tail -40 "$CACHE/standin.log" >&2; exit 1; }
    local image_start=$SECONDS
    say "building $TAG from Dockerfile"
    build -v "$TRUST/certs:/etc/ssl/certs:ro" -v "$TRUST/pip.conf:/etc/pip.conf:ro" \
        -t "$TAG" -f Dockerfile . >"$CACHE/build.log" 2>&1 || { tail -40 "$CACHE/build.log" >&2; exit 1; }
    local size base
    size=$("$PODMAN" image inspect --format '{{.Size}}' "$TAG")
    base=$("$PODMAN" image inspect --format '{{.Size}}' "$STANDIN")
    say "$TAG: $((size / 1000000)) MB ($(((size - base) / 1000000)) MB over the $((base / 1000000)) MB stand-in base);" \
        "Dockerfile $(elapsed "$image_start"), all $(elapsed "$start")"
}

main
