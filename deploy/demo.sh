#!/usr/bin/env bash
# The README's first command: the whole pipeline, end to end, on this machine.
# Installs and starts ClickHouse and dovecot on 127.0.0.1 (state in .state/, no systemd),
# applies the schema, delivers sample-reports/ into a local mailbox (raw report files
# wrapped as mails, .eml and mbox as they are), runs `dmarc-ingest run --once`, and
# prints what landed. Idempotent: run it again and the totals stay the same (the mails
# are delivered again; the reports are recognised as duplicates).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
state=${DMARC_STATE_DIR:-$repo/.state}
mkdir -p "$state"

echo "== servers"
deploy/dev/clickhouse.sh install
deploy/dev/dovecot.sh install
deploy/dev/clickhouse.sh start
deploy/dev/dovecot.sh start

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
TOML
"$bin" --config "$state/demo.toml" schema apply

echo "== deliver sample-reports/ into reports' INBOX"
mails=$state/demo-mails
rm -rf "$mails"
mapfile -t files < <(find sample-reports -type f \( -name '*.xml' -o -name '*.gz' -o -name '*.zip' -o -name '*.eml' -o -name '*.mbox' \) | sort)
python3 deploy/dev/wrap-as-mail.py "$mails" "${files[@]}"
deploy/dev/dovecot.sh deliver reports INBOX "$mails"/*

echo "== dmarc-ingest run --once"
status=0
"$bin" --config "$state/demo.toml" run --once || status=$?
echo "(exit code $status: 1 means some mail was quarantined to Invalid, as the broken samples must be)"

echo "== what landed"
q() { deploy/dev/clickhouse.sh query "$1"; }
echo "-- reports and messages per domain"
q "SELECT policy_domain, count() AS reports, sum(message_count) AS messages FROM dmarc.reports GROUP BY policy_domain ORDER BY messages DESC FORMAT PrettyCompact"
echo "-- top sources"
q "SELECT source_ip, sum(message_count) AS messages, sumIf(message_count, policy_dkim = 'pass' OR policy_spf = 'pass') AS dmarc_pass FROM dmarc.records GROUP BY source_ip ORDER BY messages DESC LIMIT 10 FORMAT PrettyCompact"
echo "-- failures (mail moved to Invalid)"
q "SELECT source, reason FROM dmarc.failures ORDER BY logged_at DESC LIMIT 20 FORMAT PrettyCompact"
