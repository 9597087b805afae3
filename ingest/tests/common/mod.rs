//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod clickhouse;
pub mod dns;
pub mod imap;
pub mod networks;
pub mod smtp;
pub mod traffic;
pub mod webhook;

use std::io::BufRead;
use std::path::PathBuf;

use dmarc_ingest::config::Limits;
use dmarc_ingest::input::{self, Flow, InputError, ReportSink};
use dmarc_ingest::report::ReportReader;
use dmarc_ingest::rows;

/// The repository's root (the workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The real-world corpus's `parsedmarc/` directory: under `DMARC_CORPUS_DIR`, by default
/// `../shared/corpus` beside the repository. `None` when it is not there: the caller
/// skips what needs it, and this says where it looked; with `CI=true` a missing corpus
/// fails the run instead.
pub fn corpus() -> Option<PathBuf> {
    let root = std::env::var_os("DMARC_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/corpus"));
    let dir = root.join("parsedmarc");
    if dir.is_dir() {
        return Some(dir);
    }
    let missing = format!(
        "the DMARC corpus is not at {} (DMARC_CORPUS_DIR names the directory that holds parsedmarc/ and README.md)",
        dir.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{missing}; with CI=true it is required");
    }
    eprintln!("skipped: {missing}");
    None
}

/// Counts what the parser found; keeps each row as JSON and each failure as text.
#[derive(Default)]
pub struct Collect {
    pub reports: u64,
    pub records: u64,
    pub messages: u64,
    pub report_ids: Vec<String>,
    /// `org|report_id|domain|date_begin` -> (records, messages), first occurrence wins.
    pub distinct: std::collections::HashMap<String, (u64, u64)>,
    pub rows: Vec<serde_json::Value>,
    pub failures: Vec<(String, String)>,
    /// Strip this prefix from sources (for stable golden output).
    pub strip: String,
}

impl ReportSink for Collect {
    fn report(
        &mut self,
        source: &str,
        reader: &mut ReportReader<&mut dyn BufRead>,
    ) -> Result<Flow, InputError> {
        let source = source
            .strip_prefix(&self.strip)
            .unwrap_or(source)
            .to_owned();
        let mut record_rows = rows::RecordRows::new(&source);
        let mut rows = Vec::new();
        while let Some(record) = reader.next_record()? {
            let row = record_rows.row(reader.header(), record)?;
            rows.push(serde_json::to_value(row.json()).unwrap());
        }
        self.reports += 1;
        self.records += reader.records_read();
        self.messages += reader.messages_read();
        let h = reader.header();
        self.report_ids.push(h.report_id.clone());
        let key = format!(
            "{}|{}|{}|{}",
            h.org_name, h.report_id, h.policy.domain, h.date_begin
        );
        self.distinct
            .entry(key)
            .or_insert((reader.records_read(), reader.messages_read()));
        self.rows.extend(rows);
        Ok(Flow::Continue)
    }

    fn failure(&mut self, source: &str, error: &InputError) -> Flow {
        let source = source
            .strip_prefix(&self.strip)
            .unwrap_or(source)
            .to_owned();
        self.failures.push((source, error.to_string()));
        Flow::Continue
    }
}

/// Parses `paths` with `limits`, collecting everything.
pub fn collect(paths: &[PathBuf], limits: &Limits, strip: &str) -> Collect {
    let mut c = Collect {
        strip: strip.to_owned(),
        ..Collect::default()
    };
    input::read_paths(paths, limits, &mut c);
    c
}

/// The report fixtures under `dir` (no golden files, docs or scripts), sorted.
pub fn input_files(dir: &std::path::Path) -> Vec<PathBuf> {
    dmarc_ingest::input::list_files(&[dir.to_owned()])
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// What a child process did: exit code, output, and its own peak RSS.
pub struct Measured {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// Peak resident set of the command alone (see [`run_measured`]), in KiB.
    pub max_rss_kib: i64,
    pub elapsed: std::time::Duration,
}

/// Runs `command` to its end, reading its output, and measures the child's own peak RSS.
///
/// The command runs under `common/measure-rss.py`, which forks it from a small process
/// and reports `wait4`'s figure: spawned straight from this test process, a child's peak
/// RSS would start at this process's own peak (Linux keeps the high-water mark of the
/// address space it replaces at exec), so any test that once held a large buffer would
/// inflate every later measurement. The floor is the wrapper's ~10 MiB.
pub fn run_measured(command: &mut std::process::Command) -> Measured {
    use std::process::Stdio;
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("measured");
    let wrapper =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/measure-rss.py");
    let mut wrapped = std::process::Command::new("python3");
    wrapped
        .arg(wrapper)
        .arg(&report)
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(Stdio::null());
    for (key, value) in command.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let out = wrapped.output().expect("spawn python3 measure-rss.py");
    let line = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "measure-rss.py wrote no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut fields = line
        .split_whitespace()
        .map(|f| f.parse::<i64>().expect("a number"));
    let (code, max_rss_kib) = (fields.next().expect("code"), fields.next().expect("rss"));
    Measured {
        code: code as i32,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        max_rss_kib,
        elapsed: started.elapsed(),
    }
}

/// Base64 as mail carries it (MIME line breaks every 76 characters), for test mails.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
