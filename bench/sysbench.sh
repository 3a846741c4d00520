#!/usr/bin/env bash
# bench/sysbench.sh - sysbench OLTP throughput of rwproxy vs HAProxy vs the bare primary.
#
# Starts a sandbox MariaDB cluster (primary + 2 GTID replicas), rwproxy in front of all of
# it, and HAProxy 2.6 in TCP mode with two frontends: "haproxy" -> primary only, and
# "haproxy-ro" -> both replicas round-robin. Runs sysbench workloads against each target and
# prints one table row per run. Everything started here is torn down on exit.
#
# Environment:
#   BENCH_TIME      seconds per sysbench run            (default 10)
#   BENCH_ROUNDS    interleaved rounds per row; medians (default 3)
#   BENCH_THREADS   thread counts                       (default "1 8 32")
#   BENCH_WORKLOADS sysbench tests                      (default "oltp_point_select oltp_read_only oltp_read_write")
#   BENCH_PS_MODES  --db-ps-mode values                 (default "auto disable")
#   BENCH_TABLES / BENCH_TABLE_SIZE                     (default 4 / 10000)
#   BENCH_NO_BUILD=1  skip building; use the binaries already in CARGO_TARGET_DIR
#   BENCH_NO_PGO=1    measure the plain `dist` build instead of the PGO one
#   BENCH_PROXY_BIN   the rwproxy binary to measure     (default: what scripts/build-dist.sh builds)
#   BENCH_TARGETS     only these targets                (default all: direct rwproxy haproxy haproxy-ro)
#   CARGO_TARGET_DIR  where the binaries are            (default ./target)
#   BENCH_KEEP_DIR=1  keep the work dir (logs) after the run
#   BENCH_PAIRED    rounds of the paired comparison      (default 3; 0 skips it)
#   BENCH_SCHED     how the proxies share the CPUs       (default "shared")
#                   shared:      in this script's session, like sysbench and MariaDB: every
#                                thread competes with every other one, thread by thread
#                   own-session: each proxy in a session of its own (setsid), as a service
#                                manager starts daemons; with kernel.sched_autogroup_enabled=1
#                                the scheduler then shares the CPUs out between sessions first
#                                (a proxy's 2 busy threads against sysbench's 8 or 32 and
#                                MariaDB's), which changes how often a proxy is preempted, and so
#                                its CPU per query, a great deal (bench/RESULTS.md, seventeenth run)
#
# rwproxy is measured as it ships: built by scripts/build-dist.sh (the `dist` profile, release +
# fat LTO, with profile-guided optimisation trained by a short run of this script). The
# sandbox tool comes from the plain release build.
#
# The paired comparison runs rwproxy and its HAProxy counterpart at the same time, each
# with its own sysbench of the same thread count, so whatever the host does during a round
# it does to both; its per-round ratios vary far less than those of runs taken one after
# the other (in which the host's load can move by 25 % from one run to the next).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_TIME=${BENCH_TIME:-10}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_THREADS=${BENCH_THREADS:-"1 8 32"}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-"oltp_point_select oltp_read_only oltp_read_write"}
BENCH_PS_MODES=${BENCH_PS_MODES:-"auto disable"}
BENCH_TABLES=${BENCH_TABLES:-4}
BENCH_TABLE_SIZE=${BENCH_TABLE_SIZE:-10000}
BENCH_PAIRED=${BENCH_PAIRED:-3}
BENCH_SCHED=${BENCH_SCHED:-shared}
case $BENCH_SCHED in
    shared) SPAWN=() ;;
    own-session) SPAWN=(setsid) ;;
    *) echo "unknown BENCH_SCHED: $BENCH_SCHED (shared, own-session)" >&2; exit 1 ;;
esac
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
if [ -n "${BENCH_NO_PGO:-}" ]; then
    PROXY_BIN=${BENCH_PROXY_BIN:-$TARGET_DIR/dist/rwproxy}
else
    PROXY_BIN=${BENCH_PROXY_BIN:-$TARGET_DIR/pgo-use/dist/rwproxy}
fi
USER_=app
PASS=app_pw
DB=rwtest
TCK=$(getconf CLK_TCK)

WORK=$(mktemp -d /tmp/rwproxy-bench.XXXXXX)
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    # rwproxy finishes its shutdown (and an instrumented build writes its profile) first.
    for _ in $(seq 50); do
        alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    [ -x "$BIN/sandbox" ] && timeout 30 "$BIN/sandbox" down --dir "$WORK/cluster" >/dev/null 2>&1
    if [ -z "${BENCH_KEEP_DIR:-}" ]; then rm -rf "$WORK"; else echo "logs kept in $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "# $*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listening on port $1 after $2 s" >&2
    return 1
}

cpu_ticks() { # pid -> utime+stime in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

sql() { # port sql
    timeout 30 mariadb -h127.0.0.1 -P"$1" -u"$USER_" -p"$PASS" -N -B -e "$2"
}

if [ -z "${BENCH_NO_BUILD:-}" ]; then
    # The build takes the working tree as it is, edits made while it runs included: say which
    # code that is, so a table can be traced to a commit (or to uncommitted changes).
    log "building rwproxy (scripts/build-dist.sh) and the sandbox tool (release) from $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'an unknown tree')"
    (cd "$ROOT" && cargo build --release -p rwproxy-sql-tests >&2)
    PROXY_BIN=${BENCH_PROXY_BIN:-$(DIST_NO_PGO=${BENCH_NO_PGO:-} "$ROOT/scripts/build-dist.sh" | tail -n1)}
fi
[ -x "$PROXY_BIN" ] || { echo "no rwproxy binary at $PROXY_BIN (build it with scripts/build-dist.sh)" >&2; exit 1; }
log "measuring $PROXY_BIN (built $(date -u -r "$PROXY_BIN" '+%F %T') UTC)"
if [ -n "$(find "$ROOT/proxy/src" "$ROOT/admin/src" "$ROOT/ha/src" "$ROOT/Cargo.lock" -newer "$PROXY_BIN" -print -quit)" ]; then
    log "WARNING: sources changed since that binary was built; it may not be the code checked out"
fi
for t in ${BENCH_TARGETS:-}; do
    case $t in direct | rwproxy | haproxy | haproxy-ro) ;; *) echo "unknown target in BENCH_TARGETS: $t (direct, rwproxy, haproxy, haproxy-ro)" >&2; exit 1 ;; esac
done

# --- cluster -------------------------------------------------------------------------------
log "starting sandbox cluster in $WORK/cluster"
timeout 180 "$BIN/sandbox" up --dir "$WORK/cluster" --replicas 2 >&2
# shellcheck disable=SC1091
. "$WORK/cluster/ports.env"
PRIMARY=$PRIMARY_PORT
read -r R1 R2 <<<"$REPLICA_PORTS"
log "primary $PRIMARY, replicas $R1 $R2"

# --- rwproxy -------------------------------------------------------------------------------
RW_PORT=$(free_port)
cat >"$WORK/rwproxy.toml" <<EOF
[proxy]
listen = "127.0.0.1:$RW_PORT"
log-level = "warn"
[admin]
listen = "127.0.0.1:$(free_port)"
[[backend]]
address = "127.0.0.1:$PRIMARY"
role = "rw"
max-connections = 200
[[backend]]
address = "127.0.0.1:$R1"
role = "ro"
max-connections = 200
[[backend]]
address = "127.0.0.1:$R2"
role = "ro"
max-connections = 200
[[user]]
name = "$USER_"
password = "$PASS"
EOF
"${SPAWN[@]}" "$PROXY_BIN" serve -c "$WORK/rwproxy.toml" >"$WORK/rwproxy.log" 2>&1 &
RW_PID=$!
PIDS+=("$RW_PID")

# --- HAProxy -------------------------------------------------------------------------------
# Only when a HAProxy target or the paired rounds (rwproxy against HAProxy) will run.
HA_PORT="" HA_RO_PORT="" HA_PID=""
case " ${BENCH_TARGETS:-haproxy} " in *" haproxy "* | *" haproxy-ro "*) need_haproxy=1 ;; *) need_haproxy=$((BENCH_PAIRED > 0)) ;; esac
if [ "$need_haproxy" = 1 ]; then
    HA_PORT=$(free_port)
    HA_RO_PORT=$(free_port)
    cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 4096
    log stdout format raw local0 err
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend rw
    bind 127.0.0.1:$HA_PORT
    default_backend primary
backend primary
    server p 127.0.0.1:$PRIMARY
frontend ro
    bind 127.0.0.1:$HA_RO_PORT
    default_backend replicas
backend replicas
    balance roundrobin
    server r1 127.0.0.1:$R1
    server r2 127.0.0.1:$R2
EOF
    "${SPAWN[@]}" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
    HA_PID=$!
    PIDS+=("$HA_PID")
fi

wait_port "$RW_PORT" 20
if [ -n "$HA_PID" ]; then
    wait_port "$HA_PORT" 20
    wait_port "$HA_RO_PORT" 20
fi
session_of() { awk '{ sub(/^.*\) /, ""); print $4 }' "/proc/$1/stat"; }
sched_of() { echo "$(cat "/proc/$1/comm") pid $1 session $(session_of "$1") $(cat "/proc/$1/autogroup" 2>/dev/null)"; }
for p in $RW_PID $HA_PID; do
    # setsid runs the program in its own process unless it must fork; the CPU is read from
    # this pid, so it must be the proxy's.
    if [ "$BENCH_SCHED" = own-session ] && [ "$(session_of "$p")" != "$p" ]; then
        echo "pid $p is not a session leader; cannot measure its CPU" >&2
        exit 1
    fi
    log "scheduling ($BENCH_SCHED, sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo -)): $(sched_of "$p")"
done

# --- data ----------------------------------------------------------------------------------
SB_COMMON=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user="$USER_" --mysql-password="$PASS"
    --mysql-db="$DB" --tables="$BENCH_TABLES" --table-size="$BENCH_TABLE_SIZE")
log "preparing $BENCH_TABLES tables of $BENCH_TABLE_SIZE rows on the primary"
timeout 300 sysbench oltp_common "${SB_COMMON[@]}" --mysql-port="$PRIMARY" prepare >"$WORK/prepare.log" 2>&1
pos=$(sql "$PRIMARY" "SELECT @@gtid_binlog_pos")
for r in $R1 $R2; do
    [ "$(sql "$r" "SELECT MASTER_GTID_WAIT('$pos', 120)")" = 0 ] || { echo "replica $r did not catch up" >&2; exit 1; }
done

# --- runs ----------------------------------------------------------------------------------
# Which targets each workload runs against. rwproxy sends autocommit point selects to the
# replicas, so for oltp_point_select HAProxy balancing the replicas ("haproxy-ro") is the
# like-for-like comparison; oltp_read_only runs inside BEGIN/COMMIT, which rwproxy (correctly)
# keeps on the primary, as it does everything in oltp_read_write.
targets_for() {
    local all t
    case $1 in
        oltp_point_select) all="direct rwproxy haproxy haproxy-ro" ;;
        *) all="direct rwproxy haproxy" ;;
    esac
    for t in $all; do
        case " ${BENCH_TARGETS:-$all} " in *" $t "*) printf '%s ' "$t" ;; esac
    done
}
port_of() {
    case $1 in
        direct) echo "$PRIMARY" ;;
        rwproxy) echo "$RW_PORT" ;;
        haproxy) echo "$HA_PORT" ;;
        haproxy-ro) echo "$HA_RO_PORT" ;;
    esac
}
pid_of() {
    case $1 in
        rwproxy) echo "$RW_PID" ;;
        haproxy | haproxy-ro) echo "$HA_PID" ;;
        *) echo "" ;;
    esac
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
RUNS=$WORK/runs.tsv
: >"$RUNS"
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
n=0
for wl in $BENCH_WORKLOADS; do
    for ps in $BENCH_PS_MODES; do
        for th in $BENCH_THREADS; do
            # Rounds interleave the targets, so a slow minute of the machine (other VMs on the
            # host, a busy neighbour process) hits every target alike; medians are reported.
            for round in $(seq "$BENCH_ROUNDS"); do
                # Each round starts with the next target, so none always runs first.
                read -r -a ts <<<"$(targets_for "$wl")"
                for ((i = 0; i < ${#ts[@]}; i++)); do
                    t=${ts[$(((i + round - 1) % ${#ts[@]}))]}
                    n=$((n + 1))
                    port=$(port_of "$t")
                    pid=$(pid_of "$t")
                    out=$WORK/run-$n-$wl-$ps-$th-$t.log
                    kill -0 "$RW_PID" 2>/dev/null || { echo "rwproxy died; see $WORK/rwproxy.log" >&2; cat "$WORK/rwproxy.log" >&2; exit 1; }
                    c0=""
                    [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
                    rc=0
                    timeout -k 5 $((BENCH_TIME + 60)) sysbench "$wl" "${SB_COMMON[@]}" --mysql-port="$port" \
                        --db-ps-mode="$ps" --threads="$th" --time="$BENCH_TIME" --report-interval=0 \
                        --mysql-ignore-errors=all run >"$out" 2>&1 || rc=$?
                    cpu="-"
                    queries=$(awk '/queries:/ { print $2; exit }' "$out")
                    qps=$(awk '/queries:/ { gsub(/\(/, "", $3); print $3; exit }' "$out")
                    p95=$(awk '/95th percentile:/ { print $3; exit }' "$out")
                    errs=$(awk '/ignored errors:/ { print $3; exit }' "$out")
                    if [ $rc -ne 0 ] || [ -z "$queries" ]; then
                        errs="FAIL(rc=$rc)"
                        qps=${qps:-0}
                        p95=${p95:--}
                    fi
                    if [ -n "$pid" ] && [ -n "${queries:-}" ] && [ "${queries:-0}" -gt 0 ]; then
                        c1=$(cpu_ticks "$pid")
                        cpu=$(awk -v d=$((c1 - c0)) -v t="$TCK" -v q="$queries" 'BEGIN { printf "%.1f", d * 1e6 / t / q }')
                    fi
                    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$ps" "$th" "$t" "$round" "$qps" "$p95" "$errs" "$cpu" >>"$RUNS"
                    log "$(tail -n1 "$RUNS")"
                    if [ $rc -ne 0 ]; then tail -n 5 "$out" | sed 's/^/#   /' >&2; fi
                done
            done
            direct_qps=""
            for t in $(targets_for "$wl"); do
                cell() { awk -F'\t' -v w="$wl" -v p="$ps" -v h="$th" -v t="$t" -v c="$1" '$1 == w && $2 == p && $3 == h && $4 == t { print $c }' "$RUNS"; }
                qps=$(cell 6 | median)
                p95=$(cell 7 | awk '$1 != "-"' | median)
                if cell 8 | grep -q FAIL; then errs=FAIL; else errs=$(cell 8 | awk '{ s += $1 } END { print s + 0 }'); fi
                cpu=$(cell 9 | awk '$1 != "-"' | median)
                [ "$t" = direct ] && direct_qps=$qps
                ratio="-"
                if [ "$t" != direct ] && [ -n "$direct_qps" ]; then
                    ratio=$(awk -v a="$qps" -v b="$direct_qps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
                fi
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$ps" "$th" "$t" "$qps" "$p95" "$errs" "$cpu" "$ratio" >>"$RESULTS"
            done
        done
    done
done

# --- paired runs ---------------------------------------------------------------------------
# rwproxy and the HAProxy frontend it is measured against, loaded at the same time.
counterpart() { if [ "$1" = oltp_point_select ]; then echo haproxy-ro; else echo haproxy; fi; }
PAIRS=$WORK/pairs.tsv
: >"$PAIRS"
if [ "$BENCH_PAIRED" -gt 0 ]; then
    for wl in $BENCH_WORKLOADS; do
        for ps in $BENCH_PS_MODES; do
            for th in $BENCH_THREADS; do
                ha=$(counterpart "$wl")
                for round in $(seq "$BENCH_PAIRED"); do
                    n=$((n + 1))
                    kill -0 "$RW_PID" 2>/dev/null || { echo "rwproxy died; see $WORK/rwproxy.log" >&2; cat "$WORK/rwproxy.log" >&2; exit 1; }
                    rw0=$(cpu_ticks "$RW_PID")
                    ha0=$(cpu_ticks "$HA_PID")
                    sb=()
                    for t in rwproxy "$ha"; do
                        timeout -k 5 $((BENCH_TIME + 60)) sysbench "$wl" "${SB_COMMON[@]}" --mysql-port="$(port_of "$t")" \
                            --db-ps-mode="$ps" --threads="$th" --time="$BENCH_TIME" --report-interval=0 \
                            --mysql-ignore-errors=all run >"$WORK/pair-$n-$t.log" 2>&1 &
                        sb+=($!)
                    done
                    rc=0
                    for p in "${sb[@]}"; do wait "$p" || rc=$?; done
                    rw1=$(cpu_ticks "$RW_PID")
                    ha1=$(cpu_ticks "$HA_PID")
                    rq=$(awk '/queries:/ { print $2; exit }' "$WORK/pair-$n-rwproxy.log")
                    hq=$(awk '/queries:/ { print $2; exit }' "$WORK/pair-$n-$ha.log")
                    re=$(awk '/ignored errors:/ { print $3; exit }' "$WORK/pair-$n-rwproxy.log")
                    he=$(awk '/ignored errors:/ { print $3; exit }' "$WORK/pair-$n-$ha.log")
                    if [ $rc -ne 0 ] || [ -z "$rq" ] || [ -z "$hq" ] || [ "$rq" -eq 0 ] || [ "$hq" -eq 0 ]; then
                        printf '%s\t%s\t%s\t%s\t%s\tFAIL\tFAIL\t-\t-\t-\t-\n' "$wl" "$ps" "$th" "$ha" "$round" >>"$PAIRS"
                    else
                        awk -v w="$wl" -v p="$ps" -v h="$th" -v a="$ha" -v r="$round" -v rq="$rq" -v hq="$hq" \
                            -v rc=$((rw1 - rw0)) -v hc=$((ha1 - ha0)) -v t="$BENCH_TIME" -v k="$TCK" -v re="$re" -v he="$he" \
                            'BEGIN { printf "%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.1f\t%.1f\t%d\t%d\n", w, p, h, a, r,
                                     rq / t, hq / t, rc * 1e6 / k / rq, hc * 1e6 / k / hq, re, he }' >>"$PAIRS"
                    fi
                    log "paired: $(tail -n1 "$PAIRS")"
                done
            done
        done
    done
fi

# --- table ---------------------------------------------------------------------------------
echo
echo "sysbench ${BENCH_TIME}s per run, $BENCH_ROUNDS interleaved rounds per row (medians; errors summed),"
echo "--tables=$BENCH_TABLES --table-size=$BENCH_TABLE_SIZE; proxies scheduled: $BENCH_SCHED (BENCH_SCHED)."
echo "direct = primary; rwproxy = all 3 servers (reads to replicas); haproxy = TCP -> primary;"
echo "haproxy-ro = TCP round-robin over the 2 replicas (rwproxy's like-for-like for point selects)."
echo "CPU us/q = proxy process utime+stime delta / queries. ratio = QPS / QPS(direct)."
echo
printf '| %-17s | %-7s | %7s | %-10s | %10s | %8s | %6s | %9s | %5s |\n' \
    workload ps-mode threads target QPS "p95 ms" errors "CPU us/q" ratio
echo '|-------------------|---------|--------:|------------|-----------:|---------:|-------:|----------:|------:|'
while IFS=$'\t' read -r wl ps th t qps p95 errs cpu ratio; do
    printf '| %-17s | %-7s | %7s | %-10s | %10s | %8s | %6s | %9s | %5s |\n' \
        "$wl" "$ps" "$th" "$t" "$qps" "$p95" "$errs" "$cpu" "$ratio"
done <"$RESULTS"
# rwproxy against the HAProxy row it is measured against: haproxy-ro for point selects (both
# read from the replicas), haproxy for the transactional workloads (both use the primary).
echo
echo "rwproxy vs HAProxy (QPS ratio >= 1 and CPU ratio <= 1 meet the target):"
echo
printf '| %-17s | %-7s | %7s | %-10s | %9s | %9s |\n' workload ps-mode threads against "QPS ratio" "CPU ratio"
echo '|-------------------|---------|--------:|------------|----------:|----------:|'
awk -F'\t' '
    { qps[$1 FS $2 FS $3 FS $4] = $5; cpu[$1 FS $2 FS $3 FS $4] = $8 }
    $4 == "rwproxy" {
        ha = ($1 == "oltp_point_select") ? "haproxy-ro" : "haproxy"
        k = $1 FS $2 FS $3 FS ha
        qr = (qps[k] > 0) ? sprintf("%.2f", $5 / qps[k]) : "-"
        cr = (cpu[k] > 0) ? sprintf("%.2f", $8 / cpu[k]) : "-"
        printf "| %-17s | %-7s | %7s | %-10s | %9s | %9s |\n", $1, $2, $3, ha, qr, cr
    }' <(awk -F'\t' '$4 != "rwproxy"' "$RESULTS"; awk -F'\t' '$4 == "rwproxy"' "$RESULTS")
if [ -s "$PAIRS" ]; then
    echo
    echo "Paired: rwproxy and the same HAProxy row loaded at the same time (each its own sysbench,"
    echo "same thread count), $BENCH_PAIRED rounds of ${BENCH_TIME}s; ratios per round, median and range."
    echo "QPS here is each side's share of a shared machine, not comparable with the table above."
    echo
    printf '| %-17s | %-7s | %7s | %-10s | %8s | %8s | %-15s | %-15s | %6s |\n' \
        workload ps-mode threads against "rw QPS" "ha QPS" "QPS ratio" "CPU ratio" errors
    echo '|-------------------|---------|--------:|------------|---------:|---------:|-----------------|-----------------|-------:|'
    awk -F'\t' '
        function med(a, n,    i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        function row(    lo, hi, i, qmed, cmed, q2, c2) {
            if (!key) return
            if (fail) { printf "| %-17s | %-7s | %7s | %-10s | %8s | %8s | %-15s | %-15s | %6s |\n", w, p, h, a, "-", "-", "FAIL", "FAIL", "-"; return }
            for (i = 1; i <= n; i++) { q2[i] = q[i]; c2[i] = c[i] }
            qmed = med(q2, n); cmed = med(c2, n)
            printf "| %-17s | %-7s | %7s | %-10s | %8.0f | %8.0f | %-15s | %-15s | %6d |\n", w, p, h, a, rqs / n, hqs / n,
                sprintf("%.3f %.2f-%.2f", qmed, qlo, qhi), sprintf("%.3f %.2f-%.2f", cmed, clo, chi), errs
        }
        {
            k = $1 FS $2 FS $3
            if (k != key) { row(); key = k; w = $1; p = $2; h = $3; a = $4; n = 0; fail = 0; rqs = 0; hqs = 0; errs = 0; qlo = 1e9; qhi = 0; clo = 1e9; chi = 0 }
            if ($6 == "FAIL") { fail = 1; next }
            n++; q[n] = $6 / $7; c[n] = $8 / $9; rqs += $6; hqs += $7; errs += $10 + $11
            if (q[n] < qlo) qlo = q[n]; if (q[n] > qhi) qhi = q[n]; if (c[n] < clo) clo = c[n]; if (c[n] > chi) chi = c[n]
        }
        END { row() }' "$PAIRS"
fi
if grep -qiE 'error|panic' "$WORK/rwproxy.log"; then
    echo
    echo "rwproxy log (errors):"
    grep -iE 'error|panic' "$WORK/rwproxy.log" | sort | uniq -c | sort -rn | head -n 10
fi
if grep -q FAIL "$RUNS" "$PAIRS"; then
    echo
    echo "some runs FAILED (see the rows marked FAIL)" >&2
    exit 1
fi
