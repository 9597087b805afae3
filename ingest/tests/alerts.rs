//! The alert rules over generated report traffic, judged by `dmarc-ingest alerts check`
//! against the real ClickHouse: each rule fires where it must and not where it must not.

mod common;

use common::clickhouse::TestDb;
use common::traffic::{write_day, write_days, Mail};

const KNOWN: &str = "192.0.2.10";
const SPOOFER: &str = "192.0.2.66";

fn sync_domains(db: &TestDb, dir: &std::path::Path, domains: &[&str]) -> std::path::PathBuf {
    let file = dir.join("domains.csv");
    let mut csv = String::from("domain,owner,group,parked,contact\n");
    for domain in domains {
        csv.push_str(&format!("{domain},Owner,Group,no,postmaster@{domain}\n"));
    }
    std::fs::write(&file, csv).unwrap();
    let out = db
        .command(&["domains", "sync"])
        .env("DMARC_INGEST_DOMAINS_FILE", &file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    file
}

fn import(db: &TestDb, dir: &std::path::Path) {
    let out = db.cli(&["import", &dir.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn each_traffic_rule_fires_where_it_must_and_nowhere_else() {
    let db = TestDb::fresh("alerts_traffic");
    let state = tempfile::tempdir().unwrap();
    let reports = state.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    let domains = [
        "new-source.test",
        "new-source-small.test",
        "surge.test",
        "surge-usual.test",
        "sender-fails.test",
        "sender-fine.test",
        "silent.test",
        "sparse.test",
    ];
    sync_domains(&db, state.path(), &domains);
    let history = 2..32u64;
    let recent = 0..2u64;
    // Spoofing by a new source: 60 failing messages (threshold 50) vs 49.
    for (domain, failing) in [("new-source.test", 60), ("new-source-small.test", 49)] {
        write_days(
            &reports,
            domain,
            history.clone(),
            &[Mail::passing(KNOWN, 20)],
        );
        write_day(
            &reports,
            domain,
            1,
            &[Mail::passing(KNOWN, 20), Mail::failing(SPOOFER, failing)],
        );
        write_day(&reports, domain, 0, &[Mail::passing(KNOWN, 20)]);
    }
    // A surge: usually 100 failing a day, then 600 (over 5x and 500) vs 450.
    for (domain, peak) in [("surge.test", 600), ("surge-usual.test", 450)] {
        write_days(
            &reports,
            domain,
            history.clone(),
            &[Mail::passing(KNOWN, 50), Mail::failing(SPOOFER, 100)],
        );
        write_day(
            &reports,
            domain,
            1,
            &[Mail::passing(KNOWN, 50), Mail::failing(SPOOFER, peak)],
        );
        write_day(&reports, domain, 0, &[Mail::passing(KNOWN, 50)]);
    }
    // A legitimate sender whose DKIM starts failing (SPF still passes, so DMARC too).
    let dkim_broken = Mail {
        dkim: false,
        ..Mail::passing(KNOWN, 10)
    };
    write_days(
        &reports,
        "sender-fails.test",
        history.clone(),
        &[Mail::passing(KNOWN, 10)],
    );
    write_days(
        &reports,
        "sender-fails.test",
        recent.clone(),
        &[dkim_broken],
    );
    write_days(
        &reports,
        "sender-fine.test",
        0..32,
        &[Mail::passing(KNOWN, 10)],
    );
    // Silence: daily reports until 3 days ago, vs a domain reported every third day.
    write_days(&reports, "silent.test", 3..33, &[Mail::passing(KNOWN, 5)]);
    write_days(
        &reports,
        "sparse.test",
        (3..33).filter(|d| d % 3 == 0),
        &[Mail::passing(KNOWN, 5)],
    );
    import(&db, &reports);

    let out = db.cli(&["alerts", "check"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let open = db.rows(
        "SELECT rule, domain, key, summary FROM {database}.alerts WHERE state = 'open' \
         ORDER BY rule, domain, key",
    );
    let fired: Vec<[&str; 3]> = open
        .iter()
        .map(|r| [r[0].as_str(), r[1].as_str(), r[2].as_str()])
        .collect();
    assert_eq!(
        fired,
        [
            ["sender_failing", "sender-fails.test", "192.0.2.10 dkim"],
            ["silence", "silent.test", ""],
            ["spoofing_new_source", "new-source.test", SPOOFER],
            ["spoofing_surge", "surge.test", ""],
        ],
        "{open:#?}"
    );
    let summary = |rule: &str| {
        open.iter()
            .find(|r| r[0] == rule)
            .map(|r| r[3].clone())
            .unwrap()
    };
    assert!(
        summary("spoofing_new_source").contains("sent 60 messages failing DMARC"),
        "{open:?}"
    );
    assert!(
        summary("spoofing_surge").contains("600 messages failing DMARC in one day"),
        "{open:?}"
    );
    assert!(
        summary("sender_failing").contains("now fails it for 20 of 20"),
        "{open:?}"
    );
    assert!(
        summary("silence").contains("no report for 3 days"),
        "{open:?}"
    );
    let evidence = db.rows(
        "SELECT evidence_names, evidence_values FROM {database}.alerts \
         WHERE rule = 'spoofing_new_source'",
    );
    assert_eq!(evidence, [["['failing','messages']", "[60,60]"]]);

    // Judged again with nothing new: the same four, one open alert each.
    let out = db.cli(&["alerts", "check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0 alerts opened, 4 still open, 0 resolved"),
        "{stderr}"
    );
    assert_eq!(db.number("SELECT count() FROM {database}.alerts"), 4);
}
