#!/usr/bin/env bash
# Local SMTP server for development and tests: Debian 12's python3-aiosmtpd
# (deploy/dev/smtp_server.py), on 127.0.0.1 only.
#
#   smtp.sh install     apt-get install python3-aiosmtpd openssl (once)
#   smtp.sh start       make the test certificates, start, wait until it listens
#   smtp.sh stop        stop the server started from this state dir
#   smtp.sh status      exit 0 if it runs
#
# Ports: ${DMARC_SMTP_PORT:-2525} plain without login; +1 STARTTLS then login; +2
# implicit TLS then login. Login: ${DMARC_SMTP_USER:-dmarc} / ${DMARC_SMTP_PASSWORD:-
# dmarc-test-password}. Clients trust <state>/ca.pem (`[smtp] ca_file`). Mail received:
# <state>/mail/NNNNNN.eml with NNNNNN.json (envelope). State:
# $DMARC_STATE_DIR/smtp-<port> (default <repo>/.state/smtp-2525).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${DMARC_STATE_DIR:-$REPO/.state}
PORT=${DMARC_SMTP_PORT:-2525}
USER_NAME=${DMARC_SMTP_USER:-dmarc}
PASSWORD=${DMARC_SMTP_PASSWORD:-dmarc-test-password}
START_TIMEOUT=${DMARC_SMTP_START_TIMEOUT:-20}   # seconds
PYTHON=/usr/bin/python3                         # Debian's, with python3-aiosmtpd

D=$STATE/smtp-$PORT
PIDFILE=$D/pid
READY=$D/ready

die() { echo "smtp: $*" >&2; exit 1; }

running() {
    [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

case ${1:-} in
install)
    if ! $PYTHON -c 'import aiosmtpd' 2>/dev/null || ! command -v openssl >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3-aiosmtpd openssl >/dev/null
    fi
    $PYTHON -c 'import aiosmtpd' || die "python3-aiosmtpd did not install"
    ;;
start)
    if running; then
        echo "smtp: running (pid $(cat "$PIDFILE")), 127.0.0.1:$PORT-$((PORT + 2)), CA $D/ca.pem"
        exit 0
    fi
    $PYTHON -c 'import aiosmtpd' 2>/dev/null || die "python3-aiosmtpd missing: run smtp.sh install"
    mkdir -p "$D/mail"
    "$REPO/deploy/dev/test-certs.sh" "$D"
    rm -f "$READY"
    # setsid: the server outlives this script, in its own session.
    setsid "$PYTHON" "$REPO/deploy/dev/smtp_server.py" --port "$PORT" --maildir "$D/mail" \
        --cert "$D/server.pem" --key "$D/server.key" --user "$USER_NAME" \
        --password "$PASSWORD" --ready-file "$READY" >"$D/log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        [[ -s $READY ]] && break
        running || { cat "$D/log" >&2; die "the server exited"; }
        sleep 0.1
    done
    [[ -s $READY ]] || { cat "$D/log" >&2; die "not listening after ${START_TIMEOUT}s"; }
    echo "smtp: started (pid $(cat "$PIDFILE")), 127.0.0.1:$PORT-$((PORT + 2)), CA $D/ca.pem"
    ;;
stop)
    if running; then
        pid=$(cat "$PIDFILE")
        kill "$pid"
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE" "$READY"
    ;;
status)
    running
    ;;
*)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
