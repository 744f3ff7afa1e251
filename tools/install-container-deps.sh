#!/usr/bin/env bash
# Installs and configures what the container targets need on a fresh Debian 12 machine
# (make images / compose-up / container-test / validate-deploy call it); idempotent.
#  - apt: podman (with buildah, runc and podman-compose), mmdebstrap, and Docker Engine with
#    docker-compose 1.29 (docker.io, docker-compose: validating compose.yaml, and the container
#    test's docker stage, which runs a daemon of its own and stops it)
#  - /etc/containers/containers.conf.d/fabrikam.conf: runc and ulimits this kind of machine
#    accepts (../shared/CONTAINERS.md: crun refuses its cgroup layout, and podman's default
#    nofile/nproc limits are above the hard limits here)
#  - the base image debian:bookworm-slim, made from Debian's packages with mmdebstrap when no
#    image of that name exists locally (no registry here). A machine that can pull it never
#    runs that step.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

# catatonit: the init process behind `--init` (compose `init: true`); podman only recommends it.
apt_packages=(podman buildah runc podman-compose uidmap mmdebstrap docker.io docker-compose catatonit)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "apt: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A drop-in, so a machine's own containers.conf is left as it is.
conf_dir=/etc/containers/containers.conf.d
conf="$conf_dir/fabrikam.conf"
wanted='# Written by tools/install-container-deps.sh (see ../shared/CONTAINERS.md).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'
if [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then
  $sudo_cmd mkdir -p "$conf_dir"
  echo "$wanted" | $sudo_cmd tee "$conf" >/dev/null
  echo "podman: wrote $conf"
fi

base=docker.io/library/debian:bookworm-slim
if ! podman image exists "$base"; then
  echo "podman: no $base here and no registry; making it from Debian's packages (mmdebstrap)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  sources=/etc/apt/sources.list.d/debian.sources
  [ -f "$sources" ] || sources=/etc/apt/sources.list
  # The merged-usr hook keeps usrmerge (and perl) out: about 78 MB instead of 126 MB.
  mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --aptopt='APT::Install-Recommends "false"' \
    bookworm "$work/base.tar" "$sources" >"$work/mmdebstrap.log" 2>&1 \
    || { tail -30 "$work/mmdebstrap.log"; echo "mmdebstrap failed"; exit 1; }
  podman import --quiet --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$work/base.tar" "$base" >/dev/null
  echo "podman: $base imported"
fi
