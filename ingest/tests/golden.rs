//! Golden files: every fixture in `sample-reports/` parses to exactly its
//! `<fixture>.expected.jsonl` (rows, then `{"error": ..}` lines for failures), and to the
//! report / record / message counts its author wrote in `expected-counts.tsv`.
//!
//! After a deliberate output change: `UPDATE_GOLDEN=1 cargo test --test golden`, then
//! review the diff.

mod common;

use std::path::{Path, PathBuf};

use dmarc_ingest::config::Limits;

fn fixtures() -> Vec<PathBuf> {
    let root = common::repo_root().join("sample-reports");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if !name.starts_with('.')
                && ![".md", ".py", ".tsv", ".jsonl", ".toml"]
                    .iter()
                    .any(|e| name.ends_with(e))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn golden_path(fixture: &Path) -> PathBuf {
    let mut name = fixture.file_name().unwrap().to_os_string();
    name.push(".expected.jsonl");
    fixture.with_file_name(name)
}

fn render(fixture: &Path) -> String {
    let strip = format!("{}/", common::repo_root().join("sample-reports").display());
    let got = common::collect(&[fixture.to_owned()], &Limits::default(), &strip);
    let mut lines: Vec<String> = got.rows.iter().map(|r| r.to_string()).collect();
    for (source, error) in &got.failures {
        lines.push(serde_json::json!({"source": source, "error": error}).to_string());
    }
    lines.join("\n") + "\n"
}

#[test]
fn fixtures_match_their_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let fixtures = fixtures();
    assert!(fixtures.len() >= 30, "fixtures missing: {fixtures:?}");
    let mut differ = Vec::new();
    for fixture in &fixtures {
        let got = render(fixture);
        let golden = golden_path(fixture);
        if update {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("{} has no golden file", fixture.display()));
        if got != want {
            differ.push(format!("{}:\n got: {got}\nwant: {want}", fixture.display()));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[test]
fn fixtures_match_their_authors_counts() {
    let root = common::repo_root().join("sample-reports");
    let table = std::fs::read_to_string(root.join("expected-counts.tsv")).unwrap();
    let mut checked = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cells: Vec<&str> = line.split('\t').collect();
        let (path, outcome) = (cells[0], cells[1]);
        let reports: u64 = cells[2].parse().unwrap();
        let records: u64 = cells[3].parse().unwrap();
        let messages: u64 = cells[4].parse().unwrap();
        let got = common::collect(&[root.join(path)], &Limits::default(), "");
        assert_eq!(
            (got.reports, got.records, got.messages),
            (reports, records, messages),
            "{path}: {:?}",
            got.failures
        );
        assert_eq!(
            outcome == "error",
            !got.failures.is_empty(),
            "{path}: {:?}",
            got.failures
        );
        if let Some(ids) = cells.get(5).filter(|s| !s.is_empty()) {
            let want: Vec<String> = ids
                .split(',')
                .map(|id| id.trim_start_matches('<').trim_end_matches('>').to_owned())
                .collect();
            assert_eq!(got.report_ids, want, "{path}");
        }
        checked += 1;
    }
    assert_eq!(
        checked,
        fixtures().len(),
        "every fixture must have a counts line"
    );
}
