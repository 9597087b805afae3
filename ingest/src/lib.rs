//! dmarc-ingest: DMARC aggregate reports from IMAP (or files) into ClickHouse.
//!
//! The data path, one module per stage, in the order a report travels:
//!
//! - [`config`]: TOML file + `DMARC_INGEST_*` environment -> validated [`config::Config`].
//! - [`mailbox`]: IMAP -> raw messages by UID; moves them to Archive/Invalid after (split
//!   into session, TLS, UID sets and errors; its settings are [`config::ImapConfig`]).
//! - [`input`]: files, directories, mbox and Maildir -> messages and containers (the
//!   file-side driver of the stages below).
//! - [`message`]: one raw mail (MIME) -> its report attachments.
//! - [`attachment`]: one attachment (`.xml`, `.gz`, `.zip`) -> XML streams, size-capped.
//! - [`report`]: one XML stream -> report header and records, streamed.
//! - [`rows`]: header + record -> one owned, flat row (pure); JSON, CSV and the ClickHouse
//!   row are its encodings.
//! - [`store`]: rows -> ClickHouse: migrations, staged batches, exactly-once publish.
//! - [`pipeline`]: wires input -> report -> store (`import`), tagging every outcome.
//! - [`daemon`]: IMAP mailboxes -> pipeline -> store, then mail moved to Archive/Invalid.
//! - [`failure`]: every way an input or batch fails -> one [`failure::FailureKind`], which
//!   alone decides retry or quarantine.
//! - [`metrics`]: the daemon's counters as Prometheus text, and `/healthz`.
//! - [`enrich`]: source addresses stored in `records` -> their names in `source_names`:
//!   reverse name, network, country, service, sender (`dmarc-ingest enrich` and the
//!   daemon's background pass; never on the ingest path).
//!   Its parts: [`enrich::networks`] (an address -> AS number, AS organisation,
//!   country, from MaxMind-format databases) and [`enrich::services`] (what is known of a
//!   source -> its sending service: `ingest/data/services.toml` and the user's
//!   `[enrich] services_file`).
//! - [`resolver`]: every DNS lookup, as `[dns]` says: an address -> its reverse name,
//!   checked forward (a failure is never taken for an absence).
//! - [`tls`]: system roots + an optional CA file -> the TLS client settings of every
//!   connection (ClickHouse `https://`, IMAP).
//! - [`cli`]: the `dmarc-ingest` command line.
//!
//! Stages know nothing of each other's internals: the parser knows no IMAP, the rows
//! know no XML.

pub mod ahead;
pub mod alerts;
pub mod attachment;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dnscheck;
pub mod domains;
pub mod enrich;
pub mod failure;
pub mod input;
pub mod inventory;
pub mod mailbox;
pub mod message;
pub mod metrics;
pub mod pipeline;
pub mod report;
pub mod resolver;
pub mod rows;
pub mod status;
pub mod store;
pub mod tls;
