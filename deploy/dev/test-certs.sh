#!/usr/bin/env bash
# Test CA + server certificate signed by it (CN/SAN localhost, IP 127.0.0.1), for the dev
# servers (dovecot.sh, smtp.sh): DIR/ca.pem, ca.key, server.pem, server.key. Made once;
# CA and server certificate are distinct, as rustls requires.
#
#   test-certs.sh DIR
set -euo pipefail
TLS=${1:?usage: test-certs.sh DIR}
mkdir -p "$TLS"
[[ -s $TLS/ca.pem && -s $TLS/server.pem && -s $TLS/server.key ]] && exit 0
command -v openssl >/dev/null || { echo "test-certs: openssl missing" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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
) >/dev/null 2>"$tmp/openssl.err" || { cat "$tmp/openssl.err" >&2; exit 1; }
install -m 0644 "$tmp/ca.pem" "$TLS/ca.pem"
install -m 0600 "$tmp/ca.key" "$TLS/ca.key"
install -m 0644 "$tmp/server.pem" "$TLS/server.pem"
install -m 0600 "$tmp/server.key" "$TLS/server.key"
