//! Hard limits: bombs are refused quickly and with little memory, by the real binary
//! (`dmarc-ingest parse`), whose peak RSS is read with getrusage after it exits.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use dmarc_ingest::config::Limits;

/// Runs `dmarc-ingest parse` with extra environment; returns (exit code, stderr, peak RSS
/// in KiB of the largest child so far).
fn parse_binary(path: &Path, env: &[(&str, &str)]) -> (i32, String, i64) {
    let out = Command::new(env!("CARGO_BIN_EXE_dmarc-ingest"))
        .arg("parse")
        .arg(path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    // SAFETY: getrusage only writes into the struct it is given.
    let rss_kib = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    };
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        rss_kib,
    )
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
