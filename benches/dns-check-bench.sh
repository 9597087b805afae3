#!/usr/bin/env bash
# `dmarc-ingest dns check` of COUNT (10,000) inventory domains (issue 12; target: under
# 60 s with bounded concurrency and memory). Each domain dN.bench.test publishes DMARC,
# SPF with one include, an MX, MTA-STS and TLS-RPT, served by a DNS server of its own
# (deploy/dev/dns.sh with a generated zone, on ports 25363-25365 and a state dir of its
# own); every domain also has a DKIM selector seen in an imported report. About 9
# queries per domain (DMARC, SPF, include, MX, MTA-STS, TLS-RPT, DKIM, the rua
# authorisation).
#
# Usage: benches/dns-check-bench.sh [BIN]   (default: target/release/dmarc-ingest)
# Prints domains/s, the summary line and the peak RSS of the dns check process.
set -euo pipefail
COUNT=${COUNT:-10000}
cd "$(dirname "$0")/.."
bin=${1:-target/release/dmarc-ingest}
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
deploy/dev/clickhouse.sh install
deploy/dev/clickhouse.sh start >/dev/null
deploy/dev/dns.sh install
[ "$bin" != target/release/dmarc-ingest ] || cargo build --release -q -p dmarc-ingest
tmp=$(mktemp -d)
export DMARC_STATE_DIR=$tmp/state DMARC_DNS_PORT=25363 DMARC_DNS_AUTH_PORT=25364 DMARC_DNS_SILENT_PORT=25365
# (DMARC_STATE_DIR is unset below for the ClickHouse calls: the stop names it again.)
cleanup() { DMARC_STATE_DIR=$tmp/state deploy/dev/dns.sh stop >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT

mkdir -p "$tmp/zones"
python3 - "$tmp" "$COUNT" <<'PY'
import sys, base64
out, count = sys.argv[1], int(sys.argv[2])
# A 2048-bit RSA SubjectPublicKeyInfo (only its size is read).
modulus = b"\x00\x80" + b"\xab" * 255
def der(tag, body):
    n = len(body)
    length = bytes([n]) if n < 128 else (bytes([0x81, n]) if n < 256 else bytes([0x82, n >> 8, n & 255]))
    return bytes([tag]) + length + body
rsa = der(0x30, der(0x02, modulus) + der(0x02, b"\x01\x00\x01"))
alg = der(0x30, der(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
key = base64.b64encode(der(0x30, alg + der(0x03, b"\x00" + rsa))).decode()
chunks = " ".join(f'"{key[i:i+200]}"' for i in range(0, len(key), 200))
head = "$TTL 300\n@ SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 60\n@ NS ns.bench.test.\n"
with open(f"{out}/zones/bench.test.zone", "w") as z:
    z.write("$ORIGIN bench.test.\n" + head + "ns A 127.0.0.1\n")
    z.write('_spf TXT "v=spf1 ip4:192.0.2.0/24 -all"\nmx A 192.0.2.25\n')
    z.write('*._report._dmarc TXT "v=DMARC1"\n')
    for i in range(count):
        d = f"d{i}"
        z.write(f'_dmarc.{d} TXT "v=DMARC1; p=reject; rua=mailto:dmarc@reports.bench.test"\n')
        z.write(f'{d} TXT "v=spf1 ip4:198.51.100.0/24 include:_spf.bench.test -all"\n')
        z.write(f'{d} MX 10 mx.bench.test.\n')
        z.write(f'_mta-sts.{d} TXT "v=STSv1; id=1"\n')
        z.write(f'_smtp._tls.{d} TXT "v=TLSRPTv1; rua=mailto:tls@bench.test"\n')
        z.write(f's1._domainkey.{d} TXT "v=DKIM1; k=rsa; p=" {chunks}\n')
with open(f"{out}/domains.csv", "w") as f:
    f.write("domain,owner,group,parked,contact\n")
    for i in range(count):
        f.write(f"d{i}.bench.test,Owner {i % 50},Group {i % 7},no,\n")
# Yesterday's report per 1,000 domains: every domain's selector s1 seen.
import time
begin = int(time.time()) - 86400
for part in range(0, count, 1000):
    with open(f"{out}/report-{part}.xml", "w") as f:
        f.write('<?xml version="1.0"?><feedback><report_metadata><org_name>bench.example</org_name>'
                f'<email>r@bench.example</email><report_id>dns-bench-{part}</report_id><date_range>'
                f'<begin>{begin}</begin><end>{begin + 86399}</end></date_range></report_metadata>'
                '<policy_published><domain>bench.test</domain><p>reject</p></policy_published>')
        for i in range(part, min(part + 1000, count)):
            f.write('<record><row><source_ip>192.0.2.1</source_ip><count>1</count><policy_evaluated>'
                    '<disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated>'
                    f'</row><identifiers><header_from>d{i}.bench.test</header_from></identifiers>'
                    f'<auth_results><dkim><domain>d{i}.bench.test</domain><selector>s1</selector>'
                    '<result>pass</result></dkim></auth_results></record>')
        f.write('</feedback>')
PY
DMARC_DNS_EXTRA_ZONES=$tmp/zones deploy/dev/dns.sh start
unset DMARC_STATE_DIR
export DMARC_INGEST_CLICKHOUSE_DATABASE=bench_dns_check DMARC_INGEST_LOG=warn
export DMARC_INGEST_DOMAINS_FILE=$tmp/domains.csv DMARC_INGEST_DOMAINS_RUA_ADDRESS=dmarc@reports.bench.test
deploy/dev/clickhouse.sh query "DROP DATABASE IF EXISTS bench_dns_check" >/dev/null
"$bin" schema apply >/dev/null 2>&1
"$bin" import "$tmp"/report-*.xml >/dev/null 2>&1
"$bin" domains sync 2>/dev/null
/usr/bin/time -f "%e %M" -o "$tmp/time" env DMARC_INGEST_DNS_NAMESERVERS=127.0.0.1:25363 \
    "$bin" dns check 2>"$tmp/err"
read -r secs kb <"$tmp/time"
awk -v n="$COUNT" -v s="$secs" -v kb="$kb" \
    'BEGIN {printf "dns check  %d domains in %.2f s: %.0f domains/s, peak RSS %.0f MiB\n", n, s, n/s, kb/1024}'
tail -1 "$tmp/err"
deploy/dev/clickhouse.sh query "SELECT status, count() FROM bench_dns_check.domain_status GROUP BY status ORDER BY status FORMAT TSV"
deploy/dev/clickhouse.sh query "DROP DATABASE IF EXISTS bench_dns_check" >/dev/null
