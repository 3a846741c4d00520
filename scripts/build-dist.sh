#!/usr/bin/env bash
# scripts/build-dist.sh - builds the rwproxy binary to deploy: the `dist` profile (release +
# whole-program LTO) with profile-guided optimisation.
#
#   scripts/build-dist.sh        prints the binary's path on its last line of output
#
# PGO in three steps:
#   1. build an instrumented binary (-Cprofile-generate);
#   2. train it: a short run of bench/sysbench.sh against it alone (a sandbox MariaDB primary
#      + 2 replicas; oltp_point_select, oltp_read_only and oltp_read_write, prepared and text
#      protocol, 8 and 32 threads), which writes the counts of every branch and call it took;
#   3. build again with those counts (-Cprofile-use): LLVM lays the hot path out together,
#      inlines along it and moves cold code (errors, logging, setup) out of the way.
# Measured on the dev VM with callgrind: 8 234 -> 6 979 instructions per proxied point select
# (-15 %), 8 369 -> 7 219 per oltp_read_write statement; user CPU per statement about -13 %
# in paired sysbench runs (bench/RESULTS.md, eleventh run).
#
# The training is OLTP traffic through the data path; code it never ran (the admin console,
# HA, TLS) is optimised as usual, only without the profile's layout hints. Branch counts
# differ a little from one training run to the next, so two builds of the same commit are
# not bit-for-bit identical.
#
# Environment:
#   CARGO_TARGET_DIR   build cache (default ./target); the binary lands in
#                      $CARGO_TARGET_DIR/pgo-use/dist/rwproxy
#   DIST_NO_PGO=1      skip PGO: plain `cargo build --profile dist`, binary in
#                      $CARGO_TARGET_DIR/dist/rwproxy
#   PGO_TRAIN_TIME     seconds per training run (default 3; 12 runs)
#   RUSTFLAGS          kept; the PGO flags are added to it
# Needs what the training needs: mariadbd and the mariadb client, sysbench, python3 (the
# sandbox and bench scripts); and rustup's llvm-tools component, which it adds when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Absolute: the builds below run from the repository root, and rustc gets the profile's path.
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-$ROOT/target}")
cd "$ROOT"
if [ -n "${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
    echo "build-dist: CARGO_ENCODED_RUSTFLAGS is set; cargo would ignore the PGO flags in RUSTFLAGS" >&2
    exit 1
fi
flags() { echo "${RUSTFLAGS:+$RUSTFLAGS }$1"; }

log() { echo "# $*" >&2; }

if [ -n "${DIST_NO_PGO:-}" ]; then
    cargo build --profile dist -p rwproxy --bin rwproxy >&2
    echo "$TARGET_DIR/dist/rwproxy"
    exit 0
fi

profdata_tool() {
    echo "$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-profdata"
}
if [ ! -x "$(profdata_tool)" ]; then
    log "adding rustup's llvm-tools component (llvm-profdata)"
    rustup component add llvm-tools >&2
fi
PROFDATA=$(profdata_tool)

PGO_DIR=$TARGET_DIR/pgo
rm -rf "$PGO_DIR/train" "$PGO_DIR/build-scripts"
mkdir -p "$PGO_DIR/train"

log "1/3 instrumented build"
# Its own target directory: RUSTFLAGS apply to every crate, and the two builds must not
# overwrite each other's dependencies.
RUSTFLAGS=$(flags "-Cprofile-generate=$PGO_DIR/build-scripts") \
    cargo build --profile dist -p rwproxy --bin rwproxy --target-dir "$TARGET_DIR/pgo-generate" >&2
cargo build --release -p rwproxy-sql-tests >&2 # the sandbox tool the bench starts servers with

log "2/3 training run"
# Every setting of the bench is given here, so the caller's BENCH_* cannot change what the
# shipped binary is trained on. %p: one file per process; %m: per binary.
LLVM_PROFILE_FILE="$PGO_DIR/train/rwproxy-%p-%m.profraw" \
    BENCH_PROXY_BIN="$TARGET_DIR/pgo-generate/dist/rwproxy" BENCH_TARGETS=rwproxy BENCH_NO_PGO='' \
    BENCH_NO_BUILD=1 BENCH_TIME=${PGO_TRAIN_TIME:-3} BENCH_ROUNDS=1 BENCH_PAIRED=0 \
    BENCH_THREADS="8 32" BENCH_PS_MODES="auto disable" BENCH_TABLES=4 BENCH_TABLE_SIZE=10000 \
    BENCH_WORKLOADS="oltp_point_select oltp_read_only oltp_read_write" BENCH_KEEP_DIR='' \
    "$ROOT/bench/sysbench.sh" >&2
shopt -s nullglob
raw=("$PGO_DIR"/train/*.profraw)
if [ ${#raw[@]} -eq 0 ]; then
    echo "build-dist: the training run left no profile in $PGO_DIR/train (did rwproxy exit cleanly?)" >&2
    exit 1
fi
"$PROFDATA" merge -o "$PGO_DIR/rwproxy.profdata" "${raw[@]}"
# cargo does not look into the file -Cprofile-use names: a new profile gets a new name, so
# the flags change and everything is rebuilt with it.
sum=$(sha256sum "$PGO_DIR/rwproxy.profdata" | cut -c1-16)
profile=$PGO_DIR/rwproxy-$sum.profdata
mv "$PGO_DIR/rwproxy.profdata" "$profile"
find "$PGO_DIR" -maxdepth 1 -name 'rwproxy-*.profdata' ! -name "rwproxy-$sum.profdata" -delete

log "3/3 optimised build"
RUSTFLAGS=$(flags "-Cprofile-use=$profile") \
    cargo build --profile dist -p rwproxy --bin rwproxy --target-dir "$TARGET_DIR/pgo-use" >&2
echo "$TARGET_DIR/pgo-use/dist/rwproxy"
