#!/usr/bin/env bash
# Brings up a MariaDB primary + 2 replicas and rwproxy in front of them, so the
# read/write split can be watched from a plain mariadb client.
#
#   scripts/demo.sh          build, start the sandbox and the proxy
#   scripts/demo.sh down     stop the proxy and the sandbox
#
# Env: BASE_PORT (default 4306; empty = any free ports), REPLICAS (default 2),
#      SANDBOX_DIR (default ./sandbox).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SANDBOX=${SANDBOX_DIR:-$ROOT/sandbox}
BASE_PORT=${BASE_PORT-4306}
REPLICAS=${REPLICAS:-2}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

stop_proxy() {
    local pidfile=$SANDBOX/rwproxy.pid
    [ -f "$pidfile" ] || return 0
    local pid
    pid=$(cat "$pidfile")
    # The pid may be another process's by now (rwproxy crashed, the machine rebooted).
    if ! tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" |
        grep -qF "serve -c $SANDBOX/rwproxy.toml"; then
        echo "rwproxy (pid $pid) is not running"
    elif kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        echo "stopped rwproxy (pid $pid)"
    fi
    rm -f "$pidfile"
}

down() {
    stop_proxy
    # The binaries `up` used, even if CARGO_TARGET_DIR differs now.
    local bin=$BIN
    [ -f "$SANDBOX/bin-dir" ] && bin=$(cat "$SANDBOX/bin-dir")
    if [ -x "$bin/sandbox" ]; then
        "$bin/sandbox" down --dir "$SANDBOX"
    else
        echo "no sandbox binary in $bin; build it or set CARGO_TARGET_DIR as for 'up'" >&2
        return 1
    fi
}

case "${1:-up}" in
    down)
        down
        exit 0
        ;;
    up) ;;
    *)
        echo "usage: $0 [up|down]" >&2
        exit 2
        ;;
esac

if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
    echo "== installing mariadb-server (needs root)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y mariadb-server mariadb-client
fi

echo "== building"
(cd "$ROOT" && cargo build --release -p rwproxy -p rwproxy-sql-tests)

# Idempotent: a second `demo.sh` replaces the previous sandbox.
down >/dev/null 2>&1 || true

echo "== starting the sandbox cluster"
up_args=(up --dir "$SANDBOX" --replicas "$REPLICAS")
[ -n "$BASE_PORT" ] && up_args+=(--base-port "$BASE_PORT")
"$BIN/sandbox" "${up_args[@]}"
echo "$BIN" >"$SANDBOX/bin-dir"
# shellcheck disable=SC1091
. "$SANDBOX/ports.env"

echo "== starting rwproxy on 127.0.0.1:$PROXY_PORT (log: $SANDBOX/rwproxy.log)"
# Its own log level: the readiness check below reads an INFO line.
nohup env -u RUST_LOG "$BIN/rwproxy" serve -c "$SANDBOX/rwproxy.toml" >"$SANDBOX/rwproxy.log" 2>&1 </dev/null &
echo $! >"$SANDBOX/rwproxy.pid"
# Its own log line, not a connect: another process may hold the port.
ready=""
for _ in $(seq 1 50); do
    if grep -q "proxy listening" "$SANDBOX/rwproxy.log"; then
        ready=1
        break
    fi
    kill -0 "$(cat "$SANDBOX/rwproxy.pid")" 2>/dev/null || break
    sleep 0.2
done
if [ -z "$ready" ]; then
    echo "!! rwproxy did not start listening; last lines of $SANDBOX/rwproxy.log:" >&2
    tail -n 20 "$SANDBOX/rwproxy.log" >&2 || true
    stop_proxy >/dev/null
    echo "   (the MariaDB sandbox is still up; '$0 down' stops it)" >&2
    exit 1
fi

cat <<MSG

rwproxy is listening on 127.0.0.1:$PROXY_PORT (admin console on 127.0.0.1:$ADMIN_PORT, admin/admin).
Backends: primary 127.0.0.1:$PRIMARY_PORT (server_id 1), replicas on $REPLICA_PORTS (server_id 2..).

Connect through the proxy:
  mariadb -h127.0.0.1 -P$PROXY_PORT -uapp -papp_pw rwtest

See the split (reads go to replicas, transactions stay on the primary):
  mariadb -h127.0.0.1 -P$PROXY_PORT -uapp -papp_pw rwtest \\
    -e 'SELECT @@server_id; SELECT @@server_id;'    # a replica's id (2 or 3; a session stays
                                                    # on one replica for runs of 16 reads)
  mariadb -h127.0.0.1 -P$PROXY_PORT -uapp -papp_pw rwtest \\
    -e 'BEGIN; SELECT @@server_id; COMMIT;'                               # the primary's id (1)

Admin console (Atlas's commands: SELECT * FROM help):
  mariadb -h127.0.0.1 -P$ADMIN_PORT -uadmin -padmin -e 'SELECT * FROM backends'
  mariadb -h127.0.0.1 -P$ADMIN_PORT -uadmin -padmin -e 'SET OFFLINE 2'

Tear down:
  $0 down
MSG
