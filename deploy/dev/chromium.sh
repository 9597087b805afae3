#!/usr/bin/env bash
# Headless Chromium for tests that look at HTML as a reader would (the weekly digest):
# Debian 12's `chromium`, run once per page with a throw-away profile, no server.
#
#   chromium.sh install                       apt-get install chromium (once)
#   chromium.sh render IN.html OUT.png [W]    screenshot IN at W px wide (default 390,
#                                             a phone), W x ${DMARC_CHROMIUM_HEIGHT:-2400}
#
# `render` opens IN as file:// only, with background networking, component updates,
# sync, QUIC and the GPU off; every host name resolves to nothing and any other request
# goes to a proxy on 127.0.0.1:9 where nothing listens, so no traffic leaves the
# machine (without these flags Chromium keeps trying Google hosts, and waits on them in
# a closed network; its IPv6 probe still connect()s a UDP socket to 2001:4860:4860::8888,
# which sends nothing). Chromium's stderr goes to OUT.png.log. Exit 1 if Chromium fails,
# times out (${DMARC_CHROMIUM_TIMEOUT:-60} s) or writes no image.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
TIMEOUT=${DMARC_CHROMIUM_TIMEOUT:-60}   # seconds
HEIGHT=${DMARC_CHROMIUM_HEIGHT:-2400}   # px

die() { echo "chromium.sh: $*" >&2; exit 1; }

cmd_install() {
    [[ -x $CHROMIUM ]] && return 0
    [[ $(id -u) == 0 ]] || die "install needs root (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

cmd_render() {
    local in=$1 out=$2 width=${3:-390}
    [[ -x $CHROMIUM ]] || die "$CHROMIUM missing: run '$0 install'"
    [[ -f $in ]] || die "no such file: $in"
    [[ $width =~ ^[1-9][0-9]*$ ]] || die "width must be a number of pixels: $width"
    in=$(realpath -- "$in")
    out=$(realpath -m -- "$out")
    local profile rc=0
    profile=$(mktemp -d "${TMPDIR:-/tmp}/chromium-profile.XXXXXX")
    # shellcheck disable=SC2064  # expand now: the trap must remove this run's profile
    trap "rm -rf -- '$profile'" EXIT
    rm -f -- "$out"
    timeout "$TIMEOUT" "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update \
        --disable-sync --disable-extensions --disable-default-apps \
        --disable-domain-reliability --no-default-browser-check \
        --host-resolver-rules='MAP * ~NOTFOUND' --proxy-server=127.0.0.1:9 \
        --user-data-dir="$profile" --hide-scrollbars --force-device-scale-factor=1 \
        --window-size="$width,$HEIGHT" --screenshot="$out" "file://$in" \
        </dev/null >/dev/null 2>"$out.log" || rc=$?
    ((rc == 124)) && die "chromium timed out after ${TIMEOUT}s (log: $out.log)"
    ((rc == 0)) || die "chromium exited with $rc (log: $out.log)"
    [[ -s $out ]] || die "chromium wrote no image to $out (log: $out.log)"
}

case ${1:-} in
    install) cmd_install ;;
    render) shift; [[ $# == 2 || $# == 3 ]] || die "usage: $0 render IN.html OUT.png [WIDTH]"; cmd_render "$@" ;;
    *) echo "usage: $0 {install|render IN.html OUT.png [WIDTH]}" >&2; exit 2 ;;
esac
