#!/usr/bin/env bash
# What source naming costs ingestion (issue 11: at most +10% on the 1M-record import with
# a warm cache). Ingestion itself never looks anything up; the cost is the naming pass
# running beside it (the daemon's background `enrich`, here every second, the most often
# `[enrich] refresh_secs` allows) competing for ClickHouse and the CPU. A daemon (`run`,
# on an empty mailbox of the dev dovecot) does those passes, as in production: a full
# pass at start, then passes over the records stored since the previous one.
#
# 1. A 1M-record report is imported into a fresh database and every source gets a
#    current name (written by SQL with the naming version `enrich` uses, as a finished
#    `enrich --all` would leave them: the generated report has ~660,000 addresses all over
#    the internet, which the test DNS server refuses): the cache is warm.
# 2. A second report with the same sources (same seed, another report id) is imported
#    alone: the baseline.
# 3. A third is imported while the daemon runs its passes beside it.
# Prints records/s of 2 and 3 and the overhead.
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
deploy/dev/dovecot.sh install
deploy/dev/dovecot.sh start >/dev/null
deploy/dev/dovecot.sh add-user bench_overhead bench-password >/dev/null
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

echo "== 1. warm the names: import, then a current name for every source"
import_secs "$tmp/warm.xml.gz" >/dev/null
# The naming version of this binary and database: from one address named in a scratch
# database.
printf '<feedback><report_metadata><org_name>o</org_name><email>e@o.example</email><report_id>v</report_id><date_range><begin>1700000000</begin><end>1700086399</end></date_range></report_metadata><policy_published><domain>example.com</domain><p>none</p></policy_published><record><row><source_ip>192.0.2.1</source_ip><count>1</count><policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row><identifiers><header_from>example.com</header_from></identifiers><auth_results><spf><domain>example.com</domain><result>pass</result></spf></auth_results></record></feedback>' >"$tmp/one.xml"
deploy/dev/clickhouse.sh query "DROP DATABASE IF EXISTS bench_enrich_version" >/dev/null
DMARC_INGEST_CLICKHOUSE_DATABASE=bench_enrich_version "$bin" schema apply >/dev/null
DMARC_INGEST_CLICKHOUSE_DATABASE=bench_enrich_version "$bin" import "$tmp/one.xml" 2>/dev/null
DMARC_INGEST_CLICKHOUSE_DATABASE=bench_enrich_version "$bin" enrich --all 2>&1 | tail -1
version=$(deploy/dev/clickhouse.sh query "SELECT any(naming_version) FROM bench_enrich_version.source_names")
deploy/dev/clickhouse.sh query "DROP DATABASE bench_enrich_version" >/dev/null
deploy/dev/clickhouse.sh query "INSERT INTO bench_enrich_overhead.source_names
    SELECT source_ip_v6, 'absent', '', '', '', now(), now() + 7 * 86400, 0, '', '', '', '',
           any(source_ip), '$version'
    FROM bench_enrich_overhead.records GROUP BY source_ip_v6"
echo "named: $(deploy/dev/clickhouse.sh query "SELECT count() FROM bench_enrich_overhead.source_names") (naming version $version)"
"$bin" enrich --all 2>&1 | tail -1
echo "== 2. import alone"
alone=$(import_secs "$tmp/baseline.xml.gz")
echo "== 3. import beside the daemon's naming passes (every second)"
DMARC_INGEST_IMAP_HOST=127.0.0.1 DMARC_INGEST_IMAP_PORT=${DMARC_IMAP_PORT:-1143} \
    DMARC_INGEST_IMAP_TLS=none DMARC_INGEST_IMAP_USERNAME=bench_overhead \
    DMARC_INGEST_IMAP_PASSWORD=bench-password DMARC_INGEST_METRICS_LISTEN= \
    DMARC_INGEST_ENRICH_REFRESH_SECS=1 DMARC_INGEST_LOG=info \
    "$bin" run >"$tmp/daemon.log" 2>&1 &
loop_pid=$!
sleep 5   # the daemon's first (full) pass, as after a restart
beside=$(import_secs "$tmp/beside.xml.gz")
kill -TERM "$loop_pid" 2>/dev/null || true
wait "$loop_pid" 2>/dev/null || true
loop_pid=
stored=$(deploy/dev/clickhouse.sh query "SELECT count() FROM bench_enrich_overhead.records")
names=$(deploy/dev/clickhouse.sh query "SELECT uniqExact(source_ip_v6) FROM bench_enrich_overhead.source_names")
echo "records stored: $stored (3 x $RECORDS expected); addresses named: $names"
grep -c "source names refreshed" "$tmp/daemon.log" | sed 's/^/daemon passes that named something: /' || true
awk -v r="$RECORDS" -v a="$alone" -v b="$beside" 'BEGIN {
    printf "import alone:          %.2f s, %.0f records/s\n", a, r / a
    printf "import beside enrich:  %.2f s, %.0f records/s\n", b, r / b
    printf "overhead: %+.1f%% (target: at most +10%%)\n", (b / a - 1) * 100
}'
