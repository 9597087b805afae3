#!/usr/bin/env bash
# Cold reverse-DNS throughput of `dmarc-ingest enrich` (issue 11): COUNT (20,000) source
# addresses never looked up, each with a PTR name and its A record, served by a DNS
# server of its own (deploy/dev/dns.sh with a generated zone, on ports 25353-25355 and
# a state dir of its own), stored by one imported report; `enrich --all` then looks them
# all up (PTR, then the name's A record: two queries per address).
#
# Usage: benches/enrich-bench.sh [BIN]   (default: target/release/dmarc-ingest)
# Prints addresses/s, the summary line and the peak RSS of the enrich process.
set -euo pipefail
COUNT=${COUNT:-20000}
cd "$(dirname "$0")/.."
bin=${1:-target/release/dmarc-ingest}
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
deploy/dev/clickhouse.sh install
deploy/dev/clickhouse.sh start >/dev/null
deploy/dev/dns.sh install
[ "$bin" != target/release/dmarc-ingest ] || cargo build --release -q -p dmarc-ingest
tmp=$(mktemp -d)
export DMARC_STATE_DIR=$tmp/state DMARC_DNS_PORT=25353 DMARC_DNS_AUTH_PORT=25354 DMARC_DNS_SILENT_PORT=25355
# (DMARC_STATE_DIR is unset below for the ClickHouse calls: the stop names it again.)
cleanup() { DMARC_STATE_DIR=$tmp/state deploy/dev/dns.sh stop >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT

# The zones: 10.1.0.0/16 (COUNT addresses at most 65,536) <-> hN.bench.test.
mkdir -p "$tmp/zones"
python3 - "$tmp/zones" "$COUNT" <<'PY'
import sys
out, count = sys.argv[1], int(sys.argv[2])
head = "$TTL 300\n@ SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 60\n@ NS ns.bench.test.\n"
with open(f"{out}/1.10.in-addr.arpa.zone", "w") as rev, open(f"{out}/bench.test.zone", "w") as fwd:
    rev.write("$ORIGIN 1.10.in-addr.arpa.\n" + head)
    fwd.write("$ORIGIN bench.test.\n" + head + "ns A 127.0.0.1\n")
    for i in range(count):
        a, b = divmod(i, 256)
        rev.write(f"{b}.{a} PTR h{i}.bench.test.\n")
        fwd.write(f"h{i} A 10.1.{a}.{b}\n")
PY
DMARC_DNS_EXTRA_ZONES=$tmp/zones deploy/dev/dns.sh start

# One report whose records come from every address.
python3 - "$tmp/report.xml" "$COUNT" <<'PY'
import sys
path, count = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write('<?xml version="1.0"?><feedback><report_metadata><org_name>bench.example</org_name>'
            '<email>r@bench.example</email><report_id>enrich-bench</report_id><date_range>'
            '<begin>1717200000</begin><end>1717286399</end></date_range></report_metadata>'
            '<policy_published><domain>example.com</domain><p>none</p></policy_published>')
    for i in range(count):
        a, b = divmod(i, 256)
        f.write(f'<record><row><source_ip>10.1.{a}.{b}</source_ip><count>1</count><policy_evaluated>'
                '<disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated>'
                '</row><identifiers><header_from>example.com</header_from></identifiers>'
                '<auth_results><spf><domain>example.com</domain><result>pass</result></spf>'
                '</auth_results></record>')
    f.write('</feedback>')
PY
unset DMARC_STATE_DIR
export DMARC_INGEST_CLICKHOUSE_DATABASE=bench_enrich DMARC_INGEST_LOG=warn
deploy/dev/clickhouse.sh query "DROP DATABASE IF EXISTS bench_enrich" >/dev/null
"$bin" schema apply >/dev/null 2>&1
"$bin" import "$tmp/report.xml" >/dev/null 2>&1
/usr/bin/time -f "%e %M" -o "$tmp/time" env DMARC_INGEST_DNS_NAMESERVERS=127.0.0.1:25353 \
    "$bin" enrich --all 2>"$tmp/err"
read -r secs kb <"$tmp/time"
awk -v n="$COUNT" -v s="$secs" -v kb="$kb" \
    'BEGIN {printf "enrich  %d new addresses in %.2f s: %.0f addresses/s, peak RSS %.0f MiB\n", n, s, n/s, kb/1024}'
tail -1 "$tmp/err"
