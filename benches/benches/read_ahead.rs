//! Read-ahead: small mails (one gzip report of 20 records each, base64 in MIME) ->
//! parsed units, in order, as the daemon's batch thread receives them.
//!
//! `cargo bench -p dmarc-ingest-benches --bench read_ahead`
//!
//! - `inline`: one thread reads every mail (no read-ahead);
//! - `workers_N`: N read-ahead threads parse ahead while the calling thread takes the
//!   results in order (the daemon uses one per core, at most four).
//!
//! On a machine whose cores are free, this is the parse side's ceiling for a batch; in
//! the daemon, ClickHouse and the IMAP server share the cores.

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dmarc_ingest::ahead::{self, Ahead};
use dmarc_ingest::config::Limits;
use dmarc_ingest_benches::{write_report, ReportSpec};

const MAILS: usize = 1_000;
const RECORDS: u64 = 20;

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 4);
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (k, b)| n | u32::from(*b) << (16 - 8 * k));
        for k in 0..4 {
            out.push(if k <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * k)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

/// One mail carrying report `i` as a gzip attachment.
fn mail(i: usize) -> Vec<u8> {
    let spec = ReportSpec {
        records: RECORDS,
        seed: i as u64,
        report_id: format!("read-ahead-{i}"),
        ..ReportSpec::default()
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    write_report(&mut gz, &spec).unwrap();
    gz.flush().unwrap();
    let gz = gz.finish().unwrap();
    format!(
        "From: noreply-dmarc@example.net\r\nTo: rua@example.com\r\nSubject: Report {i}\r\n\
         Message-ID: <{i}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: application/gzip; name=\"r{i}.xml.gz\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"r{i}.xml.gz\"\r\n\r\n{}\r\n--b--\r\n",
        base64(&gz)
    )
    .into_bytes()
}

/// Reads every mail with `workers` read-ahead threads; returns the reports read.
fn read_all(runtime: &tokio::runtime::Handle, mails: &Arc<[Vec<u8>]>, workers: usize) -> usize {
    let limits = Limits::default();
    let prepare = Arc::new(move |raw: &Vec<u8>| ahead::read_message(raw, "bench", &limits, None));
    let mut reports = 0;
    ahead::in_order(
        runtime,
        mails.clone(),
        workers,
        ahead::DEPTH,
        prepare,
        |_, read| {
            if let Ahead::Parsed(units) = read {
                reports += units.len();
                black_box(units);
            }
            true
        },
    );
    reports
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    let mails: Arc<[Vec<u8>]> = (0..MAILS).map(mail).collect();
    assert_eq!(read_all(&handle, &mails, 0), MAILS);
    assert_eq!(read_all(&handle, &mails, 2), MAILS);

    let mut group = c.benchmark_group("read_ahead");
    group.sample_size(20);
    group.throughput(Throughput::Elements(MAILS as u64));
    group.bench_function("inline", |b| b.iter(|| read_all(&handle, &mails, 0)));
    for workers in [1, 2, 4] {
        group.bench_function(format!("workers_{workers}"), |b| {
            b.iter(|| read_all(&handle, &mails, workers))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
