#!/usr/bin/env bash
# End-to-end import throughput and peak RSS: one generated gzip report of RECORDS records
# -> `dmarc-ingest import` -> the local ClickHouse (deploy/dev/clickhouse.sh), into a
# fresh database `bench_import`. Prints records/s and max RSS.
#
# Usage: benches/import-bench.sh     (RECORDS=1000000 by default)
set -euo pipefail
RECORDS=${RECORDS:-1000000}
cd "$(dirname "$0")/.."
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
deploy/dev/clickhouse.sh install
deploy/dev/clickhouse.sh start >/dev/null
cargo build --release -q -p dmarc-ingest -p dmarc-ingest-benches
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
target/release/gen-report --records "$RECORDS" --gzip --out "$tmp/report.xml.gz" 2>/dev/null
export DMARC_INGEST_CLICKHOUSE_DATABASE=bench_import
deploy/dev/clickhouse.sh query "DROP DATABASE IF EXISTS bench_import" >/dev/null
target/release/dmarc-ingest schema apply
/usr/bin/time -v target/release/dmarc-ingest import "$tmp/report.xml.gz" 2>"$tmp/time.txt" || { cat "$tmp/time.txt"; exit 1; }
grep '^import:' "$tmp/time.txt"
secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$tmp/time.txt")
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/time.txt")
stored=$(deploy/dev/clickhouse.sh query "SELECT count() FROM bench_import.records")
echo "records stored: $stored"
awk -v r="$RECORDS" -v s="$secs" -v m="$rss" 'BEGIN {printf "elapsed: %.2f s\nrecords/s: %.0f\nmax RSS: %.1f MiB\n", s, r/s, m/1024}'
