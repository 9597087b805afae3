#!/usr/bin/env bash
# What source naming costs ingestion (issue 11: at most +10% on the 1M-record import with
# a warm cache). Ingestion itself never looks anything up; the cost is the naming pass
# running beside it (the daemon's background `enrich`, here every second, the most often
# `[enrich] refresh_secs` allows) competing for ClickHouse and the CPU.
#
# 1. A 1M-record report is imported into a fresh database and `enrich --all` names its
#    sources (the test DNS server of deploy/dev/dns.sh; the network database of
#    deploy/dev/networks.tsv): the cache is warm.
# 2. A second report with the same sources (same seed, another report id) is imported
#    alone: the baseline.
# 3. A third is imported while `enrich` runs in a loop beside it.
# Prints records/s of 2 and 3 and the overhead. The addresses the test DNS server cannot
# answer (SERVFAIL, timeouts, REFUSED) are asked again at every pass: harsher than warm.
#
# Usage: benches/enrich-overhead.sh [BIN]   (RECORDS=1000000; BIN default
# target/release/dmarc-ingest)
set -euo pipefail
RECORDS=${RECORDS:-1000000}
cd "$(dirname "$0")/.."
bin=${1:-target/release/dmarc-ingest}
deploy/dev/clickhouse.sh install
deploy/dev/clickhouse.sh start >/dev/null
deploy/dev/dns.sh install
deploy/dev/dns.sh start >/dev/null
cargo build --release -q -p dmarc-ingest-benches
[ "$bin" != target/release/dmarc-ingest ] || cargo build --release -q -p dmarc-ingest
tmp=$(mktemp -d)
loop_pid=
cleanup() { [ -z "$loop_pid" ] || kill "$loop_pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

for id in warm baseline beside; do
    target/release/gen-report --records "$RECORDS" --seed 11 --report-id "overhead-$id" --gzip \
        --out "$tmp/$id.xml.gz" 2>/dev/null
done
python3 deploy/dev/make_mmdb.py deploy/dev/networks.tsv "$tmp/networks.mmdb"
export DMARC_INGEST_CLICKHOUSE_DATABASE=bench_enrich_overhead
export DMARC_INGEST_DNS_NAMESERVERS=127.0.0.1:${DMARC_DNS_PORT:-5353} DMARC_INGEST_DNS_TIMEOUT_MS=300
export DMARC_INGEST_ENRICH_ASN_DATABASE=$tmp/networks.mmdb DMARC_INGEST_ENRICH_COUNTRY_DATABASE=$tmp/networks.mmdb
deploy/dev/clickhouse.sh query "DROP DATABASE IF EXISTS bench_enrich_overhead" >/dev/null
"$bin" schema apply >/dev/null

# Seconds an import of FILE takes.
import_secs() {
    local start end
    start=$(date +%s.%N)
    "$bin" import "$1" 2>"$tmp/import.log" || { cat "$tmp/import.log"; exit 1; }
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}

echo "== 1. warm the names: import + enrich --all"
import_secs "$tmp/warm.xml.gz" >/dev/null
"$bin" enrich --all 2>&1 | tail -1
echo "== 2. import alone"
alone=$(import_secs "$tmp/baseline.xml.gz")
echo "== 3. import beside an enrich pass every second"
(
    passes=0
    while true; do
        "$bin" enrich --all >/dev/null 2>&1 || true
        passes=$((passes + 1))
        echo "$passes" >"$tmp/passes"
        sleep 1
    done
) &
loop_pid=$!
beside=$(import_secs "$tmp/beside.xml.gz")
kill "$loop_pid" 2>/dev/null || true
wait "$loop_pid" 2>/dev/null || true
loop_pid=
stored=$(deploy/dev/clickhouse.sh query "SELECT count() FROM bench_enrich_overhead.records")
names=$(deploy/dev/clickhouse.sh query "SELECT uniqExact(source_ip_v6) FROM bench_enrich_overhead.source_names")
echo "records stored: $stored (3 x $RECORDS expected); addresses named: $names; enrich passes during 3: $(cat "$tmp/passes" 2>/dev/null || echo 0)"
awk -v r="$RECORDS" -v a="$alone" -v b="$beside" 'BEGIN {
    printf "import alone:          %.2f s, %.0f records/s\n", a, r / a
    printf "import beside enrich:  %.2f s, %.0f records/s\n", b, r / b
    printf "overhead: %+.1f%% (target: at most +10%%)\n", (b / a - 1) * 100
}'
