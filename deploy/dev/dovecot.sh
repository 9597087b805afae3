#!/usr/bin/env bash
# Local IMAP server (Debian 12's dovecot 2.3) for development and tests.
#
#   dovecot.sh install                    apt-get install dovecot-imapd (once)
#   dovecot.sh start                      write config + test certs, start, wait for "* OK"
#   dovecot.sh stop                       stop the dovecot started from this state dir
#   dovecot.sh status                     exit 0 if the plain IMAP port greets
#   dovecot.sh add-user USER PASS         add or replace a login (creates its Maildir)
#   dovecot.sh deliver USER MAILBOX FILE...
#                                         append .eml files (or mbox files, split into
#                                         messages) to USER's MAILBOX (created if missing)
#
# Ports (127.0.0.1 only): plain IMAP ${DMARC_IMAP_PORT:-1143} (plaintext login allowed;
# STARTTLS offered but optional), implicit TLS ${DMARC_IMAPS_PORT:-1993} with a test CA: clients trust
# $DMARC_STATE_DIR/dovecot/ca.pem (CA and server certificate are distinct, as rustls
# requires). State: $DMARC_STATE_DIR/dovecot (default <repo>/.state/dovecot).
# Mail is stored as Maildir owned by the `dovecot` user (dovecot refuses root).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${DMARC_STATE_DIR:-$REPO/.state}
IMAP_PORT=${DMARC_IMAP_PORT:-1143}
IMAPS_PORT=${DMARC_IMAPS_PORT:-1993}
START_TIMEOUT=${DMARC_IMAP_START_TIMEOUT:-20}   # seconds
MAIL_USER=dovecot                               # owner of all Maildirs

D=$STATE/dovecot
CONF=$D/dovecot.conf
PASSWD=$D/passwd        # passwd-file passdb: user:{PLAIN}pass::::::
MAILROOT=$D/mail        # <user>/Maildir
LOGS=$D/log
TLS=$D                  # ca.pem, ca.key, server.pem, server.key
# base_dir holds unix sockets (108-byte path limit): use a short path if ours is long.
if ((${#D} <= 60)); then
    RUN=$D/run
else
    RUN=/tmp/dmarc-dovecot-$(printf '%s' "$D" | md5sum | cut -c1-12)
fi

# True if PID exists and is not a zombie (an exited child not yet reaped by init).
alive() {
    local st
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $st && $st != Z ]]
}

die() { echo "dovecot.sh: $*" >&2; exit 1; }

# True if PORT on 127.0.0.1 sends an IMAP "* OK" greeting (plain port only).
greets() {
    local line=
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    IFS= read -r -t 2 line <&3 || true
    exec 3<&- 3>&-
    [[ $line == "* OK"* ]]
}

# PID of the dovecot master started with our config, if alive.
our_pid() {
    local f=$RUN/master.pid pid
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CONF" || return 1
    echo "$pid"
}

cmd_install() {
    if command -v dovecot >/dev/null && [[ -x /usr/lib/dovecot/imap ]]; then
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "install needs root (apt-get)"
    if ! apt-cache show dovecot-imapd >/dev/null 2>&1; then
        apt-get update -qq
    fi
    # Retry once after an update: stale package lists give 404s.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null; }
    # Where invoke-rc.d is allowed to start the system-wide dovecot, stop it: it
    # would hold ports 143/993 and is not ours.
    if [[ -f /run/dovecot/master.pid ]] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
        /etc/init.d/dovecot stop >/dev/null 2>&1 || kill "$(cat /run/dovecot/master.pid)" || true
    fi
}

# Test CA + server certificate signed by it (CN/SAN localhost, IP 127.0.0.1). Made once.
make_certs() {
    [[ -s $TLS/ca.pem && -s $TLS/server.pem && -s $TLS/server.key ]] && return 0
    command -v openssl >/dev/null || die "openssl missing"
    local tmp
    tmp=$(mktemp -d)
    (
        cd "$tmp"
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key
        openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=dmarc-ingest dev test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -addext "subjectKeyIdentifier=hash" -out ca.pem
        openssl ecparam -name prime256v1 -genkey -noout -out server.key
        openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
        cat >server.ext <<'EOF'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
EOF
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
            -days 825 -extfile server.ext -out server.pem
    ) >/dev/null 2>"$tmp/openssl.err" || { cat "$tmp/openssl.err" >&2; rm -rf "$tmp"; die "certificate generation failed"; }
    install -m 0644 "$tmp/ca.pem" "$TLS/ca.pem"
    install -m 0600 "$tmp/ca.key" "$TLS/ca.key"
    install -m 0644 "$tmp/server.pem" "$TLS/server.pem"
    install -m 0600 "$tmp/server.key" "$TLS/server.key"
    rm -rf "$tmp"
}

# Directories the dovecot user must reach (Maildirs, passwd-file via the auth process).
prepare_dirs() {
    mkdir -p "$D" "$LOGS" "$MAILROOT" "$D/lib"
    chown "$MAIL_USER:$MAIL_USER" "$MAILROOT"
    chmod 0750 "$MAILROOT"
    touch "$PASSWD"
    chown "root:$MAIL_USER" "$PASSWD"
    chmod 0640 "$PASSWD"
    if ! runuser -u "$MAIL_USER" -- test -w "$MAILROOT" -a -r "$PASSWD"; then
        die "user '$MAIL_USER' cannot reach $MAILROOT (a parent directory is not o+x?); set DMARC_STATE_DIR elsewhere"
    fi
}

write_config() {
    cat >"$CONF.tmp" <<EOF
# Generated by deploy/dev/dovecot.sh -- edits are overwritten on start.
base_dir = $RUN
state_dir = $D/lib
instance_name = dmarc-dev-$(printf '%s' "$D" | md5sum | cut -c1-8)
log_path = $LOGS/dovecot.log
protocols = imap
listen = 127.0.0.1

# "ssl = yes" (TLS available, not required): with "ssl = no" dovecot silently skips
# the imaps listener. Side effect: the plain port also offers STARTTLS (optional).
ssl = yes
ssl_cert = <$TLS/server.pem
ssl_key = <$TLS/server.key
ssl_min_protocol = TLSv1.2

disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $PASSWD
}
# Every user's mail belongs to the unprivileged dovecot user (root is refused).
userdb {
  driver = static
  args = uid=$MAIL_USER gid=$MAIL_USER home=$MAILROOT/%u
}
first_valid_uid = 1
mail_location = maildir:~/Maildir:LAYOUT=fs:INBOX=~/Maildir/INBOX
namespace inbox {
  inbox = yes
  separator = /
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
EOF
    mv "$CONF.tmp" "$CONF"
}

cmd_start() {
    local pid
    if pid=$(our_pid) && greets "$IMAP_PORT"; then
        echo "dovecot: running (pid $pid), imap 127.0.0.1:$IMAP_PORT, imaps 127.0.0.1:$IMAPS_PORT, CA $TLS/ca.pem"
        return 0
    fi
    command -v dovecot >/dev/null || die "dovecot missing: run '$0 install'"
    local t0=${EPOCHREALTIME/[.,]/}
    if [[ -z ${pid:-} ]]; then
        greets "$IMAP_PORT" && die "something else answers on 127.0.0.1:$IMAP_PORT (set DMARC_IMAP_PORT)"
        prepare_dirs
        make_certs
        write_config
        mkdir -p "$RUN"
        # A master.pid left by a killed master makes dovecot refuse to start.
        rm -f "$RUN/master.pid"
        # -F: stay in the foreground so $! is the master; setsid + no inherited stdio.
        setsid dovecot -F -c "$CONF" >>"$LOGS/stdout.log" 2>&1 </dev/null &
        pid=$!
        disown "$pid" 2>/dev/null || true
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until greets "$IMAP_PORT"; do
        if ! alive "$pid"; then
            echo "dovecot exited during start-up; log tail:" >&2
            tail -n 20 "$LOGS/stdout.log" "$LOGS/dovecot.log" >&2 2>/dev/null || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "dovecot did not greet on 127.0.0.1:$IMAP_PORT within ${START_TIMEOUT}s; log tail:" >&2
            tail -n 20 "$LOGS/stdout.log" "$LOGS/dovecot.log" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.05
    done
    local ms=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
    echo "dovecot: started (pid $pid) in ${ms} ms, imap 127.0.0.1:$IMAP_PORT, imaps 127.0.0.1:$IMAPS_PORT, CA $TLS/ca.pem"
}

cmd_stop() {
    local pid i
    if ! pid=$(our_pid); then
        echo "dovecot: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do    # up to 10 s
        alive "$pid" || break
        sleep 0.05
    done
    if alive "$pid"; then
        echo "dovecot: pid $pid still alive, sending KILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    echo "dovecot: stopped"
}

cmd_status() {
    local pid
    if greets "$IMAP_PORT"; then
        pid=$(our_pid) || pid="not from this state dir"
        echo "dovecot: running ($pid), imap 127.0.0.1:$IMAP_PORT, imaps 127.0.0.1:$IMAPS_PORT, CA $TLS/ca.pem"
        return 0
    fi
    echo "dovecot: not answering on 127.0.0.1:$IMAP_PORT"
    return 1
}

check_user() {
    [[ $1 =~ ^[A-Za-z0-9._@+-]+$ ]] || die "bad user name '$1' (letters, digits, . _ @ + - only)"
}

cmd_add_user() {
    (($# == 2)) || die "usage: $0 add-user USER PASS"
    local user=$1 pass=$2
    check_user "$user"
    [[ $pass != *[:$'\n']* ]] || die "password must not contain ':' or a newline"
    prepare_dirs
    # Replace any existing line for the user, then append the new one.
    local tmp=$PASSWD.tmp
    awk -F: -v u="$user" '$1 != u' "$PASSWD" >"$tmp"
    printf '%s:{PLAIN}%s::::::\n' "$user" "$pass" >>"$tmp"
    chown "root:$MAIL_USER" "$tmp"
    chmod 0640 "$tmp"
    mv "$tmp" "$PASSWD"
    # An empty INBOX Maildir, owned by the mail user.
    local home=$MAILROOT/$user
    install -d -o "$MAIL_USER" -g "$MAIL_USER" -m 0700 "$home" "$home/Maildir" \
        "$home/Maildir/INBOX" "$home/Maildir/INBOX/cur" "$home/Maildir/INBOX/new" "$home/Maildir/INBOX/tmp"
    echo "dovecot: user $user ready"
}

# Save one RFC 822 message (stdin) with dovecot's own tooling, so UIDs/indexes stay right.
save_one() {
    doveadm -c "$CONF" save -u "$1" -m "$2"
}

cmd_deliver() {
    (($# >= 3)) || die "usage: $0 deliver USER MAILBOX FILE..."
    local user=$1 mbox=$2
    shift 2
    check_user "$user"
    grep -q "^$user:" "$PASSWD" 2>/dev/null || die "no such user '$user' (run: $0 add-user $user PASS)"
    our_pid >/dev/null || cmd_start >/dev/null
    # Create the mailbox if missing (INBOX always exists).
    if [[ ${mbox^^} != INBOX ]] && ! doveadm -c "$CONF" mailbox status -u "$user" messages "$mbox" >/dev/null 2>&1; then
        doveadm -c "$CONF" mailbox create -s -u "$user" "$mbox"
    fi
    local f n=0 tmp
    for f in "$@"; do
        [[ -r $f ]] || die "cannot read $f"
        if head -c 5 -- "$f" | grep -q '^From '; then
            # mbox: split on "From " separator lines (dropped), undo mboxrd ">From " quoting.
            tmp=$(mktemp -d)
            awk -v dir="$tmp" '
                /^From / { n++; out = sprintf("%s/%06d.eml", dir, n); next }
                n > 0 { line = $0; if (line ~ /^>+From /) line = substr(line, 2); print line > out }
            ' "$f"
            local m
            for m in "$tmp"/*.eml; do
                [[ -e $m ]] || continue
                save_one "$user" "$mbox" <"$m"
                n=$((n + 1))
            done
            rm -rf "$tmp"
        else
            save_one "$user" "$mbox" <"$f"
            n=$((n + 1))
        fi
    done
    echo "dovecot: delivered $n message(s) to $user/$mbox"
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    add-user) shift; cmd_add_user "$@" ;;
    deliver) shift; cmd_deliver "$@" ;;
    *) echo "usage: $0 {install|start|stop|status|add-user USER PASS|deliver USER MAILBOX FILE...}" >&2; exit 2 ;;
esac
