#!/usr/bin/env bash
# The test command of README.md (and of CI): sets up what the tests need on a fresh
# Debian 12 machine (ClickHouse 18.16 from apt, chdb-core from PyPI), builds once, runs
# every test. Idempotent; safe to re-run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

echo "== toolchain"
cargo --version
for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
command -v curl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl; }

echo "== local servers (127.0.0.1 only, state in .state/)"
# The servers this run starts (ClickHouse here, dovecot and DNS by the tests) are stopped
# when it ends, pass or fail; those that were already running are left running.
started=()
for server in clickhouse dovecot dns; do
    deploy/dev/$server.sh status >/dev/null 2>&1 || started+=("$server")
done
stop_started() {
    for server in "${started[@]}"; do
        deploy/dev/$server.sh stop >/dev/null 2>&1 || echo "could not stop $server" >&2
    done
}
trap stop_started EXIT
deploy/dev/clickhouse.sh install
deploy/dev/clickhouse.sh start
deploy/dev/dovecot.sh install
deploy/dev/dns.sh install
deploy/dev/chromium.sh install
deploy/dev/smtp.sh install

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== schema and shipped queries on the current ClickHouse engine (chdb-core)"
deploy/dev/check-modern-engine.sh
# The dashboards' panel SQL, Grafana macros expanded, after the migrations (one session).
mkdir -p .state
python3 deploy/dev/extract_dashboard_sql.py .state/dashboard-queries.sql
deploy/dev/check-modern-engine.sh schema/*.sql .state/dashboard-queries.sql docs/queries.md
echo "== cluster schema (schema/cluster/) on the current engine"
deploy/dev/check-cluster-ddl.sh

echo "== tests (one build, every test of the workspace)"
cargo test --workspace --all-targets --locked

echo "== fuzz targets (fuzz/: libFuzzer on stable), ${FUZZ_SECONDS:-10} s each on one core"
# Replays every seed and every input in fuzz/regressions/, then fuzzes;
# fails on a crash, a hang or an over-budget input (fuzz/run.sh; fuzz/README.md).
(cd fuzz && cargo fmt -- --check)
fuzz/run.sh --build
mkdir -p .state
for target in report container message; do
    if ! fuzz/run.sh "$target" "${FUZZ_SECONDS:-10}" >".state/fuzz-$target.log" 2>&1; then
        tail -n 60 ".state/fuzz-$target.log"
        echo "fuzz target $target failed: the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    echo "$target: $(grep -E '^stat::(number_of_executed_units|peak_rss_mb)' ".state/fuzz-$target.log" | tr '\n' ' ')"
done
