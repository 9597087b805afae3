//! dmarc-ingest: DMARC aggregate reports from IMAP (or files) into ClickHouse.
//!
//! The data path, one module per stage, in the order a report travels:
//!
//! - [`config`]: TOML file + `DMARC_INGEST_*` environment -> validated [`config::Config`].
//! - [`input`]: files, directories, mbox and Maildir -> messages and containers (the
//!   file-side driver of the stages below).
//! - [`message`]: one raw mail (MIME) -> its report attachments.
//! - [`attachment`]: one attachment (`.xml`, `.gz`, `.zip`) -> XML streams, size-capped.
//! - [`report`]: one XML stream -> report header and records, streamed.
//! - [`rows`]: header + record -> one flat row (pure), and its JSON / CSV encodings.
//! - [`cli`]: the `dmarc-ingest` command line.
//!
//! Stages know nothing of each other's internals: the parser knows no IMAP, the rows
//! know no XML.

pub mod attachment;
pub mod cli;
pub mod config;
pub mod input;
pub mod message;
pub mod pipeline;
pub mod report;
pub mod rows;
pub mod store;
