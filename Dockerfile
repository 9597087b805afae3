# dmarc-ingest container image.
#
#   docker build -t dmarc-ingest .
#   docker run --rm -v "$PWD/sample-reports:/data:ro" dmarc-ingest parse /data/reporters
#   docker run -d -v /etc/dmarc-ingest:/etc/dmarc-ingest:ro -p 127.0.0.1:9108:9108 dmarc-ingest
#
# The default command is the IMAP daemon (`run`). The configuration is read from
# /etc/dmarc-ingest/config.toml (DMARC_INGEST_CONFIG; mount your own over the empty
# placeholder); every key can also be given as DMARC_INGEST_<SECTION>_<KEY>, secrets as
# `password_file` paths (e.g. compose secrets under /run/secrets/). Apply the schema
# once, and after every upgrade, before starting the daemon: `docker run ... schema apply`.
# deploy/compose.yaml does all of this with ClickHouse and Grafana beside it.

# ---- build ------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src

# Dependencies first, in their own layer: the workspace manifests, the lock file and
# empty stand-ins for every target the manifests name, so this layer (the slow part) is
# rebuilt only when Cargo.toml or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
COPY ingest/Cargo.toml ingest/
COPY benches/Cargo.toml benches/
RUN mkdir -p ingest/src benches/src benches/benches \
    && echo 'fn main() {}' > ingest/src/main.rs \
    && touch ingest/src/lib.rs benches/src/lib.rs \
    && echo 'fn main() {}' > benches/benches/parse.rs \
    && cargo build --release --locked -p dmarc-ingest \
    && rm -rf ingest/src benches/src benches/benches

# The real sources. The SQL of schema/ is compiled into the binary (include_str!).
COPY ingest/src ingest/src
COPY schema schema
COPY benches/src benches/src
COPY benches/benches benches/benches
# COPY keeps the files' own modification times, which can be older than the stand-ins
# built above: touch the crate roots so cargo rebuilds the crate for real.
RUN touch ingest/src/main.rs ingest/src/lib.rs \
    && cargo build --release --locked -p dmarc-ingest \
    && install -D -m 0755 target/release/dmarc-ingest /out/dmarc-ingest \
    && /out/dmarc-ingest --version

# ---- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: the system roots that IMAPS/HTTPS connections are verified against
# (rustls-native-certs reads them). Nothing else is needed: the binary is self-contained.
# Not pinned: the roots should be the newest the base image's release ships.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged uid/gid (10001), so mounted secrets and configs can be made
# readable to it on the host.
RUN groupadd --system --gid 10001 dmarc \
    && useradd --system --uid 10001 --gid dmarc --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin dmarc \
    && mkdir -p /etc/dmarc-ingest \
    && printf '%s\n' \
       '# dmarc-ingest configuration: mount your own file over this one.' \
       '# Every key is described in deploy/dmarc-ingest.example.toml; every key can also be' \
       '# set as DMARC_INGEST_<SECTION>_<KEY>. Empty, the defaults apply (enough for parse).' \
       > /etc/dmarc-ingest/config.toml

COPY --from=builder /out/dmarc-ingest /usr/local/bin/dmarc-ingest

# The metrics endpoint (/metrics, /healthz) must listen on all interfaces of the
# container, or neither the published port nor a scraper on the container network
# reaches it. The environment wins over the config file; set it to "" to turn the
# endpoint off (the health check then always passes).
ENV DMARC_INGEST_CONFIG=/etc/dmarc-ingest/config.toml \
    DMARC_INGEST_METRICS_LISTEN=0.0.0.0:9108
EXPOSE 9108

# Numeric, so that runtimes can check it is not root (Kubernetes runAsNonRoot).
USER 10001:10001

# /healthz answers 200 while every mailbox is connected, 503 otherwise. The slim image has
# no curl or wget, so bash speaks the one HTTP/1.0 request itself (/dev/tcp). Only the
# daemon (`run`) serves it: one-shot commands (schema apply, import) finish before the
# first check, or should run with --no-healthcheck / `healthcheck: disable`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/bin/bash", "-c", "listen=${DMARC_INGEST_METRICS_LISTEN-0.0.0.0:9108}; [[ -z $listen ]] && exit 0; exec 3<>/dev/tcp/127.0.0.1/${listen##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r -t 4 status <&3 && [[ $status == *' 200 '* ]]"]

# SIGTERM (docker stop) finishes the batch in flight and exits 0; give it time
# (docker stop -t 120, compose stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["dmarc-ingest"]
CMD ["run"]
