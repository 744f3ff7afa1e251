#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian 12 machine (`make deps`); idempotent.
#  - apt: C libraries and tools the build, the code generator and the tests use
#  - .venv: Python packages the independent cross-checks use (Google's protobuf runtime)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

apt_packages=(
  pkg-config zlib1g-dev
  libnghttp2-dev nghttp2-client        # HTTP/2 library; h2load for the RPC benchmark
  libprotobuf-c-dev protobuf-c-compiler # protobuf-c runtime and protoc-c
  protobuf-compiler libprotoc-dev libprotobuf-dev  # protoc and the well-known .proto files
  libjansson-dev                        # Benchmarks/ only: a JSON parser the scanner is measured against
  libjemalloc-dev                       # the allocator every server process links (see Package.swift)
  libsqlite3-dev sqlite3                # the services' embedded stores and broker (system SQLite)
  nats-server libnats-dev               # the scaled messaging engine (JetStream) and its C client; tests start their own server
  postgresql-15 libpq-dev               # the PostgreSQL store engine (libpq) and the server its tests start (tools/with-postgres.sh)
  curl chromium                         # gateway tests: an independent HTTP client; the tracking page in headless Chromium
  python3-venv
  tmux                                  # dronectl tests: a terminal session driven with send-keys for its streams
  zsh fish                              # dronectl tests: its zsh and fish completion scripts run in the real shells
  prometheus                            # metrics tests: promtool checks the exposition, the server scrapes a service
  openssl                               # tools/make-certs.sh: the local CA and certificates for TLS (and the TLS tests)
  iproute2 bc                           # make run-scaled / scaled-test: network namespaces and veths (ip), the script's timing (bc)
)

missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "apt: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # No daemon may start while installing (prometheus's package would start one on every
  # address): policy-rc.d refuses every start for the length of the install.
  added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee /usr/sbin/policy-rc.d >/dev/null
    $sudo_cmd chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
  if [ -n "$added_policy" ]; then $sudo_cmd rm -f /usr/sbin/policy-rc.d; fi
fi

# Python packages, pinned in tools/requirements.txt, into a virtualenv under the repo.
venv="$root/.venv"
stamp="$venv/.requirements.stamp"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || ! cmp -s "$root/tools/requirements.txt" "$stamp"; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tools/requirements.txt"
  cp "$root/tools/requirements.txt" "$stamp"
fi
