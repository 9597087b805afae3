#!/usr/bin/env bash
# Peak memory and throughput of `dmarc-ingest parse` on one large gzip report.
#
# Builds the release binary, generates a RECORDS-record report (gzip, about 640 bytes of
# XML per record) with gen-report into a temporary directory, parses it with rows going to
# /dev/null under /usr/bin/time -v, and prints max RSS, elapsed time and records/s.
#
# Usage: benches/parse-memory.sh
# Environment: RECORDS (default 1000000), SEED (default 1), DMARCBIS=1 for an RFC 9990
# report, KEEP=1 to keep the temporary directory, VERIFY=1 to parse a second time (not
# timed) and check the row count and the sum of message_count against gen-report's totals.
# Exits non-zero if parse fails or the check does not match.
set -euo pipefail

RECORDS=${RECORDS:-1000000}
SEED=${SEED:-1}
DMARCBIS=${DMARCBIS:-0}

cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/time ]; then
    echo "installing GNU time" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq time >/dev/null
fi

cargo build --release -p dmarc-ingest

tmp=$(mktemp -d)
if [ "${KEEP:-0}" = 1 ]; then
    echo "keeping $tmp" >&2
else
    trap 'rm -rf "$tmp"' EXIT
fi

# Named the way reporters name their attachments.
report="$tmp/example.net!example.com!1700006400!1700092799.xml.gz"
gen_args=(--records "$RECORDS" --seed "$SEED" --gzip --out "$report")
[ "$DMARCBIS" = 1 ] && gen_args+=(--dmarcbis)

gen_start=$(date +%s.%N)
if ! cargo run --release -q -p dmarc-ingest-benches --bin gen-report -- "${gen_args[@]}" 2>"$tmp/gen.json"; then
    cat "$tmp/gen.json" >&2
    exit 1
fi
gen_end=$(date +%s.%N)
totals=$(tail -n 1 "$tmp/gen.json")
xml_bytes=$(sed -n 's/.*"xml_bytes":\([0-9]*\).*/\1/p' <<<"$totals")
gz_bytes=$(stat -c %s "$report")

status=0
/usr/bin/time -v -o "$tmp/time.txt" target/release/dmarc-ingest parse "$report" >/dev/null 2>"$tmp/parse.err" || status=$?

max_rss_kb=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$tmp/time.txt")
elapsed=$(sed -n 's/^[[:space:]]*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tmp/time.txt")
# h:mm:ss or m:ss.ss -> seconds
elapsed_s=$(awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }' <<<"$elapsed")

echo "generated:   $totals"
awk -v g="$gz_bytes" -v x="$xml_bytes" -v r="$RECORDS" -v t0="$gen_start" -v t1="$gen_end" 'BEGIN {
    printf "report:      %d records, %.1f MiB XML (%.0f bytes/record), %.1f MiB gzip, %.2f s in cargo run gen-report\n",
        r, x / 1048576, x / r, g / 1048576, t1 - t0 }'
awk -v kb="$max_rss_kb" -v x="$xml_bytes" 'BEGIN {
    printf "max RSS:     %.1f MiB (%.2f x the XML size)\n", kb / 1024, kb * 1024 / x }'
awk -v e="$elapsed" -v s="$elapsed_s" -v r="$RECORDS" 'BEGIN {
    printf "elapsed:     %s (%.2f s)\n", e, s
    if (s > 0) printf "records/s:   %.0f\n", r / s }'

if [ "$status" -ne 0 ]; then
    echo "dmarc-ingest parse exited with status $status:" >&2
    head -n 20 "$tmp/parse.err" >&2
    exit "$status"
fi

if [ "${VERIFY:-0}" = 1 ]; then
    want_messages=$(sed -n 's/.*"messages":\([0-9]*\).*/\1/p' <<<"$totals")
    got=$(target/release/dmarc-ingest parse "$report" |
        awk 'match($0, /"message_count":[0-9]+/) {
                 n++; m += substr($0, RSTART + 16, RLENGTH - 16)
             } END { printf "%d %d", n, m }')
    echo "verify:      parse gave $got (records messages), gen-report $RECORDS $want_messages"
    [ "$got" = "$RECORDS $want_messages" ] || { echo "MISMATCH" >&2; exit 1; }
fi
