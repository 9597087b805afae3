//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod clickhouse;
pub mod imap;

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

/// The shared real-world corpus, beside the repository.
pub fn corpus() -> PathBuf {
    repo_root().join("../shared/corpus/parsedmarc")
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
        let mut rows = Vec::new();
        while let Some(record) = reader.next_record()? {
            let row = rows::record_row(&source, reader.header(), &record);
            rows.push(serde_json::to_value(&row).unwrap());
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
    /// Peak resident set of this child alone (wait4), in KiB.
    pub max_rss_kib: i64,
    pub elapsed: std::time::Duration,
}

/// Runs `command` to its end, reading its output, and measures the child's own peak RSS
/// with `wait4` (not RUSAGE_CHILDREN, which mixes in every child the test process had).
#[allow(clippy::zombie_processes)]
pub fn run_measured(command: &mut std::process::Command) -> Measured {
    use std::io::Read;
    use std::process::Stdio;
    let started = std::time::Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    // Reaped below by wait4 (which std's wait cannot do: it gives no rusage).
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: wait4 writes only into the status and rusage it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let r = libc::wait4(pid, &mut status, 0, &mut usage);
        assert_eq!(r, pid, "wait4");
        usage
    };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    Measured {
        code,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned(),
        max_rss_kib: usage.ru_maxrss,
        elapsed: started.elapsed(),
    }
}
