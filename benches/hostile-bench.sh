#!/usr/bin/env bash
# The daemon on a hostile mix: GOOD report mails (20 records each, from gen-report) and
# the mail of the poison-proof issue, COPIES of each (a gzip of 300 MiB of `x>` in one
# value, 64 MiB of `y>` in a comment, 10 GiB of zeros in gzip members, a mail of 500,000
# empty MIME parts, a zip entry in a method not decoded here, reports without identity,
# metadata after the records, a billion-laughs DOCTYPE, a 62 MB mail of one 46 MB gzip,
# a mail over the 64 MiB cap, and a valid report of WIDE (200,000) records whose metadata
# holds 60,000 <error> lines, stored like the good ones), delivered into a loopback
# dovecot and drained by
# `dmarc-ingest run --once` (release build, default limits) into the local ClickHouse
# (fresh database `bench_hostile`). Prints the time to drain, messages/s and the peak
# RSS of the daemon (target: at most 256 MiB whatever arrives).
#
# Usage: benches/hostile-bench.sh      (GOOD=500 COPIES=3 by default)
set -euo pipefail
GOOD=${GOOD:-500}
COPIES=${COPIES:-3}
WIDE=${WIDE:-200000}
cd "$(dirname "$0")/.."
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
deploy/dev/clickhouse.sh install
deploy/dev/dovecot.sh install
deploy/dev/clickhouse.sh start >/dev/null
deploy/dev/dovecot.sh start >/dev/null
cargo build --release -q -p dmarc-ingest -p dmarc-ingest-benches
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/files" "$tmp/mails"
for i in $(seq 1 "$GOOD"); do
    target/release/gen-report --records 20 --seed "$i" --report-id "bench-hostile-$i" --gzip \
        --out "$tmp/files/good-$i.xml.gz" 2>/dev/null
done
python3 - "$tmp/files" "$COPIES" "$WIDE" <<'EOF'
import gzip, io, struct, sys, zipfile, zlib
out, copies, wide = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def gz(data, level=6):
    return gzip.compress(data, level)

def flood(head, filler, total):
    chunk = filler * ((4 << 20) // len(filler))
    return gz(head) + gz(chunk, 9) * (total // len(chunk))

def report(rid, ip="192.0.2.1", metadata=True):
    meta = (f"<report_metadata><org_name>hostile.example</org_name><email>r@hostile.example</email>"
            f"<report_id>{rid}</report_id><date_range><begin>1700000000</begin><end>1700086399</end>"
            f"</date_range></report_metadata>") if metadata else ""
    return (f"<?xml version=\"1.0\"?><feedback>{meta}<policy_published><domain>example.com</domain>"
            f"</policy_published><record><row><source_ip>{ip}</source_ip><count>1</count></row>"
            f"<identifiers><header_from>example.com</header_from></identifiers></record></feedback>").encode()

def ppmd_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("r.xml", report("ppmd"))
    data = bytearray(buf.getvalue())
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.index(sig)
        data[at + off:at + off + 2] = struct.pack("<H", 98)
    return bytes(data)

def parts_mail(n):
    head = (b"From: r@hostile.example\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n")
    return head + b"--b\r\nContent-Type: text/plain\r\n\r\n\r\n" * n + b"--b--\r\n"

def wide_header(rid, records):
    # A valid report whose header is large (60,000 <error> lines, within
    # max_record_bytes): each of its many records must not cost the header again.
    errors = b"<error>e</error>" * 60_000
    record = (b"<record><row><source_ip>192.0.2.1</source_ip><count>1</count></row>"
              b"<identifiers><header_from>example.com</header_from></identifiers></record>")
    xml = report(rid).split(b"<record>")[0].replace(b"</date_range>", b"</date_range>" + errors)
    return gz(xml + record * records + b"</feedback>")

head = b"<?xml version=\"1.0\"?><feedback><report_metadata><org_name>"
zeros_member = gz(b"\0" * (16 << 20), 9)
late = report("late").replace(b"<feedback>", b"<feedback><record><row><source_ip>192.0.2.9</source_ip><count>1</count></row></record>", 1)
laughs = (b"<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
          + b"".join(b"<!ENTITY lol%d \"%s\">" % (i, (b"&lol%d;" % (i - 1) if i else b"&lol;") * 10) for i in range(1, 10))
          + b"]><feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>")
big = gz(bytes(range(256)) * (46 << 12), 0)          # ~46 MB of gzip, stored blocks
over = gz(bytes(range(256)) * (60 << 12), 0)         # a mail over the 64 MiB cap
for c in range(copies):
    files = {
        f"gt-flood-{c}.xml.gz": flood(head, b"x>", 300 << 20),
        f"comment-flood-{c}.xml.gz": flood(head + b"<!-- ", b"y>", 64 << 20),
        f"zeros-{c}.xml.gz": zeros_member * 640,
        f"ppmd-{c}.zip": ppmd_zip(),
        f"no-identity-{c}.xml": report(f"x{c}", metadata=False),
        f"late-{c}.xml": late,
        f"laughs-{c}.xml": laughs,
        f"big-{c}.xml.gz": big,
        f"over-{c}.xml.gz": over,
        f"wide-{c}.xml.gz": wide_header(f"wide-{c}", wide),
    }
    for name, data in files.items():
        with open(f"{out}/{name}", "wb") as f:
            f.write(data)
    with open(f"{out}/parts-{c}.eml", "wb") as f:
        f.write(parts_mail(500_000))
EOF
python3 deploy/dev/wrap-as-mail.py "$tmp/mails" "$tmp"/files/* >/dev/null
total=$(ls "$tmp/mails" | wc -l)
user=bench_hostile
rm -rf ".state/dovecot/mail/$user"
deploy/dev/dovecot.sh add-user "$user" secret >/dev/null
deploy/dev/dovecot.sh deliver "$user" INBOX "$tmp"/mails/* >/dev/null
export DMARC_INGEST_CLICKHOUSE_DATABASE=bench_hostile DMARC_INGEST_IMAP_HOST=127.0.0.1 \
    DMARC_INGEST_IMAP_PORT=${DMARC_IMAP_PORT:-1143} DMARC_INGEST_IMAP_TLS=none \
    DMARC_INGEST_IMAP_USERNAME=$user DMARC_INGEST_IMAP_PASSWORD=secret DMARC_INGEST_LOG=error
deploy/dev/clickhouse.sh query "DROP DATABASE IF EXISTS bench_hostile" >/dev/null
target/release/dmarc-ingest schema apply >/dev/null
code=0
/usr/bin/time -v target/release/dmarc-ingest run --once 2>"$tmp/time.txt" || code=$?
[ "$code" -le 1 ] || { cat "$tmp/time.txt"; exit 1; }
grep '^run:' "$tmp/time.txt"
secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$tmp/time.txt")
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/time.txt")
stored=$(deploy/dev/clickhouse.sh query "SELECT count() FROM bench_hostile.reports")
echo "mails: $total ($GOOD good, $((total - GOOD)) hostile); reports stored: $stored of $((GOOD + COPIES)) (the good and the wide ones)"
deploy/dev/clickhouse.sh query "SELECT reason_kind, count() FROM bench_hostile.failures GROUP BY reason_kind ORDER BY reason_kind"
awk -v n="$total" -v s="$secs" -v m="$rss" 'BEGIN {printf "drained in: %.2f s\nmessages/s: %.0f\nmax RSS: %.1f MiB (budget 256 MiB)\n", s, n/s, m/1024}'
