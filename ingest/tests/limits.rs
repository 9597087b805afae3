//! Hard limits: bombs are refused quickly and with little memory, by the real binary
//! (`dmarc-ingest parse`), whose peak RSS is read with getrusage after it exits.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use dmarc_ingest::config::Limits;

/// Runs `dmarc-ingest parse` with extra environment; returns (exit code, stderr, peak RSS
/// of that child in KiB).
fn parse_binary(path: &Path, env: &[(&str, &str)]) -> (i32, String, i64) {
    let m = common::run_measured(
        Command::new(env!("CARGO_BIN_EXE_dmarc-ingest"))
            .arg("parse")
            .arg(path)
            .envs(env.iter().copied()),
    );
    (m.code, m.stderr, m.max_rss_kib)
}

/// A report head, then `<x/>` elements (skipped as unknown) as far as `total` bytes go:
/// valid XML that never ends, the worst case for a size cap.
fn endless_report(total: usize) -> Vec<u8> {
    let mut xml =
        b"<feedback><report_metadata><org_name>bomb</org_name></report_metadata>".to_vec();
    xml.resize(total, 0);
    let pattern = b"<x/>";
    for (i, b) in xml.iter_mut().enumerate().skip(72) {
        *b = pattern[i % 4];
    }
    xml
}

fn gzip_members(member: &[u8], copies: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(member).unwrap();
    let one = enc.finish().unwrap();
    one.repeat(copies)
}

#[test]
fn gzip_bomb_of_zeros_is_refused_by_the_token_cap() {
    // 10 GiB of zero bytes in concatenated gzip members (~10 MB on disk).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.xml.gz");
    std::fs::write(&path, gzip_members(&vec![0u8; 16 << 20], 640)).unwrap();
    let started = std::time::Instant::now();
    let (code, stderr, rss_kib) = parse_binary(&path, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("bomb.xml.gz"), "{stderr}");
    assert!(stderr.contains("exceeds the limit"), "{stderr}");
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
    // Not a timing assertion on speed, a sanity bound: the cap stops it early.
    assert!(started.elapsed().as_secs() < 30);
}

#[test]
fn gzip_bomb_of_valid_xml_is_refused_by_the_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xml-bomb.gz");
    // 32 copies of 8 MiB = 256 MiB of endless valid XML; the cap is 16 MiB.
    let mut data = gzip_members(&endless_report(8 << 20), 1);
    let more = gzip_members(&b"<x/>".repeat(2 << 20), 31);
    data.extend(more);
    std::fs::write(&path, data).unwrap();
    let (code, stderr, rss_kib) = parse_binary(
        &path,
        &[("DMARC_INGEST_LIMITS_MAX_DECOMPRESSED_BYTES", "16777216")],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("decompressed size exceeds the limit of 16777216"),
        "{stderr}"
    );
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
}

#[test]
fn zip_bomb_is_refused() {
    use zip::write::SimpleFileOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("report.xml", options).unwrap();
    let chunk = endless_report(1 << 20);
    zip.write_all(&chunk).unwrap();
    let filler = b"<x/>".repeat(1 << 18);
    for _ in 0..255 {
        zip.write_all(&filler).unwrap();
    }
    zip.finish().unwrap();
    let (code, stderr, rss_kib) = parse_binary(
        &path,
        &[("DMARC_INGEST_LIMITS_MAX_DECOMPRESSED_BYTES", "8388608")],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("bomb.zip: report.xml"), "{stderr}");
    assert!(
        stderr.contains("decompressed size exceeds the limit"),
        "{stderr}"
    );
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
}

#[test]
fn zip_with_too_many_entries_is_refused() {
    use zip::write::SimpleFileOptions;
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    for i in 0..100 {
        zip.start_file(format!("r{i}.xml"), SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"<feedback/>").unwrap();
    }
    zip.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.zip");
    std::fs::write(&path, buf.into_inner()).unwrap();
    let got = common::collect(&[path], &Limits::default(), "");
    assert_eq!(got.records, 0);
    assert!(
        got.failures[0]
            .1
            .contains("zip entry count exceeds the limit of 64"),
        "{:?}",
        got.failures
    );
}

#[test]
fn billion_laughs_is_refused_at_once() {
    let path = common::repo_root().join("sample-reports/broken/billion-laughs.xml");
    let (code, stderr, rss_kib) = parse_binary(&path, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("billion-laughs.xml: DOCTYPE declarations are refused"),
        "{stderr}"
    );
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
}

#[test]
fn other_files_are_still_parsed_after_a_failure() {
    let root = common::repo_root().join("sample-reports");
    let out = Command::new(env!("CARGO_BIN_EXE_dmarc-ingest"))
        .args(["parse", "--format", "csv"])
        .arg(root.join("broken/empty.xml"))
        .arg(root.join("reporters/google.xml"))
        .arg(root.join("broken/not-dmarc.xml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1 + 4, "{stdout}");
    assert!(stdout.starts_with("source,org_name,email,report_id,policy_domain,"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let errors: Vec<&str> = stderr.lines().collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(errors[0].ends_with("empty.xml: empty input"), "{stderr}");
    assert!(
        errors[1].contains("not-dmarc.xml: not a DMARC aggregate report"),
        "{stderr}"
    );
}

/// The head of a report up to the opening of its first value.
const HEAD: &[u8] = b"<?xml version=\"1.0\"?><feedback><report_metadata><org_name>";

/// gzip of `head`, then `filler` repeated to `total` bytes, then `tail`, written as
/// members (the way a stranger would make it small).
fn flood(head: &[u8], filler: &[u8], total: usize, tail: &[u8]) -> Vec<u8> {
    let chunk = filler.repeat((4 << 20) / filler.len());
    let mut out = gzip_members(head, 1);
    let one = gzip_members(&chunk, 1);
    out.extend(one.repeat(total / chunk.len()));
    out.extend(gzip_members(tail, 1));
    out
}

#[test]
fn a_value_of_gt_signs_is_refused_before_it_is_buffered() {
    // The case: ~600 KB of gzip; before, 1.7 GiB and 6.5 s to refuse.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flood.xml.gz");
    std::fs::write(&path, flood(HEAD, b"x>", 300 << 20, b"</org_name>")).unwrap();
    let (code, stderr, rss_kib) = parse_binary(&path, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "an XML token (text, tag, comment, CDATA or DOCTYPE) exceeds the limit of 1048576"
        ),
        "{stderr}"
    );
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
}

#[test]
fn every_token_shape_is_capped_at_the_default() {
    // 64 MiB inside a comment, a CDATA section, an attribute value, a mismatched end
    // tag and a quoted end tag: each one token, each refused at the default 1 MiB.
    let dir = tempfile::tempdir().unwrap();
    let shapes: [(&str, &[u8], &[u8]); 5] = [
        ("comment", b"<!-- ", b" -->"),
        ("cdata", b"<![CDATA[", b"]]>"),
        ("attribute", b"<a v=\"", b"\"/>"),
        ("end tag", b"</a ", b">"),
        ("quoted end tag", b"</a \"", b"\">"),
    ];
    for (name, open, close) in shapes {
        let path = dir
            .path()
            .join(format!("{}.xml.gz", name.replace(' ', "-")));
        let head = [HEAD, open].concat();
        std::fs::write(&path, flood(&head, b"y>", 64 << 20, close)).unwrap();
        let (code, stderr, rss_kib) = parse_binary(&path, &[]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(
            stderr.contains("exceeds the limit of 1048576"),
            "{name}: {stderr}"
        );
        assert!(rss_kib < 64 * 1024, "{name}: peak RSS {rss_kib} KiB");
    }
}

#[test]
fn a_mail_of_half_a_million_empty_parts_is_refused_cheaply_and_briefly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parts.eml");
    let mut mail = b"From: x@example.net\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n".to_vec();
    for _ in 0..500_000 {
        mail.extend_from_slice(b"--b\r\nContent-Type: text/plain\r\n\r\n\r\n");
    }
    mail.extend_from_slice(b"--b--\r\n");
    std::fs::write(&path, &mail).unwrap();
    let (code, stderr, rss_kib) = parse_binary(&path, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("more than 1000 MIME parts"), "{stderr}");
    assert!(
        stderr.len() < 2048,
        "one short line: {} bytes",
        stderr.len()
    );
    assert!(rss_kib < 96 * 1024, "peak RSS {rss_kib} KiB");
}

/// A report whose one record carries `results` DKIM results.
fn record_with_results(results: usize) -> Vec<u8> {
    let mut xml = b"<feedback><report_metadata><org_name>o</org_name><report_id>r</report_id><date_range><begin>1700000000</begin><end>1700086399</end></date_range></report_metadata><policy_published><domain>example.com</domain></policy_published><record><row><source_ip>192.0.2.1</source_ip><count>1</count></row><identifiers><header_from>example.com</header_from></identifiers><auth_results>".to_vec();
    for _ in 0..results {
        xml.extend_from_slice(b"<dkim><domain>a</domain><result>pass</result></dkim>");
    }
    xml.extend_from_slice(b"</auth_results></record></feedback>");
    xml
}

#[test]
fn one_record_keeps_at_most_the_default_record_bytes() {
    // 64 bytes of bookkeeping a result and its values: 55,000 results keep ~3.8 MiB,
    // under the default 4 MiB; 70,000 keep ~4.8 MiB.
    let dir = tempfile::tempdir().unwrap();
    let under = dir.path().join("under.xml");
    std::fs::write(&under, record_with_results(55_000)).unwrap();
    let (code, stderr, _) = parse_binary(&under, &[]);
    assert_eq!(code, 0, "{stderr}");
    let over = dir.path().join("over.xml");
    std::fs::write(&over, record_with_results(70_000)).unwrap();
    let (code, stderr, rss_kib) = parse_binary(&over, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("the values kept for one record exceeds the limit of 4194304"),
        "{stderr}"
    );
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB");
}

#[test]
fn the_attachments_of_one_mail_share_one_decompression_budget() {
    // Three attachments of 8 MiB of XML each, under a 20 MiB budget: the third fails,
    // where each alone would pass.
    let xml = endless_report(8 << 20);
    let gz = common::base64(&gzip_members(&xml, 1));
    let mut mail = b"From: x@example.net\r\nSubject: r\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n".to_vec();
    for i in 0..3 {
        mail.extend_from_slice(
            format!("--b\r\nContent-Type: application/gzip; name=\"r{i}.xml.gz\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{gz}\r\n").as_bytes(),
        );
    }
    mail.extend_from_slice(b"--b--\r\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("three.eml");
    std::fs::write(&path, &mail).unwrap();
    let env = [("DMARC_INGEST_LIMITS_MAX_DECOMPRESSED_BYTES", "20971520")];
    let (_, stderr, _) = parse_binary(&path, &env);
    let refused: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("decompressed size exceeds the limit of 20971520"))
        .collect();
    assert_eq!(refused.len(), 1, "{stderr}");
    assert!(refused[0].contains("r2.xml.gz"), "{stderr}");
}

#[test]
fn an_lzma_entry_declaring_a_huge_dictionary_costs_no_memory() {
    // LZMA in zip: version (2 bytes), properties size (2), lc/lp/pb, a 4 GiB - 1
    // dictionary, then garbage.
    let mut entry = vec![9u8, 20, 5, 0, 0x5d, 0xff, 0xff, 0xff, 0xff];
    entry.extend(std::iter::repeat_n(0x55u8, 4096));
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    writer.start_file("r.xml", stored).unwrap();
    writer.write_all(&entry).unwrap();
    let mut zip = writer.finish().unwrap().into_inner();
    for (signature, offset) in [(b"PK\x03\x04", 8), (b"PK\x01\x02", 10)] {
        let at = zip.windows(4).position(|w| w == signature).unwrap();
        zip[at + offset..at + offset + 2].copy_from_slice(&14u16.to_le_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lzma.zip");
    std::fs::write(&path, &zip).unwrap();
    let (code, stderr, rss_kib) = parse_binary(&path, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(rss_kib < 64 * 1024, "peak RSS {rss_kib} KiB: {stderr}");
}

#[test]
fn a_panic_in_a_stage_fails_its_file_and_parse_goes_on() {
    // google.xml's report panics (a test-only fault); dmarcbis.xml after it is printed.
    let root = common::repo_root().join("sample-reports/reporters");
    let m = common::run_measured(
        Command::new(env!("CARGO_BIN_EXE_dmarc-ingest"))
            .args(["parse", "--format", "csv"])
            .arg(root.join("google.xml"))
            .arg(root.join("dmarcbis.xml"))
            .env("DMARC_TEST_PANIC_REPORT_ID", "4827365019283746501"),
    );
    assert_eq!(m.code, 1, "{}", m.stderr);
    let errors: Vec<&str> = m
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", m.stderr);
    assert!(
        errors[0].contains("google.xml: a processing stage panicked"),
        "{}",
        m.stderr
    );
    let stdout = String::from_utf8(m.stdout).unwrap();
    assert!(
        !stdout.contains("4827365019283746501"),
        "no row of the panicking report"
    );
    assert!(
        stdout.contains("6f2d8c1e-3b7a-4e59-9c0d-a41b5e7f2c90"),
        "{stdout}"
    );
}

/// The measurement itself: a child's peak RSS is its own, however much this test process
/// once held (spawned straight from here, it would start at this process's peak).
#[test]
fn a_childs_peak_rss_does_not_include_the_test_process() {
    let mut big = vec![0u8; 256 << 20];
    for page in big.chunks_mut(4096) {
        page[0] = 1;
    }
    std::hint::black_box(&big);
    drop(big);
    let m = common::run_measured(Command::new(env!("CARGO_BIN_EXE_dmarc-ingest")).arg("--version"));
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert!(m.max_rss_kib < 32 * 1024, "peak RSS {} KiB", m.max_rss_kib);
}
