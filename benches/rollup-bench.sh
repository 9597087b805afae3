#!/usr/bin/env bash
# Rollup query speed: a year of daily rollups for DOMAINS domains x SOURCES sources a day
# (synthetic, written straight into records_daily of a fresh database `bench_rollup`),
# then the dashboard-style queries, each timed over HTTP (best of 3).
#
# Usage: benches/rollup-bench.sh     (DOMAINS=300 SOURCES=40 by default: 4.4M rollup rows)
set -euo pipefail
DOMAINS=${DOMAINS:-300}
SOURCES=${SOURCES:-40}
cd "$(dirname "$0")/.."
deploy/dev/clickhouse.sh install
deploy/dev/clickhouse.sh start >/dev/null
cargo build --release -q -p dmarc-ingest
export DMARC_INGEST_CLICKHOUSE_DATABASE=bench_rollup
q() { deploy/dev/clickhouse.sh query "$1"; }
q "DROP DATABASE IF EXISTS bench_rollup" >/dev/null
target/release/dmarc-ingest schema apply
rows=$((365 * DOMAINS * SOURCES))
q "INSERT INTO bench_rollup.records_daily
   SELECT toDate('2025-01-01') + intDiv(number, $DOMAINS * $SOURCES) AS day,
          concat('d', toString(number % $DOMAINS), '.example') AS policy_domain,
          IPv6StringToNum(concat('::ffff:10.', toString(intDiv(number, $DOMAINS) % $SOURCES), '.0.1')) AS source_ip_v6,
          concat('10.', toString(intDiv(number, $DOMAINS) % $SOURCES), '.0.1') AS source_ip,
          policy_domain AS header_from, policy_domain AS header_from_org,
          concat('esp', toString(intDiv(number, $DOMAINS) % 12), '.example') AS sender_org,
          'none' AS disposition,
          number % 3 != 0 AS dkim_pass, number % 5 != 0 AS spf_pass,
          (number % 3 != 0) OR (number % 5 != 0) AS dmarc_pass,
          number % 3 != 0 AS dkim_aligned, number % 7 != 0 AS spf_aligned,
          1 + number % 97 AS messages, 1 AS records
   FROM system.numbers LIMIT $rows"
q "OPTIMIZE TABLE bench_rollup.records_daily FINAL" || true
echo "rollup rows: $(q "SELECT count() FROM bench_rollup.records_daily")"
time_query() {
    local name=$1 sql=$2 best=999 t
    for _ in 1 2 3; do
        t=$(curl -s -o /dev/null -w '%{time_total}' --data-binary "$sql" "http://127.0.0.1:${DMARC_CH_HTTP_PORT:-8123}/")
        best=$(awk -v a="$best" -v b="$t" 'BEGIN {print (b < a) ? b : a}')
    done
    printf '%-48s %6.3f s\n' "$name" "$best"
}
time_query "daily volume + compliance, all domains, 1 year" \
  "SELECT day, policy_domain, sum(messages), sumIf(messages, dmarc_pass = 1) FROM bench_rollup.records_daily WHERE day >= toDate('2025-01-01') GROUP BY day, policy_domain FORMAT Null"
time_query "top sources of one domain, 1 year" \
  "SELECT source_ip, sender_org, sum(messages) AS m, sumIf(messages, dmarc_pass = 1) / sum(messages) AS pass_rate FROM bench_rollup.records_daily WHERE policy_domain = 'd7.example' GROUP BY source_ip, sender_org ORDER BY m DESC LIMIT 20 FORMAT Null"
time_query "p=reject readiness per domain, 1 year" \
  "SELECT policy_domain, sumIf(messages, dmarc_pass = 0) / sum(messages) AS would_block FROM bench_rollup.records_daily GROUP BY policy_domain ORDER BY would_block DESC FORMAT Null"
time_query "forwarded mail by sender, 1 year" \
  "SELECT sender_org, sum(messages) FROM bench_rollup.records_daily WHERE dkim_aligned = 1 AND spf_aligned = 0 GROUP BY sender_org FORMAT Null"
