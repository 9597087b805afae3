#!/usr/bin/env bash
# Local DNS server for development and tests: Debian 12's knot (authoritative) behind
# dnsmasq (what clients ask), on 127.0.0.1 only.
#
#   dns.sh install              apt-get install knot dnsmasq-base (once)
#   dns.sh start                write the configs, start both, wait until they answer
#   dns.sh stop                 stop the servers started from this state dir
#   dns.sh status               exit 0 if the client port answers
#   dns.sh query NAME TYPE      one query to the client port (prints `NOERROR 1`, ...)
#
# Clients use 127.0.0.1:${DMARC_DNS_PORT:-5353} (`[dns] nameservers = ["127.0.0.1:5353"]`).
# dnsmasq answers there, without a cache, forwarding every test zone to knot on
# 127.0.0.1:${DMARC_DNS_AUTH_PORT:-5354}. The zones are deploy/dev/dns/*.zone (test-only
# data: the names and addresses the tests expect). What each kind of answer looks like:
#   - a name with records (PTR, A, AAAA, ...): NOERROR, from knot;
#   - a name the zones lack: NXDOMAIN (e.g. PTR of 192.0.2.4);
#   - 100.51.198.in-addr.arpa (198.51.100.0/24) and servfail.test: SERVFAIL, zones knot
#     is given without a zone file (not loaded);
#   - 113.0.203.in-addr.arpa (203.0.113.0/24) and silent.test: no answer at all (a
#     timeout), forwarded to 127.0.0.1:${DMARC_DNS_SILENT_PORT:-5355}, where nothing may
#     listen;
#   - any other name: REFUSED (nothing is forwarded off the machine).
# DMARC_DNS_EXTRA_ZONES=DIR serves DIR/*.zone too (each file named after its zone, as
# those of deploy/dev/dns/; the throughput bench generates one).
# State: $DMARC_STATE_DIR/dns (default <repo>/.state/dns): configs, zone copies, logs.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${DMARC_STATE_DIR:-$REPO/.state}
PORT=${DMARC_DNS_PORT:-5353}
AUTH_PORT=${DMARC_DNS_AUTH_PORT:-5354}
SILENT_PORT=${DMARC_DNS_SILENT_PORT:-5355}
START_TIMEOUT=${DMARC_DNS_START_TIMEOUT:-20}   # seconds
ZONES=$REPO/deploy/dev/dns
QUERY=$REPO/deploy/dev/dns_query.py

D=$STATE/dns
KNOT_CONF=$D/knot.conf
DNSMASQ_CONF=$D/dnsmasq.conf
SERVFAIL_ZONES=(100.51.198.in-addr.arpa servfail.test)
SILENT_ZONES=(113.0.203.in-addr.arpa silent.test)

die() { echo "dns.sh: $*" >&2; exit 1; }

alive() {
    local st
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $st && $st != Z ]]
}

# PID of the process whose command line names CONF, from PIDFILE, if alive.
pid_of() {
    local pidfile=$1 conf=$2 pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$conf" || return 1
    alive "$pid" || return 1
    echo "$pid"
}

# True if PORT answers a query for a name of the test zones.
answers() {
    python3 "$QUERY" "$1" mail.example.test A 0.5 >/dev/null 2>&1
}

cmd_install() {
    if command -v knotd >/dev/null && command -v dnsmasq >/dev/null; then
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "install needs root (apt-get)"
    if ! apt-cache show knot >/dev/null 2>&1; then
        apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq knot dnsmasq-base >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq knot dnsmasq-base >/dev/null; }
    # Where invoke-rc.d is allowed to start the system-wide knot, stop it: not ours.
    if [[ -f /run/knot/knot.pid ]] && kill -0 "$(cat /run/knot/knot.pid)" 2>/dev/null; then
        kill "$(cat /run/knot/knot.pid)" || true
    fi
}

write_configs() {
    mkdir -p "$D/zones" "$D/log"
    rm -f "$D"/zones/*.zone
    cp "$ZONES"/*.zone "$D/zones/"
    if [[ -n ${DMARC_DNS_EXTRA_ZONES:-} ]]; then
        cp "$DMARC_DNS_EXTRA_ZONES"/*.zone "$D/zones/"
    fi
    {
        echo "# Written by deploy/dev/dns.sh; edits are lost at the next start."
        echo "server:"
        echo "    listen: 127.0.0.1@$AUTH_PORT"
        echo "    rundir: $D"
        echo "    pidfile: $D/knot.pid"
        echo "    user: $(id -un):$(id -gn)"
        echo "database:"
        echo "    storage: $D"
        echo "log:"
        echo "  - target: $D/log/knot.log"
        echo "    any: info"
        echo "template:"
        echo "  - id: default"
        echo "    storage: $D/zones"
        echo "    semantic-checks: off"
        echo "zone:"
        local f name
        for f in "$D"/zones/*.zone; do
            name=$(basename "$f" .zone)
            echo "  - domain: $name"
            echo "    file: $name.zone"
        done
        # Configured without a file: knot cannot load them and answers SERVFAIL.
        for name in "${SERVFAIL_ZONES[@]}"; do
            echo "  - domain: $name"
            echo "    file: $name.zone"
        done
    } >"$KNOT_CONF"
    {
        echo "# Written by deploy/dev/dns.sh; edits are lost at the next start."
        echo "port=$PORT"
        echo "listen-address=127.0.0.1"
        echo "bind-interfaces"
        echo "no-resolv"
        echo "no-hosts"
        echo "no-poll"
        echo "cache-size=0"
        echo "no-negcache"
        echo "pid-file=$D/dnsmasq.pid"
        echo "log-facility=$D/log/dnsmasq.log"
        local f name
        for f in "$D"/zones/*.zone; do
            name=$(basename "$f" .zone)
            echo "server=/$name/127.0.0.1#$AUTH_PORT"
        done
        for name in "${SERVFAIL_ZONES[@]}"; do
            echo "server=/$name/127.0.0.1#$AUTH_PORT"
        done
        for name in "${SILENT_ZONES[@]}"; do
            echo "server=/$name/127.0.0.1#$SILENT_PORT"
        done
    } >"$DNSMASQ_CONF"
}

cmd_start() {
    local knot dnsmasq
    if knot=$(pid_of "$D/knot.pid" "$KNOT_CONF") && dnsmasq=$(pid_of "$D/dnsmasq.pid" "$DNSMASQ_CONF") &&
        answers "$PORT"; then
        echo "dns: running (knot $knot, dnsmasq $dnsmasq), clients 127.0.0.1:$PORT, knot 127.0.0.1:$AUTH_PORT"
        return 0
    fi
    command -v knotd >/dev/null && command -v dnsmasq >/dev/null || die "knot or dnsmasq missing: run '$0 install'"
    cmd_stop >/dev/null
    answers "$PORT" && die "something else answers DNS on 127.0.0.1:$PORT (set DMARC_DNS_PORT)"
    local t0=${EPOCHREALTIME/[.,]/}
    write_configs
    setsid knotd -c "$KNOT_CONF" >>"$D/log/knot.stdout.log" 2>&1 </dev/null &
    knot=$!
    disown "$knot" 2>/dev/null || true
    setsid dnsmasq --keep-in-foreground --conf-file="$DNSMASQ_CONF" >>"$D/log/dnsmasq.stdout.log" 2>&1 </dev/null &
    dnsmasq=$!
    disown "$dnsmasq" 2>/dev/null || true
    local deadline=$((SECONDS + START_TIMEOUT))
    until answers "$PORT" && [[ $(python3 "$QUERY" "$PORT" mail.example.test A 1) == "NOERROR 1" ]]; do
        if ! alive "$knot" || ! alive "$dnsmasq"; then
            echo "dns: a server exited during start-up; log tail:" >&2
            tail -n 20 "$D"/log/*.log >&2 2>/dev/null || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "dns: no answer on 127.0.0.1:$PORT within ${START_TIMEOUT}s; log tail:" >&2
            tail -n 20 "$D"/log/*.log >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.05
    done
    local ms=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
    echo "dns: started (knot $knot, dnsmasq $dnsmasq) in ${ms} ms, clients 127.0.0.1:$PORT, knot 127.0.0.1:$AUTH_PORT"
}

stop_one() {
    local name=$1 pid=$2 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do    # up to 5 s
        alive "$pid" || return 0
        sleep 0.05
    done
    echo "dns: $name (pid $pid) still alive, sending KILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_stop() {
    local pid stopped=
    if pid=$(pid_of "$D/dnsmasq.pid" "$DNSMASQ_CONF"); then
        stop_one dnsmasq "$pid"
        stopped=1
    fi
    if pid=$(pid_of "$D/knot.pid" "$KNOT_CONF"); then
        stop_one knot "$pid"
        stopped=1
    fi
    if [[ -n $stopped ]]; then echo "dns: stopped"; else echo "dns: not running"; fi
}

cmd_status() {
    if answers "$PORT"; then
        echo "dns: answering on 127.0.0.1:$PORT"
        return 0
    fi
    echo "dns: not answering on 127.0.0.1:$PORT"
    return 1
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    query) shift; [[ $# == 2 ]] || die "usage: $0 query NAME TYPE"; python3 "$QUERY" "$PORT" "$1" "$2" ;;
    *) echo "usage: $0 {install|start|stop|status|query NAME TYPE}" >&2; exit 2 ;;
esac
