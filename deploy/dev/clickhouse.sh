#!/usr/bin/env bash
# Local ClickHouse (Debian 12's clickhouse-server 18.16) for development and tests.
#
#   clickhouse.sh install            apt-get install the server + client (once)
#   clickhouse.sh start              start on 127.0.0.1 (HTTP and HTTPS), wait until /ping
#                                    answers on both
#   clickhouse.sh stop               stop the server started from this state dir
#   clickhouse.sh status             exit 0 if the server answers
#   clickhouse.sh client ARGS...     clickhouse-client against the local server
#   clickhouse.sh query SQL          run SQL over HTTP with curl (SQL or stdin)
#
# Environment: DMARC_STATE_DIR (default <repo>/.state), DMARC_CH_HTTP_PORT (8123),
# DMARC_CH_HTTPS_PORT (8443), DMARC_CH_TCP_PORT (9000). Everything (data, logs, config
# copy, pid, test certificates) lives in $DMARC_STATE_DIR/clickhouse; `stop` then
# `rm -rf` that directory resets it.
#
# HTTPS uses a test CA made on first start: clients trust $STATE/clickhouse/tls/ca.pem.
# The server certificate (CN/SAN localhost, IP 127.0.0.1) is signed by it and distinct
# from it (rustls refuses a CA certificate used as the server's own).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${DMARC_STATE_DIR:-$REPO/.state}
HTTP_PORT=${DMARC_CH_HTTP_PORT:-8123}
HTTPS_PORT=${DMARC_CH_HTTPS_PORT:-8443}
TCP_PORT=${DMARC_CH_TCP_PORT:-9000}
START_TIMEOUT=${DMARC_CH_START_TIMEOUT:-30}   # seconds

CH=$STATE/clickhouse
ETC=$CH/etc             # config.xml + users.xml copies
DATA=$CH/data           # <path>, tmp, user_files, format_schemas
LOGS=$CH/log
PIDFILE=$CH/clickhouse-server.pid
STDLOG=$LOGS/stdout.log # the server's own stdout/stderr
CONFIG=$ETC/config.xml
TLS=$CH/tls             # ca.pem, ca.key, server.pem, server.key

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

# /ping over HTTPS, the certificate checked against the test CA.
https_ok() {
    [[ -s $TLS/ca.pem ]] || return 1
    [[ $(curl -sf --max-time 2 --cacert "$TLS/ca.pem" "https://127.0.0.1:$HTTPS_PORT/ping" 2>/dev/null) == "Ok." ]]
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_taken() {
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    exec 3<&- 3>&-
}

urls() {
    echo "http://127.0.0.1:$HTTP_PORT https://127.0.0.1:$HTTPS_PORT (CA $TLS/ca.pem) tcp 127.0.0.1:$TCP_PORT"
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
    if command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null &&
        command -v openssl >/dev/null; then
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "install needs root (apt-get)"
    # Package lists may be missing on a fresh machine.
    if ! apt-cache show clickhouse-server >/dev/null 2>&1; then
        apt-get update -qq
    fi
    # Retry once after an update: stale package lists give 404s.
    # openssl: the test CA and server certificate of the HTTPS port.
    local pkgs=(clickhouse-server clickhouse-client openssl ca-certificates)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null; }
    # The package's postinst may start the system-wide daemon via invoke-rc.d where
    # that is allowed (no systemd and usually a policy-rc.d that denies it here).
    # It would hold ports 8123/9000, so stop it if it did.
    if [[ -x /etc/init.d/clickhouse-server ]] && pgrep -u clickhouse -x clickhouse-serv >/dev/null 2>&1; then
        /etc/init.d/clickhouse-server stop >/dev/null 2>&1 || true
    fi
}

# Test CA + server certificate signed by it (CN/SAN localhost, IP 127.0.0.1). Made once;
# made again when the server certificate has less than a day left.
make_certs() {
    if [[ -s $TLS/ca.pem && -s $TLS/server.key ]] &&
        openssl x509 -checkend 86400 -noout -in "$TLS/server.pem" >/dev/null 2>&1; then
        return 0
    fi
    command -v openssl >/dev/null || die "openssl missing: run '$0 install'"
    mkdir -p "$TLS"
    local tmp
    tmp=$(mktemp -d)
    (
        cd "$tmp"
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key
        openssl req -x509 -new -key ca.key -sha256 -days 3650 \
            -subj "/CN=dmarc-ingest dev ClickHouse test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -addext "subjectKeyIdentifier=hash" -out ca.pem
        openssl ecparam -name prime256v1 -genkey -noout -out server.key
        openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
        printf '%s\n' \
            'basicConstraints = critical,CA:FALSE' \
            'keyUsage = critical,digitalSignature' \
            'extendedKeyUsage = serverAuth' \
            'subjectAltName = DNS:localhost,IP:127.0.0.1' \
            'subjectKeyIdentifier = hash' \
            'authorityKeyIdentifier = keyid,issuer' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
            -days 825 -extfile server.ext -out server.pem
    ) >/dev/null 2>"$tmp/openssl.err" || { cat "$tmp/openssl.err" >&2; rm -rf "$tmp"; die "certificate generation failed"; }
    install -m 0644 "$tmp/ca.pem" "$TLS/ca.pem"
    install -m 0600 "$tmp/ca.key" "$TLS/ca.key"
    install -m 0644 "$tmp/server.pem" "$TLS/server.pem"
    install -m 0600 "$tmp/server.key" "$TLS/server.key"
    rm -rf "$tmp"
}

# Copy the packaged config and users files into $ETC with every path moved into
# the state dir, listening on 127.0.0.1 only, our ports (HTTPS with the test
# certificate, no secure native port), no interserver port.
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
        -e "s#<certificateFile>[^<]*</certificateFile>#<certificateFile>$TLS/server.pem</certificateFile>#" \
        -e "s#<privateKeyFile>[^<]*</privateKeyFile>#<privateKeyFile>$TLS/server.key</privateKeyFile>#" \
        -e "s#<dhParamsFile>[^<]*</dhParamsFile>#<!-- no dhParamsFile: ECDHE only -->#" \
        -e "s#<level>[a-z]*</level>#<level>information</level>#" \
        -e "s#<size>1000M</size>#<size>100M</size>#" \
        -e "s#<count>10</count>#<count>2</count>#" \
        -e "s#</yandex>#    <https_port>$HTTPS_PORT</https_port>\n    <listen_host>127.0.0.1</listen_host>\n    <timezone>UTC</timezone>\n    <max_table_size_to_drop>0</max_table_size_to_drop>\n    <max_partition_size_to_drop>0</max_partition_size_to_drop>\n</yandex>#" \
        "$src/config.xml" >"$tmp"
    # Every path must now point into the state dir.
    if grep -nE '/var/(lib|log|run)/' "$tmp" >&2; then
        die "packaged config.xml has paths this script does not move (above)"
    fi
    # The HTTPS port needs <openSSL><server> to use our certificate (one of each element).
    local n
    n=$(grep -cE "<certificateFile>$TLS/server.pem</certificateFile>|<privateKeyFile>$TLS/server.key</privateKeyFile>" "$tmp") || true
    [[ $n == 2 ]] || die "packaged config.xml has no single <openSSL><server> certificateFile/privateKeyFile to point at the test certificate"
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
        if ping_ok; then
            https_ok || die "running (pid $pid) but not answering HTTPS on 127.0.0.1:$HTTPS_PORT (started by an older version of this script, or with another DMARC_CH_HTTPS_PORT?): '$0 stop', then start"
            echo "clickhouse: running (pid $pid), $(urls)"
            return 0
        fi
    else
        command -v clickhouse-server >/dev/null || die "clickhouse-server missing: run '$0 install'"
        ping_ok && die "something else answers on 127.0.0.1:$HTTP_PORT (set DMARC_CH_HTTP_PORT)"
        port_taken "$HTTPS_PORT" && die "something else listens on 127.0.0.1:$HTTPS_PORT (set DMARC_CH_HTTPS_PORT)"
        make_certs
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
    until ping_ok && https_ok; do
        if ! alive "$pid"; then
            echo "clickhouse-server exited during start-up; log tail:" >&2
            tail -n 30 "$STDLOG" "$LOGS/clickhouse-server.err.log" >&2 2>/dev/null || true
            rm -f "$PIDFILE"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "clickhouse-server did not answer /ping on HTTP and HTTPS within ${START_TIMEOUT}s; log tail:" >&2
            tail -n 30 "$STDLOG" "$LOGS/clickhouse-server.err.log" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.1
    done
    if [[ -n ${t0:-} ]]; then
        local ms=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
        echo "clickhouse: started (pid $pid) in ${ms} ms, $(urls)"
    else
        echo "clickhouse: running (pid $pid), $(urls)"
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
        echo "clickhouse: running ($pid), $(urls)"
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
