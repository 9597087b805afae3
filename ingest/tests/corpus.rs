//! Conformance: every file of the shared parsedmarc corpus parses to the rows and message
//! totals of the table in its README (read from there, so the two cannot drift apart).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dmarc_ingest::config::Limits;

/// (file, expected (rows, messages) or None for "must be rejected").
fn expectations(corpus: &Path) -> Vec<(String, Option<(u64, u64)>)> {
    let readme_path = corpus.join("../README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .unwrap_or_else(|e| panic!("{}: {e}", readme_path.display()));
    let mut out = Vec::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | file | rows | messages | note |
        if cells.len() < 5 || cells[1] == "file" || cells[1].starts_with("---") {
            continue;
        }
        let expected = match (cells[2].parse::<u64>(), cells[3].parse::<u64>()) {
            (Ok(r), Ok(m)) => Some((r, m)),
            _ if cells[2] == "-" => None,
            _ => continue,
        };
        // "extract_report/nice-input.xml (.xml.gz, .xml.zip)": the same report in several
        // containers.
        let name = cells[1];
        match name.split_once(" (") {
            Some((base, variants)) => {
                out.push((base.to_owned(), expected));
                let stem = base.strip_suffix(".xml").unwrap_or(base);
                for v in variants.trim_end_matches(')').split(',') {
                    out.push((format!("{stem}{}", v.trim()), expected));
                }
            }
            None => out.push((name.to_owned(), expected)),
        }
    }
    out
}

#[test]
fn corpus_matches_its_readme_table() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let table = expectations(&corpus);
    assert!(table.len() >= 25, "README table not found: {table:?}");
    let mut mismatches = Vec::new();
    for (file, expected) in &table {
        let path = corpus.join(file);
        assert!(path.is_file(), "{} listed but missing", path.display());
        let got = common::collect(&[path], &Limits::default(), "");
        match expected {
            Some((rows, messages)) => {
                if !got.failures.is_empty() || (got.records, got.messages) != (*rows, *messages) {
                    mismatches.push(format!(
                        "{file}: expected {rows} rows / {messages} messages, got {} / {} {:?}",
                        got.records, got.messages, got.failures
                    ));
                }
            }
            None => {
                if got.failures.len() != 1 || got.records != 0 {
                    mismatches.push(format!(
                        "{file}: expected one clear error, got {:?}",
                        got.failures
                    ));
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_corpus_file_is_in_the_table() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let listed: BTreeSet<String> = expectations(&corpus).into_iter().map(|(f, _)| f).collect();
    let mut unlisted = Vec::new();
    let mut stack = vec![corpus.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&corpus)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel != "LICENSE" && !listed.contains(&rel) {
                unlisted.push(rel);
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "corpus files without an expectation: {unlisted:?}"
    );
}

#[test]
fn corpus_recoveries_are_recorded() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let ikea = common::collect(
        &[corpus.join("aggregate/ikea.com!example.de!1538690400!1538776800.xml")],
        &Limits::default(),
        "",
    );
    let problems = ikea.rows[0]["problems"].to_string();
    assert!(problems.contains("xs:schema"), "{problems}");

    let upper = common::collect(
        &[corpus.join("aggregate_invalid/report_with_upper_cased_pass.xml")],
        &Limits::default(),
        "",
    );
    let row = &upper.rows[0];
    assert!(
        row["dkim_results"].to_string().contains("\"pass\"")
            || row["spf_results"].to_string().contains("\"pass\""),
        "{row}"
    );
    assert!(!row.to_string().contains("\"Pass\""), "{row}");

    let empty_org = common::collect(
        &[corpus.join("aggregate/!example.com!1538204542!1538463818.xml")],
        &Limits::default(),
        "",
    );
    assert_eq!(empty_org.rows[0]["org_name"], "accurateplastics.com");

    let empty = common::collect(&[corpus.join("empty.xml")], &Limits::default(), "");
    assert!(empty.failures[0].0.ends_with("empty.xml"));
    assert_eq!(empty.failures[0].1, "empty input");
}
