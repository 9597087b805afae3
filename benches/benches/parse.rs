//! Parse throughput, gzip bytes in memory -> row structs, one core.
//!
//! `cargo bench -p dmarc-ingest-benches --bench parse`
//!
//! - `tokenize_only`: gunzip + quick-xml events, nothing built (the floor to compare with);
//! - `rows`: the real path: attachment sniff and caps, gunzip, report reader, one
//!   owned `RecordRow` per record;
//! - `rows_dmarcbis`: the same over an RFC 9990 report.

use std::hint::black_box;
use std::io::{BufReader, Cursor, Write};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dmarc_ingest::attachment;
use dmarc_ingest::config::Limits;
use dmarc_ingest::report::{ReportError, ReportReader};
use dmarc_ingest::rows;
use dmarc_ingest_benches::{write_report, ReportSpec};

const RECORDS: u64 = 200_000;

fn gzip_report(dmarcbis: bool) -> (Vec<u8>, u64) {
    let spec = ReportSpec {
        records: RECORDS,
        seed: 7,
        dmarcbis,
        ..ReportSpec::default()
    };
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let totals = write_report(&mut enc, &spec).unwrap();
    enc.flush().unwrap();
    (enc.finish().unwrap(), totals.bytes)
}

/// Parses every record into a row; returns the number of rows.
fn parse_rows(gz: &[u8]) -> u64 {
    let limits = Limits::default();
    let mut rows_built = 0u64;
    let budget = attachment::DecompressionBudget::new(limits.max_decompressed_bytes);
    attachment::for_each_xml(
        Cursor::new(gz),
        Some("bench.xml.gz"),
        &limits,
        &budget,
        |stream| {
            let mut reader = ReportReader::open(stream.reader, &limits)?;
            let mut record_rows = rows::RecordRows::new("bench");
            while let Some(record) = reader.next_record()? {
                let row = record_rows.row(reader.header(), record)?;
                black_box(&row);
                rows_built += 1;
            }
            Ok::<(), ReportError>(())
        },
    )
    .map_err(|e: ReportError| e.to_string())
    .unwrap();
    rows_built
}

/// gunzip + tokenizer only: counts `<record>` start tags.
fn tokenize_only(gz: &[u8]) -> u64 {
    let decoder = flate2::read::MultiGzDecoder::new(gz);
    let mut xml = quick_xml::Reader::from_reader(BufReader::with_capacity(64 * 1024, decoder));
    xml.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut records = 0;
    loop {
        match xml.read_event_into(&mut buf).unwrap() {
            quick_xml::events::Event::Start(s) if s.local_name().as_ref() == b"record" => {
                records += 1
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    records
}

fn bench(c: &mut Criterion) {
    let (gz, xml_bytes) = gzip_report(false);
    let (gz_bis, _) = gzip_report(true);
    assert_eq!(parse_rows(&gz), RECORDS);
    assert_eq!(tokenize_only(&gz), RECORDS);

    let mut group = c.benchmark_group("parse");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function("tokenize_only", |b| {
        b.iter(|| tokenize_only(black_box(&gz)))
    });
    group.bench_function("rows", |b| b.iter(|| parse_rows(black_box(&gz))));
    group.bench_function("rows_dmarcbis", |b| {
        b.iter(|| parse_rows(black_box(&gz_bis)))
    });
    group.throughput(Throughput::Bytes(xml_bytes));
    group.bench_function("rows_bytes", |b| b.iter(|| parse_rows(black_box(&gz))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
