#!/usr/bin/env bash
# `dmarc-ingest alerts check` and `dmarc-ingest digest --out` over COUNT (10,000)
# inventory domains of OWNERS (100) owners, each domain with SOURCES (5) sources a day for
# 32 days in the rollups the rules and the digest read (records_daily, reporter_daily:
# rows inserted as the materialized views would write them): ~1.6 million rollup rows.
# One source of every 10th domain is new and failing (a spoofing_new_source alert each);
# every 50th domain went silent 4 days ago (silence).
#
# Usage: benches/alerts-bench.sh [BIN]   (default: target/release/dmarc-ingest)
# Prints each command's wall time and peak RSS, and the alerts and files made.
set -euo pipefail
COUNT=${COUNT:-10000}
OWNERS=${OWNERS:-100}
SOURCES=${SOURCES:-5}
cd "$(dirname "$0")/.."
bin=${1:-target/release/dmarc-ingest}
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
deploy/dev/clickhouse.sh install
deploy/dev/clickhouse.sh start >/dev/null
[ "$bin" != target/release/dmarc-ingest ] || cargo build --release -q -p dmarc-ingest
tmp=$(mktemp -d)
db=bench_alerts
cleanup() { deploy/dev/clickhouse.sh query "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
export DMARC_INGEST_CLICKHOUSE_DATABASE=$db DMARC_INGEST_LOG=warn
deploy/dev/clickhouse.sh query "DROP DATABASE IF EXISTS $db" >/dev/null
"$bin" schema apply >/dev/null 2>&1
q() { deploy/dev/clickhouse.sh query "$1" >/dev/null; }
q "INSERT INTO $db.domain_inventory (domain, owner, group_name, parked, contact, removed, synced_at)
   SELECT concat('d', toString(number), '.bench.test'), concat('Owner ', toString(number % $OWNERS)),
          'Bench', 0, concat('it@d', toString(number), '.bench.test'), 0, now()
   FROM system.numbers LIMIT $COUNT"
# Day d (0 = today) of domain n, source s: 100 passing messages; source 9 of every 10th
# domain only today and yesterday, 80 failing; every 50th domain nothing in the last 4 days.
q "INSERT INTO $db.records_daily (day, policy_domain, source_ip_v6, source_ip, header_from,
       header_from_org, sender_org, disposition, dkim_pass, spf_pass, dmarc_pass, dkim_aligned,
       spf_aligned, messages, records)
   SELECT today() - d, concat('d', toString(n), '.bench.test'),
          toFixedString(unhex(concat('00000000000000000000FFFFC000', hex(toUInt8(s)), '0A')), 16),
          concat('192.0.', toString(s), '.10'), concat('d', toString(n), '.bench.test'),
          concat('d', toString(n), '.bench.test'), '', 'none', 1, 1, 1, 1, 1, 100, 1
   FROM (SELECT number % $COUNT AS n, intDiv(number, $COUNT) % 32 AS d, intDiv(number, $COUNT * 32) AS s
         FROM system.numbers LIMIT $((COUNT * 32 * SOURCES)))
   WHERE NOT (n % 50 = 0 AND d < 4)"
q "INSERT INTO $db.records_daily (day, policy_domain, source_ip_v6, source_ip, header_from,
       header_from_org, sender_org, disposition, dkim_pass, spf_pass, dmarc_pass, dkim_aligned,
       spf_aligned, messages, records)
   SELECT today() - d, concat('d', toString(n), '.bench.test'),
          toFixedString(unhex('00000000000000000000FFFFCB007142'), 16), '203.0.113.66',
          concat('d', toString(n), '.bench.test'), concat('d', toString(n), '.bench.test'), '',
          'none', 0, 0, 0, 0, 0, 80, 1
   FROM (SELECT number * 10 AS n, d FROM system.numbers ARRAY JOIN [0, 1] AS d LIMIT $((COUNT / 10 * 2)))
   WHERE n % 50 != 0"
q "INSERT INTO $db.reporter_daily (day, policy_domain, org_name, reports, messages)
   SELECT today() - d, concat('d', toString(n), '.bench.test'), 'bench.example', 1, 100 * $SOURCES
   FROM (SELECT number % $COUNT AS n, intDiv(number, $COUNT) AS d FROM system.numbers LIMIT $((COUNT * 32)))
   WHERE NOT (n % 50 = 0 AND d < 4)"
rows=$(deploy/dev/clickhouse.sh query "SELECT count() FROM $db.records_daily FORMAT TSV")
echo "rollup rows: $rows"
run() {
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    read -r secs kib <"$tmp/time"
    echo "$name: ${secs} s, peak RSS $((kib / 1024)) MiB: $(tail -n 1 "$tmp/err")"
}
run "alerts check (first)" "$bin" alerts check
run "alerts check (again)" "$bin" alerts check
deploy/dev/clickhouse.sh query "SELECT rule, count() FROM $db.alerts WHERE state = 'open' GROUP BY rule ORDER BY rule FORMAT TSV"
run "digest --out (all owners)" "$bin" digest --out "$tmp/digests"
echo "files: $(ls "$tmp/digests" | wc -l), $(du -sh "$tmp/digests" | cut -f1)"
