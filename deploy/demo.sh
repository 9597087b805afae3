#!/usr/bin/env bash
# The README's first command: the whole pipeline, end to end, on this machine.
# Installs and starts ClickHouse, dovecot and the test DNS server on 127.0.0.1 (state in
# .state/, no systemd), applies the schema, delivers sample-reports/ into a local mailbox (raw report files
# wrapped as mails, .eml and mbox as they are), runs `dmarc-ingest run --once`, names
# the sources (`enrich`: test DNS, a demo network database, demo services), loads a demo
# inventory and checks its DNS (`domains sync`, `dns check`), and prints
# what landed. Idempotent: run it again and the totals stay the same (the mails
# are delivered again; the reports are recognised as duplicates).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
state=${DMARC_STATE_DIR:-$repo/.state}
mkdir -p "$state"

echo "== servers"
deploy/dev/clickhouse.sh install
deploy/dev/dovecot.sh install
deploy/dev/dns.sh install
deploy/dev/clickhouse.sh start
deploy/dev/dovecot.sh start
deploy/dev/dns.sh start

echo "== build"
cargo build --release --locked -p dmarc-ingest
bin=$repo/target/release/dmarc-ingest

echo "== configuration ($state/demo.toml)"
password_file=$state/demo-imap-password
[ -s "$password_file" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$password_file"
chmod 600 "$password_file"
deploy/dev/dovecot.sh add-user reports "$(cat "$password_file")"
cat >"$state/demo.toml" <<TOML
[clickhouse]
url = "http://127.0.0.1:${DMARC_CH_HTTP_PORT:-8123}"
database = "dmarc"

[imap]
host = "127.0.0.1"
port = ${DMARC_IMAP_PORT:-1143}
tls = "none"
username = "reports"
password_file = "$password_file"
mailbox = "INBOX"
archive_mailbox = "Archive"
invalid_mailbox = "Invalid"

[dns]
nameservers = ["127.0.0.1:${DMARC_DNS_PORT:-5353}"]
timeout_ms = 300

[enrich]
asn_database = "$state/demo-networks.mmdb"
country_database = "$state/demo-networks.mmdb"
services_file = "$repo/sample-reports/demo-services.toml"

[domains]
# The demo inventory: the sample reports' domains, and domains of the test DNS zones
# (deploy/dev/dns/checks.test.zone) that show each colour.
file = "$repo/deploy/demo-domains.csv"
rua_address = "dmarc@reports.test"
TOML
# The demo's network database: documentation ranges and AS numbers (deploy/dev/networks.tsv).
python3 deploy/dev/make_mmdb.py deploy/dev/networks.tsv "$state/demo-networks.mmdb"
"$bin" --config "$state/demo.toml" schema apply

echo "== deliver sample-reports/ into reports' INBOX"
mails=$state/demo-mails
rm -rf "$mails"
# Every sample listed in sample-reports/expected-counts.tsv (its first column), whatever
# its name (containers/report-no-extension has no extension at all).
counts=sample-reports/expected-counts.tsv
mapfile -t files < <(awk -F'\t' '!/^#/ && NF { print "sample-reports/" $1 }' "$counts")
python3 deploy/dev/wrap-as-mail.py "$mails" "${files[@]}"
deploy/dev/dovecot.sh deliver reports INBOX "$mails"/*

echo "== dmarc-ingest run --once"
status=0
"$bin" --config "$state/demo.toml" run --once || status=$?
echo "(exit code $status: 1 means some mail was quarantined to Invalid, as the broken samples must be)"

echo "== dmarc-ingest enrich --all (reverse DNS from the test DNS server, networks, services)"
"$bin" --config "$state/demo.toml" enrich --all

echo "== dmarc-ingest domains sync, dns check (the inventory, what each domain publishes, its colour)"
"$bin" --config "$state/demo.toml" domains sync
"$bin" --config "$state/demo.toml" dns check

echo "== what landed"
q() { deploy/dev/clickhouse.sh query "$1"; }
echo "-- reports and messages per domain"
q "SELECT policy_domain, count() AS reports, sum(message_count) AS messages FROM dmarc.reports GROUP BY policy_domain ORDER BY messages DESC FORMAT PrettyCompactNoEscapes"
echo "-- top sources"
q "SELECT source_ip, sum(message_count) AS messages, sumIf(message_count, policy_dkim = 'pass' OR policy_spf = 'pass') AS dmarc_pass FROM dmarc.records GROUP BY source_ip ORDER BY messages DESC LIMIT 10 FORMAT PrettyCompactNoEscapes"
echo "-- who sends (records_enriched: service, else reverse-DNS organisation, else network)"
q "SELECT sender, service_type, any(country) AS country, uniqExact(source_ip) AS addresses, arraySlice(groupUniqArray(source_ip), 1, 3) AS some_addresses, sum(message_count) AS messages FROM dmarc.records_enriched GROUP BY sender, service_type ORDER BY messages DESC LIMIT 15 FORMAT PrettyCompactNoEscapes"
echo "-- the league table (domain_status; the sample domains are not in the test DNS: red, unanswered)"
q "SELECT status, domain, owner, dmarc_status AS dmarc, spf_status AS spf, mx_status AS mx, arrayStringConcat(arraySlice(reasons, 1, 2), '; ') AS reasons FROM dmarc.domain_status ORDER BY status = 'green', status = 'amber', domain FORMAT PrettyCompactNoEscapes"
echo "-- failures (mail moved to Invalid; each mail once, with how often it was delivered)"
q "SELECT source, reason, deliveries FROM dmarc.failures ORDER BY toUInt32OrZero(extract(source, ' uid ([0-9]+) ')), source LIMIT 20 FORMAT PrettyCompactNoEscapes"

echo "== totals beside $counts"
# Expected: every sample that yields reports (ok or recovered), each report once (a
# sample noted "duplicate of" another holds the same reports).
read -r want_reports want_records want_messages < <(awk -F'\t' '
    !/^#/ && NF && $2 != "error" && $7 !~ /^duplicate of/ { r += $3; c += $4; m += $5 }
    END { print r + 0, c + 0, m + 0 }' "$counts")
read -r got_reports got_records got_messages < <(q "SELECT
    (SELECT count() FROM dmarc.reports),
    (SELECT count() FROM dmarc.records),
    (SELECT sum(message_count) FROM dmarc.records) FORMAT TSV")
printf '%-10s %10s %10s\n' "" stored expected
printf '%-10s %10s %10s\n' reports "$got_reports" "$want_reports" records "$got_records" "$want_records" \
    messages "$got_messages" "$want_messages"
if [ "$got_reports $got_records $got_messages" = "$want_reports $want_records $want_messages" ]; then
    echo "the totals match $counts"
else
    echo "the totals do NOT match $counts" >&2
    exit 1
fi
