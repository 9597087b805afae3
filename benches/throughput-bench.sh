#!/usr/bin/env bash
# Throughput where the load is (issue 10), each figure for every binary given, in turns,
# so that a before/after comparison is measured in one run on the same machine state:
#
#   small   `import` of SMALL (10,000) gzip reports of 5 records each   -> reports/s
#   daemon  `run --once` over MAILS (2,000) mails of 20 records         -> messages/s
#   big     `import` of one BIG (1,000,000)-record gzip report          -> records/s
#   publish median publish time per batch of 500 small reports into an empty database,
#           and with FILL (10,000,000) reports (and their records) already stored, in
#           ROUNDS turns of 4 batches each
#
# Usage: benches/throughput-bench.sh [BIN...]   (default: target/release/dmarc-ingest)
#        ONLY="small daemon" benches/throughput-bench.sh ...   runs some of them
# small, daemon and big run once untimed (warm-up: the first timed run used to be up to
# 2x slower), then ROUNDS (3) times for every binary in turns, and print each binary's
# median. A gauge of the machine's speed comes first and last (gunzip of the big report,
# one core): this machine's speed varies up to 3x over a day, so compare figures of one
# run, or figures divided by the gauge.
# Inputs are generated once into .state/bench/ (the 2,000 mails are delivered once and
# the Maildir restored from a copy before each run). Loopback dovecot and ClickHouse.
set -euo pipefail
SMALL=${SMALL:-10000}
MAILS=${MAILS:-2000}
BIG=${BIG:-1000000}
FILL=${FILL:-10000000}
ONLY=${ONLY:-small daemon big publish}
ROUNDS=${ROUNDS:-3}
cd "$(dirname "$0")/.."
repo=$PWD
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/dmarc-ingest)
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
deploy/dev/clickhouse.sh install
deploy/dev/dovecot.sh install
deploy/dev/clickhouse.sh start >/dev/null
deploy/dev/dovecot.sh start >/dev/null
cargo build --release -q -p dmarc-ingest -p dmarc-ingest-benches
gen=target/release/gen-report
cache=.state/bench
mkdir -p "$cache"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
query() { deploy/dev/clickhouse.sh query "$1"; }

# Reports: DIR COUNT RECORDS PREFIX [BEGIN], once (BEGIN: the reports' day, Unix seconds;
# 2023-11-15 by default).
make_reports() {
    local dir=$1 count=$2 records=$3 prefix=$4 begin=${5:-1700006400}
    [ -f "$dir.done" ] && return
    rm -rf "$dir"; mkdir -p "$dir"
    for i in $(seq 1 "$count"); do
        $gen --records "$records" --seed "$i" --report-id "$prefix-$i" --begin "$begin" --gzip --out "$dir/r$i.xml.gz" 2>/dev/null
    done
    touch "$dir.done"
}

# Runs "$@" (DMARC_INGEST_* set by the caller); prints its wall seconds. rss_mib: its
# peak RSS.
timed() {
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" >"$tmp/out" 2>"$tmp/err" || { tail -5 "$tmp/err" >&2; return 1; }
    awk '{print $1}' "$tmp/time"
}
rss_mib() { awk '{printf "%.0f", $2/1024}' "$tmp/time"; }

# Prints "RATE" lines collected in $tmp/rates ("BIN RATE" per run) as each binary's
# median: median KIND UNIT.
median() {
    for bin in "${bins[@]}"; do
        awk -v b="$bin" '$1 == b {print $2}' "$tmp/rates" | sort -n |
            awk -v b="$bin" -v k="$1" -v u="$2" '{v[NR] = $1} END {
                m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                printf "%-7s %-40s median of %d: %7.0f %s (runs %.0f-%.0f)\n", k, b, NR, m, u, v[1], v[NR]}'
    done
    rm -f "$tmp/rates"
}

# The machine's speed: seconds to gunzip the big report on one core.
gauge() {
    [ -f "$cache/big.xml.gz" ] || $gen --records "$BIG" --gzip --out "$cache/big.xml.gz" 2>/dev/null
    /usr/bin/time -f "%e" -o "$tmp/gauge" sh -c "gzip -dc '$cache/big.xml.gz' >/dev/null"
    echo "gauge   gunzip of the 1M-record report: $(cat "$tmp/gauge") s (lower is a faster machine)"
}

# A new empty database DB with the schema of BIN (each binary's own migrations).
fresh_db() {
    query "DROP DATABASE IF EXISTS $1" >/dev/null
    DMARC_INGEST_CLICKHOUSE_DATABASE=$1 "$2" schema apply >/dev/null 2>&1
}

gauge
for what in $ONLY; do
    case $what in
    small)
        make_reports "$cache/small" "$SMALL" 5 bench-small
        small_run() {
            fresh_db bench_small "$1"
            secs=$(DMARC_INGEST_CLICKHOUSE_DATABASE=bench_small DMARC_INGEST_LOG=warn timed "$1" import "$cache/small")
            stored=$(query "SELECT count() FROM bench_small.reports")
            awk -v b="$1" -v n="$SMALL" -v s="$secs" -v st="$stored" -v m="$(rss_mib)" \
                'BEGIN {printf "small   %-40s %6.2f s  %7.0f reports/s  (%d stored)  %d MiB\n", b, s, n/s, st, m}'
            awk -v b="$1" -v n="$SMALL" -v s="$secs" 'BEGIN {print b, n/s}' >>"$tmp/rates"
        }
        small_run "${bins[0]}" >/dev/null; rm -f "$tmp/rates"
        for _ in $(seq "$ROUNDS"); do for bin in "${bins[@]}"; do small_run "$bin"; done; done
        median small reports/s ;;
    daemon)
        user=bench_throughput
        home=.state/dovecot/mail/$user
        if [ ! -d "$cache/maildir" ]; then
            make_reports "$cache/daemon-reports" "$MAILS" 20 bench-daemon
            rm -rf "$tmp/mails"; mkdir -p "$tmp/mails"
            python3 deploy/dev/wrap-as-mail.py "$tmp/mails" "$cache"/daemon-reports/*.xml.gz
            rm -rf "$home"
            deploy/dev/dovecot.sh add-user "$user" secret >/dev/null
            deploy/dev/dovecot.sh deliver "$user" INBOX "$tmp"/mails/*.eml >/dev/null
            cp -a "$home/Maildir" "$cache/maildir"
        fi
        deploy/dev/dovecot.sh add-user "$user" secret >/dev/null
        daemon_run() {
            rm -rf "$home/Maildir"; cp -a "$cache/maildir" "$home/Maildir"
            fresh_db bench_throughput "$1"
            secs=$(DMARC_INGEST_CLICKHOUSE_DATABASE=bench_throughput DMARC_INGEST_IMAP_HOST=127.0.0.1 \
                DMARC_INGEST_IMAP_PORT=${DMARC_IMAP_PORT:-1143} DMARC_INGEST_IMAP_TLS=none \
                DMARC_INGEST_IMAP_USERNAME=$user DMARC_INGEST_IMAP_PASSWORD=secret DMARC_INGEST_LOG=warn \
                timed "$1" run --once)
            stored=$(query "SELECT count() FROM bench_throughput.reports")
            awk -v b="$1" -v n="$MAILS" -v s="$secs" -v st="$stored" -v m="$(rss_mib)" \
                'BEGIN {printf "daemon  %-40s %6.2f s  %7.0f messages/s  (%d stored)  %d MiB\n", b, s, n/s, st, m}'
            awk -v b="$1" -v n="$MAILS" -v s="$secs" 'BEGIN {print b, n/s}' >>"$tmp/rates"
        }
        daemon_run "${bins[0]}" >/dev/null; rm -f "$tmp/rates"
        for _ in $(seq "$ROUNDS"); do for bin in "${bins[@]}"; do daemon_run "$bin"; done; done
        median daemon messages/s ;;
    big)
        [ -f "$cache/big.xml.gz" ] || $gen --records "$BIG" --gzip --out "$cache/big.xml.gz" 2>/dev/null
        big_run() {
            fresh_db bench_big "$1"
            secs=$(DMARC_INGEST_CLICKHOUSE_DATABASE=bench_big DMARC_INGEST_LOG=warn timed "$1" import "$cache/big.xml.gz")
            stored=$(query "SELECT count() FROM bench_big.records")
            awk -v b="$1" -v n="$BIG" -v s="$secs" -v st="$stored" -v m="$(rss_mib)" \
                'BEGIN {printf "big     %-40s %6.2f s  %7.0f records/s  (%d stored)  %d MiB\n", b, s, n/s, st, m}'
            awk -v b="$1" -v n="$BIG" -v s="$secs" 'BEGIN {print b, n/s}' >>"$tmp/rates"
        }
        big_run "${bins[0]}" >/dev/null; rm -f "$tmp/rates"
        for _ in $(seq "$ROUNDS"); do for bin in "${bins[@]}"; do big_run "$bin"; done; done
        median big records/s ;;
    publish)
        # Batch publish times with an empty database and with FILL reports stored, in
        # turns: each round imports 2,000 reports (4 batches of 500) into a new empty
        # database, then 2,000 other reports into the filled one, each round's on a day of
        # its own (so that no round finds an earlier round's reports on its day); the
        # median of all batches of each kind is printed.
        make_reports "$cache/publish-a" 2000 5 bench-publish-a
        for r in $(seq "$ROUNDS"); do
            make_reports "$cache/publish-b$r" 2000 5 bench-publish-b$r $((1700006400 + r * 86400))
        done
        # The "batch published" times (ms) of an import of DIR into DB, a line each.
        publish_ms() {
            DMARC_INGEST_CLICKHOUSE_DATABASE=$2 DMARC_INGEST_CLICKHOUSE_PUBLISH_REPORTS=500 \
                DMARC_INGEST_LOG=dmarc_ingest::store=debug,warn "$1" import "$3" 2>&1 >/dev/null |
                sed 's/\x1b\[[0-9;]*m//g' | grep 'batch published' |
                sed -n 's/.*elapsed_ms=\([0-9]*\).*/\1/p'
        }
        median_of() { sort -n "$1" | awk '{v[NR] = $1} END {printf "%.0f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
        for bin in "${bins[@]}"; do
            fresh_db bench_publish "$bin"
            # FILL reports of one record each: 2,000 domains (example.com among them) over
            # 1,000 days around the batches' days (from 2023-11-15), 20 reporters; each
            # batch's domain-day gets its share, as it would.
            query "INSERT INTO bench_publish.reports (policy_domain, date_begin, date_end, org_name, report_id, record_count, message_count, source, ingest_id, ingested_at) SELECT if(number % 2000 = 0, 'example.com', concat('d', toString(number % 2000), '.example')), toDateTime(1656806400 + (intDiv(number, 2000) % 1000) * 86400), toDateTime(1656806400 + (intDiv(number, 2000) % 1000) * 86400 + 86399), concat('reporter', toString(number % 20), '.example'), concat('fill-', toString(number)), 1, 3, 'fill', generateUUIDv4(), now() FROM numbers($FILL)" >/dev/null
            query "INSERT INTO bench_publish.records (policy_domain, date_begin, date_end, org_name, report_id, record_index, source_ip, source_ip_v6, message_count, ingest_id, ingested_at) SELECT policy_domain, date_begin, date_end, org_name, report_id, 0, '192.0.2.1', toFixedString(unhex('00000000000000000000FFFFC0000201'), 16), 3, ingest_id, ingested_at FROM bench_publish.reports WHERE source = 'fill'" >/dev/null
            # Measured once the fill's merges are done, the rollups' too (the views wrote
            # them in many parts, which would merge beside the first rounds).
            for table in reports records records_daily reporter_daily source_daily; do
                query "OPTIMIZE TABLE bench_publish.$table FINAL" >/dev/null
            done
            for _ in $(seq 120); do
                [ "$(query "SELECT count() FROM system.merges WHERE database = 'bench_publish'")" = 0 ] && break
                sleep 1
            done
            filled=$(query "SELECT count() FROM bench_publish.reports")
            : >"$tmp/empty"; : >"$tmp/full"
            for r in $(seq "$ROUNDS"); do
                fresh_db bench_publish_empty "$bin"
                publish_ms "$bin" bench_publish_empty "$cache/publish-a" >>"$tmp/empty"
                publish_ms "$bin" bench_publish "$cache/publish-b$r" >>"$tmp/full"
            done
            empty=$(median_of "$tmp/empty"); full=$(median_of "$tmp/full")
            awk -v b="$bin" -v e="$empty" -v f="$full" -v n="$filled" -v k="$(wc -l <"$tmp/full")" \
                'BEGIN {printf "publish %-40s median of %d batches: %4d ms empty, %4d ms with %d reports stored (%+.0f%%)\n", b, k, e, f, n, (f-e)*100/e}'
            printf 'publish   batches empty (ms): %s\n' "$(tr '\n' ' ' <"$tmp/empty")"
            printf 'publish   batches full (ms):  %s\n' "$(tr '\n' ' ' <"$tmp/full")"
        done ;;
    *) echo "unknown benchmark: $what" >&2; exit 2 ;;
    esac
done
gauge
