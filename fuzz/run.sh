#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer on the stable toolchain and runs one of them.
#
#   fuzz/run.sh TARGET SECONDS [LIBFUZZER_ARGS...]   fuzz TARGET (report, container, message)
#                                                     for SECONDS on one core
#   fuzz/run.sh --build                               only build (and make the seeds)
#   fuzz/run.sh --replay TARGET FILE...               run TARGET once over each FILE
#
# Installs what it needs (a C++ compiler for libFuzzer's runtime, from apt) if missing;
# idempotent. The coverage instrumentation is LLVM's SanitizerCoverage, turned on with
# stable `-C` flags (no nightly, no cargo-fuzz); the harnesses and their invariants are in
# fuzz/src/lib.rs. The corpus grows in fuzz/corpus/TARGET (seeded by make-seeds.py from
# sample-reports/), crashes land in fuzz/artifacts/TARGET/. Exit code 1 on a crash, a
# timeout or an out-of-memory input. Environment: FUZZ_RSS_LIMIT_MB (default 1024),
# FUZZ_TIMEOUT (seconds per input, default 10), FUZZ_MAX_LEN (default 65536).
set -euo pipefail
fuzz=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$fuzz")
cd "$fuzz"

targets=(report container message)
usage() {
    sed -n '2,8p' "$0" >&2
    exit 2
}
[ $# -ge 1 ] || usage

if ! command -v c++ >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++
fi

host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-$fuzz/target}
bin_dir=$target_dir/$host/release

build() {
    # SanitizerCoverage as cargo-fuzz sets it up: 8-bit edge counters with their PC
    # table, comparison tracing (libFuzzer learns magic bytes and keywords from it).
    # `--target` keeps these flags off build scripts and proc macros.
    local flags=(
        --cfg fuzzing
        -Cpasses=sancov-module
        -Cllvm-args=-sanitizer-coverage-level=4
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
        -Cllvm-args=-sanitizer-coverage-pc-table
        -Cllvm-args=-sanitizer-coverage-trace-compares
        -Cforce-frame-pointers=yes
    )
    RUSTFLAGS="${flags[*]}" cargo build --release --locked --quiet \
        --manifest-path "$fuzz/Cargo.toml" --target "$host" --bins
    python3 "$fuzz/make-seeds.py" "$repo/sample-reports" "$fuzz/seeds"
}

case "$1" in
--build)
    build
    exit 0
    ;;
--replay)
    [ $# -ge 3 ] || usage
    target=$2
    shift 2
    build
    exec "$bin_dir/$target" -runs=1 "-rss_limit_mb=${FUZZ_RSS_LIMIT_MB:-1024}" \
        "-timeout=${FUZZ_TIMEOUT:-10}" "$@"
    ;;
esac

[ $# -ge 2 ] || usage
target=$1
seconds=$2
shift 2
[[ " ${targets[*]} " == *" $target "* ]] || {
    echo "unknown target $target (one of: ${targets[*]})" >&2
    exit 2
}
build

corpus=$fuzz/corpus/$target
artifacts=$fuzz/artifacts/$target
mkdir -p "$corpus" "$artifacts"
dict=()
[ -f "$fuzz/dict/$target.dict" ] && dict=("-dict=$fuzz/dict/$target.dict")
regressions=()
[ -d "$fuzz/regressions/$target" ] &&
    regressions=("$fuzz/regressions/$target")

# One process, one thread (-jobs/-workers stay at their default of none): the machine
# is shared. The seed and regression directories are read, new inputs go to $corpus.
exec "$bin_dir/$target" "$corpus" "$fuzz/seeds/$target" "${regressions[@]}" \
    "${dict[@]}" \
    "-artifact_prefix=$artifacts/" \
    "-max_total_time=$seconds" \
    "-max_len=${FUZZ_MAX_LEN:-65536}" \
    "-rss_limit_mb=${FUZZ_RSS_LIMIT_MB:-1024}" \
    "-timeout=${FUZZ_TIMEOUT:-10}" \
    -print_final_stats=1 \
    "$@"
