#!/usr/bin/env bash
# Local ClickHouse (Debian 12's clickhouse-server 18.16) for development and tests.
#
#   clickhouse.sh install            apt-get install the server + client (once)
#   clickhouse.sh start              start on 127.0.0.1, wait until /ping answers
#   clickhouse.sh stop               stop the server started from this state dir
#   clickhouse.sh status             exit 0 if the server answers
#   clickhouse.sh client ARGS...     clickhouse-client against the local server
#   clickhouse.sh query SQL          run SQL over HTTP with curl (SQL or stdin)
#
# Environment: DMARC_STATE_DIR (default <repo>/.state), DMARC_CH_HTTP_PORT (8123),
# DMARC_CH_TCP_PORT (9000). Everything (data, logs, config copy, pid) lives in
# $DMARC_STATE_DIR/clickhouse; `stop` then `rm -rf` that directory resets it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${DMARC_STATE_DIR:-$REPO/.state}
HTTP_PORT=${DMARC_CH_HTTP_PORT:-8123}
TCP_PORT=${DMARC_CH_TCP_PORT:-9000}
START_TIMEOUT=${DMARC_CH_START_TIMEOUT:-30}   # seconds

CH=$STATE/clickhouse
ETC=$CH/etc             # config.xml + users.xml copies
DATA=$CH/data           # <path>, tmp, user_files, format_schemas
LOGS=$CH/log
PIDFILE=$CH/clickhouse-server.pid
STDLOG=$LOGS/stdout.log # the server's own stdout/stderr
CONFIG=$ETC/config.xml

# True if PID exists and is not a zombie (an exited child not yet reaped by init).
alive() {
    local st
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $st && $st != Z ]]
}

die() { echo "clickhouse.sh: $*" >&2; exit 1; }

ping_ok() {
    [[ $(curl -sf --max-time 2 "http://127.0.0.1:$HTTP_PORT/ping" 2>/dev/null) == "Ok." ]]
}

# PID from the pid file, only if that process is a clickhouse-server using our
# config (guards against a stale file whose pid got reused).
our_pid() {
    [[ -f $PIDFILE ]] || return 1
    local pid
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config-file=$CONFIG" || return 1
    echo "$pid"
}

cmd_install() {
    if command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null; then
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "install needs root (apt-get)"
    # Package lists may be missing on a fresh machine.
    if ! apt-cache show clickhouse-server >/dev/null 2>&1; then
        apt-get update -qq
    fi
    # Retry once after an update: stale package lists give 404s.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null; }
    # The package's postinst may start the system-wide daemon via invoke-rc.d where
    # that is allowed (no systemd and usually a policy-rc.d that denies it here).
    # It would hold ports 8123/9000, so stop it if it did.
    if [[ -x /etc/init.d/clickhouse-server ]] && pgrep -u clickhouse -x clickhouse-serv >/dev/null 2>&1; then
        /etc/init.d/clickhouse-server stop >/dev/null 2>&1 || true
    fi
}

# Copy the packaged config and users files into $ETC with every path moved into
# the state dir, listening on 127.0.0.1 only, our ports, no interserver port.
write_config() {
    local src=/etc/clickhouse-server
    [[ -r $src/config.xml && -r $src/users.xml ]] || die "$src/config.xml missing: run '$0 install'"
    mkdir -p "$ETC" "$DATA" "$LOGS"
    local tmp=$CONFIG.tmp
    sed -e "s#/var/lib/clickhouse/#$DATA/#g" \
        -e "s#/var/log/clickhouse-server/#$LOGS/#g" \
        -e "s#<http_port>[0-9]*</http_port>#<http_port>$HTTP_PORT</http_port>#" \
        -e "s#<tcp_port>[0-9]*</tcp_port>#<tcp_port>$TCP_PORT</tcp_port>#" \
        -e "s#<port>9000</port>#<port>$TCP_PORT</port>#g" \
        -e "s#<interserver_http_port>[0-9]*</interserver_http_port>#<!-- interserver port disabled for dev -->#" \
        -e "s#<level>[a-z]*</level>#<level>information</level>#" \
        -e "s#<size>1000M</size>#<size>100M</size>#" \
        -e "s#<count>10</count>#<count>2</count>#" \
        -e "s#</yandex>#    <listen_host>127.0.0.1</listen_host>\n    <timezone>UTC</timezone>\n    <max_table_size_to_drop>0</max_table_size_to_drop>\n    <max_partition_size_to_drop>0</max_partition_size_to_drop>\n</yandex>#" \
        "$src/config.xml" >"$tmp"
    # Every path must now point into the state dir.
    if grep -nE '/var/(lib|log|run)/' "$tmp" >&2; then
        die "packaged config.xml has paths this script does not move (above)"
    fi
    mv "$tmp" "$CONFIG"
    # users.xml: default user limited to loopback (it has no password).
    sed -e 's#<ip>::/0</ip>#<ip>::1</ip><ip>127.0.0.1</ip>#' "$src/users.xml" >"$ETC/users.xml.tmp"
    mv "$ETC/users.xml.tmp" "$ETC/users.xml"
}

cmd_start() {
    local pid t0=
    if pid=$(our_pid); then
        # Already started from this state dir: done if it answers, else it may
        # still be starting up; fall through to the wait below.
        ping_ok && { echo "clickhouse: running (pid $pid), http://127.0.0.1:$HTTP_PORT"; return 0; }
    else
        command -v clickhouse-server >/dev/null || die "clickhouse-server missing: run '$0 install'"
        ping_ok && die "something else answers on 127.0.0.1:$HTTP_PORT (set DMARC_CH_HTTP_PORT)"
        write_config
        rm -f "$PIDFILE"
        t0=${EPOCHREALTIME/[.,]/}   # microseconds
        # setsid + every stdio redirected: the caller's shell/pipes must not wait on it.
        # 18.16 runs fine as root (it does not check the data dir's owner).
        (cd "$CH" && exec setsid clickhouse-server --config-file="$CONFIG" --pid-file="$PIDFILE" \
            >>"$STDLOG" 2>&1 </dev/null) &
        pid=$!
        disown "$pid" 2>/dev/null || true
        # The server writes the pid file itself; write it too in case it lags.
        [[ -f $PIDFILE ]] || echo "$pid" >"$PIDFILE"
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until ping_ok; do
        if ! alive "$pid"; then
            echo "clickhouse-server exited during start-up; log tail:" >&2
            tail -n 30 "$STDLOG" "$LOGS/clickhouse-server.err.log" >&2 2>/dev/null || true
            rm -f "$PIDFILE"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "clickhouse-server did not answer /ping within ${START_TIMEOUT}s; log tail:" >&2
            tail -n 30 "$STDLOG" "$LOGS/clickhouse-server.err.log" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.1
    done
    if [[ -n ${t0:-} ]]; then
        local ms=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
        echo "clickhouse: started (pid $pid) in ${ms} ms, http://127.0.0.1:$HTTP_PORT tcp 127.0.0.1:$TCP_PORT"
    else
        echo "clickhouse: running (pid $pid), http://127.0.0.1:$HTTP_PORT"
    fi
}

cmd_stop() {
    local pid
    if ! pid=$(our_pid); then
        rm -f "$PIDFILE"
        echo "clickhouse: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 150; i++)); do    # up to 15 s for a clean shutdown
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        echo "clickhouse: pid $pid still alive after 15s, sending KILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
    fi
    rm -f "$PIDFILE"
    echo "clickhouse: stopped"
}

cmd_status() {
    if ping_ok; then
        local pid
        pid=$(our_pid) || pid="not from this state dir"
        echo "clickhouse: running ($pid), http://127.0.0.1:$HTTP_PORT tcp 127.0.0.1:$TCP_PORT"
        return 0
    fi
    echo "clickhouse: not answering on 127.0.0.1:$HTTP_PORT"
    return 1
}

cmd_client() {
    exec clickhouse-client --host 127.0.0.1 --port "$TCP_PORT" "$@"
}

# query 'SQL'  or  echo 'SQL' | query   -- HTTP interface, errors give exit 1.
cmd_query() {
    local sql
    if (($#)); then sql="$*"; else sql=$(cat); fi
    local out code
    out=$(mktemp)
    code=$(curl -s -o "$out" -w '%{http_code}' --data-binary "$sql" "http://127.0.0.1:$HTTP_PORT/") || code=000
    if [[ $code == 200 ]]; then cat "$out"; rm -f "$out"; return 0; fi
    { cat "$out"; echo; echo "clickhouse.sh: HTTP $code"; } >&2
    rm -f "$out"
    return 1
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    client) shift; cmd_client "$@" ;;
    query) shift; cmd_query "$@" ;;
    *) echo "usage: $0 {install|start|stop|status|client ARGS...|query SQL}" >&2; exit 2 ;;
esac
