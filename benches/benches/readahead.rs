//! Read-ahead of a fetched batch, the importer's side only: 1,000 mails of one gzip report
//! of 20 records (base64 in MIME) -> every record handed to a sink, in order.
//!
//! `cargo bench -p dmarc-ingest-benches --bench readahead`
//!
//! - `stream`: each mail read on the calling thread (`input::read_message`);
//! - `read_ahead`: the daemon's way, the next mails read on helper threads
//!   (`readahead::in_order` with `readahead::helpers()`), replayed in order.

use std::hint::black_box;
use std::io::Write;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dmarc_ingest::config::Limits;
use dmarc_ingest::input::{self, Flow, InputError, ReportSink};
use dmarc_ingest::readahead::{self, Ahead};
use dmarc_ingest::report::ReportStream;
use dmarc_ingest::rows::RecordRows;
use dmarc_ingest_benches::{write_report, ReportSpec};

const MAILS: u64 = 1_000;

/// The allocator of the shipped binary: where rows are freed matters.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn mails() -> Vec<Vec<u8>> {
    (0..MAILS)
        .map(|i| {
            let spec = ReportSpec {
                records: 20,
                seed: i + 1,
                report_id: format!("bench-{i}"),
                ..ReportSpec::default()
            };
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            write_report(&mut gz, &spec).unwrap();
            gz.flush().unwrap();
            let body = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
            format!(
                "From: r@example.net\r\nTo: d@example.com\r\nSubject: Report\r\n\
                 MIME-Version: 1.0\r\nContent-Type: application/gzip; name=\"r.xml.gz\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{body}\r\n"
            )
            .into_bytes()
        })
        .collect()
}

/// Builds every record's row, as the batch does; counts them.
#[derive(Default)]
struct Rows(u64);

impl ReportSink for Rows {
    fn report(&mut self, source: &str, reader: &mut dyn ReportStream) -> Result<Flow, InputError> {
        let mut rows = RecordRows::new(source);
        while let Some(record) = reader.next_record()? {
            black_box(rows.row(reader.header(), record)?);
            self.0 += 1;
        }
        Ok(Flow::Continue)
    }

    fn failure(&mut self, source: &str, error: &InputError) -> Flow {
        panic!("{source}: {error}");
    }
}

fn bench(c: &mut Criterion) {
    let mails = mails();
    let limits = Limits::default();
    let mut group = c.benchmark_group("readahead");
    group.throughput(Throughput::Elements(MAILS));
    group.sample_size(20);
    group.bench_function("stream", |b| {
        b.iter(|| {
            let mut sink = Rows::default();
            for raw in &mails {
                input::read_message(raw, "m", &limits, &mut sink);
            }
            assert_eq!(sink.0, MAILS * 20);
        })
    });
    group.bench_function("read_ahead", |b| {
        b.iter(|| {
            let mut sink = Rows::default();
            let helpers = readahead::helpers();
            readahead::in_order(
                &mails,
                helpers,
                |raw| readahead::prepare_message(raw, "m", &limits),
                |i, ahead| match ahead {
                    Ahead::Ready(prepared) => prepared.replay(&mut sink),
                    Ahead::Stream => input::read_message(&mails[i], "m", &limits, &mut sink),
                },
            );
            assert_eq!(sink.0, MAILS * 20);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
