#!/usr/bin/env bash
# Daemon throughput and peak RSS: MAILS report mails of RECORDS records each (one gzip
# attachment per mail, made by gen-report) are delivered into a loopback dovecot, then
# `dmarc-ingest run --once` drains them into the local ClickHouse (fresh database
# `bench_daemon`). Prints messages/s, records/s and max RSS.
#
# Usage: benches/daemon-bench.sh      (MAILS=2000 RECORDS=20 by default)
set -euo pipefail
MAILS=${MAILS:-2000}
RECORDS=${RECORDS:-20}
cd "$(dirname "$0")/.."
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
deploy/dev/clickhouse.sh install
deploy/dev/dovecot.sh install
deploy/dev/clickhouse.sh start >/dev/null
deploy/dev/dovecot.sh start >/dev/null
cargo build --release -q -p dmarc-ingest -p dmarc-ingest-benches
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/reports" "$tmp/mails"
for i in $(seq 1 "$MAILS"); do
    target/release/gen-report --records "$RECORDS" --seed "$i" --report-id "bench-daemon-$i" --gzip --out "$tmp/reports/r$i.xml.gz" 2>/dev/null
done
python3 deploy/dev/wrap-as-mail.py "$tmp/mails" "$tmp"/reports/*.xml.gz
user=bench_daemon
rm -rf ".state/dovecot/mail/$user"
deploy/dev/dovecot.sh add-user "$user" secret >/dev/null
deploy/dev/dovecot.sh deliver "$user" INBOX "$tmp"/mails/*.eml >/dev/null
export DMARC_INGEST_CLICKHOUSE_DATABASE=bench_daemon DMARC_INGEST_IMAP_HOST=127.0.0.1 \
    DMARC_INGEST_IMAP_PORT=${DMARC_IMAP_PORT:-1143} DMARC_INGEST_IMAP_TLS=none \
    DMARC_INGEST_IMAP_USERNAME=$user DMARC_INGEST_IMAP_PASSWORD=secret DMARC_INGEST_LOG=warn
deploy/dev/clickhouse.sh query "DROP DATABASE IF EXISTS bench_daemon" >/dev/null
target/release/dmarc-ingest schema apply
/usr/bin/time -v target/release/dmarc-ingest run --once 2>"$tmp/time.txt" || { cat "$tmp/time.txt"; exit 1; }
grep '^run:' "$tmp/time.txt"
secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$tmp/time.txt")
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/time.txt")
stored=$(deploy/dev/clickhouse.sh query "SELECT count() FROM bench_daemon.reports")
echo "reports stored: $stored of $MAILS"
awk -v n="$MAILS" -v r="$RECORDS" -v s="$secs" -v m="$rss" 'BEGIN {printf "elapsed: %.2f s\nmessages/s: %.0f\nrecords/s: %.0f\nmax RSS: %.1f MiB\n", s, n/s, n*r/s, m/1024}'
