#!/usr/bin/env bash
# Build the pipeline's image from containers/Dockerfile, the way CI does (containers/README.md).
#
#   bash scripts/build-image.sh [TAG]     # default TAG: params.container in nextflow.config
#
# Sets up what is missing first, and skips what is there:
#   1. a Docker engine: when none answers and this is root, Debian's docker.io is installed
#      and dockerd started (overlay2; its log: /var/log/pertcontrast-dockerd.log);
#   2. the base image BASE_IMAGE (default debian:bookworm-slim): used when present, pulled
#      when a registry answers, else (for debian:bookworm*) made from Debian's packages with
#      debootstrap and loaded with docker import, as pertcontrast-base:bookworm;
#   3. the image, with BuildKit (wheels cached between builds, see the Dockerfile).
# Environment: BASE_IMAGE; DEBIAN_MIRROR (debootstrap's, default http://deb.debian.org/debian);
# PIP_CERT, the CA bundle pip inside the build trusts (default: SSL_CERT_FILE, else the host's
# /etc/ssl/certs/ca-certificates.crt; passed as a build secret, not kept in the image).
# Prints the image tag as its last line.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${1:-$(sed -n "s/^ *container *= *'\([^']*\)'.*/\1/p" "$root/nextflow.config" | head -n 1)}"
base="${BASE_IMAGE:-debian:bookworm-slim}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
local_base="pertcontrast-base:bookworm"
engine_log="/var/log/pertcontrast-dockerd.log"

say() { echo "build-image: $*" >&2; }
die() { say "$*"; exit 1; }

[[ -n "$tag" ]] || die "no image tag given and none found in nextflow.config (params.container)."

is_root() { [[ "$(id -u)" -eq 0 ]]; }

apt_install() {
    is_root || die "$* missing and this is not root: install it (apt-get install $*)."
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null
}

engine_answers() { docker info >/dev/null 2>&1; }

start_engine() {
    if command -v docker >/dev/null 2>&1 && engine_answers; then
        return 0
    fi
    is_root || die "no Docker engine answers: start Docker (e.g. sudo systemctl start docker) or join the docker group."
    command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 || apt_install docker.io
    # One engine only, also when two builds start at once: the second waits for the first's.
    exec 9>/run/pertcontrast-dockerd.lock
    flock 9
    if ! engine_answers && ! pidof dockerd >/dev/null 2>&1; then
        say "starting dockerd (log: $engine_log)"
        setsid nohup dockerd --storage-driver overlay2 >>"$engine_log" 2>&1 </dev/null &
    fi
    local waited=0
    until engine_answers; do
        ((waited < 120)) || die "dockerd did not answer within 120 s; see $engine_log"
        sleep 1
        waited=$((waited + 1))
    done
    exec 9>&-
}

debootstrap_base() {
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    local rootfs
    rootfs="$(mktemp -d /var/tmp/pertcontrast-rootfs.XXXXXX)"
    say "making $local_base with debootstrap from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
        || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed (full log: $rootfs.log)"; }
    rm -f "$rootfs.log"
    # The same sources as the public image: the release, its updates and security fixes.
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
    tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$local_base" >/dev/null
    rm -rf "$rootfs"
}

resolve_base() {
    if docker image inspect "$base" >/dev/null 2>&1; then
        echo "$base"
    elif docker pull -q "$base" >/dev/null 2>&1; then
        echo "$base"
    elif [[ "$base" == debian:bookworm* ]]; then
        say "$base cannot be pulled (no registry answers)"
        docker image inspect "$local_base" >/dev/null 2>&1 || debootstrap_base
        echo "$local_base"
    else
        die "base image $base is neither present nor can it be pulled."
    fi
}

# BuildKit: through the buildx plugin, or a client older than 23 (Debian's docker.io 20.10)
# that builds with it itself; newer clients without buildx cannot.
buildkit_build() {
    if docker buildx version >/dev/null 2>&1; then
        docker buildx build --load "$@"
        return
    fi
    local client
    for client in docker /usr/bin/docker; do
        if command -v "$client" >/dev/null 2>&1 \
            && [[ "$("$client" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)" -lt 23 ]]; then
            DOCKER_BUILDKIT=1 "$client" build "$@"
            return
        fi
    done
    die "this Docker client needs the buildx plugin for BuildKit (e.g. apt-get install docker-buildx-plugin)."
}

start_engine
image_base="$(resolve_base)"
args=(-f "$root/containers/Dockerfile" --build-arg "BASE_IMAGE=$image_base" --network host -t "$tag")
# The host's trust store, so pip works where the host's does (e.g. behind a TLS-inspecting proxy).
cert="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
if [[ -s "$cert" ]]; then
    args+=(--secret "id=pip_cert,src=$cert")
fi
say "building $tag on $image_base"
previous="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
buildkit_build "${args[@]}" "$root" </dev/null >&2
# The image this build replaced (its large layers are shared unless the lock changed).
if [[ -n "$previous" && "$previous" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]] \
    && [[ "$(docker image inspect -f '{{len .RepoTags}}' "$previous" 2>/dev/null)" == 0 ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
size="$(docker image inspect -f '{{.Size}}' "$tag")"
say "$tag: $((size / 1000000)) MB"
echo "$tag"
