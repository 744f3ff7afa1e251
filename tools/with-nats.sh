#!/usr/bin/env bash
# tools/with-nats.sh CMD...: runs CMD with a NATS server (JetStream on) of its own.
#
# Starts nats-server (Debian's, `make deps`) with JetStream on a temporary store directory, on
# 127.0.0.1 and a free port, requiring a user and password as a production server does (user
# fabrikam, a random password written to a file, as a mounted Secret holds it); exports
# FABRIKAM_TEST_NATS_URL=nats://127.0.0.1:PORT, FABRIKAM_TEST_NATS_USER and
# FABRIKAM_TEST_NATS_PASSWORD_FILE (services take them as FABRIKAM_BROKER_USER and
# FABRIKAM_BROKER_PASSWORD_FILE); runs CMD; then
# stops the server by its pid and removes the directory, whatever CMD did (a trap, also on
# failure or interruption). Exits with CMD's status.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 CMD..." >&2; exit 2; }
command -v nats-server >/dev/null || { echo "with-nats: nats-server is not installed (make deps)" >&2; exit 1; }

dir=$(mktemp -d /tmp/fabrikam-nats.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free port: the kernel picks one for a socket bound to port 0 (released at once; nats-server
# binds it a moment later; a collision makes the start below fail loudly, not silently).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
# The password is in no command line: the server reads it from its configuration file.
(umask 077
 python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$dir/password"
 printf 'authorization {\n  user: fabrikam\n  password: "%s"\n}\n' "$(<"$dir/password")" > "$dir/nats.conf")
nats-server -c "$dir/nats.conf" -js -sd "$dir/store" -a 127.0.0.1 -p "$port" >"$dir/server.log" 2>&1 &
pid=$!

# Ready when it accepts connections and says JetStream is up (bounded: 10 s).
ready=""
for _ in $(seq 1 100); do
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  if grep -q "Server is ready" "$dir/server.log" && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ready=1; break; fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "with-nats: nats-server did not start on 127.0.0.1:$port:" >&2
  cat "$dir/server.log" >&2
  exit 1
fi

export FABRIKAM_TEST_NATS_URL="nats://127.0.0.1:$port"
export FABRIKAM_TEST_NATS_USER=fabrikam FABRIKAM_TEST_NATS_PASSWORD_FILE="$dir/password"
echo "with-nats: nats-server $(nats-server --version 2>/dev/null | awk '{print $NF}') (pid $pid) on $FABRIKAM_TEST_NATS_URL (user fabrikam, password in $FABRIKAM_TEST_NATS_PASSWORD_FILE), store $dir/store" >&2
set +e
"$@"
status=$?
set -e
exit $status
