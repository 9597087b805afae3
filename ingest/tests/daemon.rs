//! The daemon (`dmarc-ingest run`) against real dovecot and ClickHouse on 127.0.0.1:
//! a mixed mailbox drained exactly, kill -9 mid-batch, ClickHouse down while running,
//! the IMAP connection cut, and mail arriving during IDLE.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::clickhouse::{write_reports, OwnServer, TestDb};
use common::imap::{as_mails, Dovecot};
use dmarc_ingest::config::Limits;

fn run_once(db: &TestDb, imap: &Dovecot, user: &str, extra: &[(&str, &str)]) -> (i32, String) {
    let out = db
        .command(&["run", "--once"])
        .envs(imap.env(user))
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spawn_daemon(db: &TestDb, imap: &Dovecot, user: &str, extra: &[(&str, &str)]) -> Child {
    db.command(&["run"])
        .envs(imap.env(user))
        .envs(extra.iter().copied())
        .env("DMARC_INGEST_METRICS_LISTEN", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGTERM, then the exit code (the daemon must stop cleanly with 0).
fn terminate(mut child: Child) -> i32 {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Per mail file: whether it holds a valid report (-> Archive) and the distinct reports.
fn expectations(mails: &[PathBuf]) -> (usize, usize, HashMap<String, (u64, u64)>) {
    let limits = Limits {
        max_decompressed_bytes: 8 << 20,
        ..Limits::default()
    };
    let mut archive = 0;
    let mut invalid = 0;
    let mut distinct = HashMap::new();
    for mail in mails {
        let got = common::collect(std::slice::from_ref(mail), &limits, "");
        // An mbox file is delivered as several messages, each with one report here.
        let messages = if mail.extension().is_some_and(|e| e == "mbox") {
            got.reports as usize
        } else {
            1
        };
        if got.reports > 0 {
            archive += messages;
        } else {
            invalid += messages;
        }
        for (k, v) in got.distinct {
            distinct.entry(k).or_insert(v);
        }
    }
    (archive, invalid, distinct)
}

fn totals(db: &TestDb) -> (u64, u64) {
    (
        db.number("SELECT count() FROM {database}.records"),
        db.number("SELECT sum(message_count) FROM {database}.records"),
    )
}

fn sum(t: &HashMap<String, (u64, u64)>) -> (u64, u64) {
    t.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1))
}

fn zip_bomb(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("bomb.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("report.xml", options).unwrap();
    zip.write_all(b"<feedback><report_metadata><org_name>bomb</org_name></report_metadata>")
        .unwrap();
    let filler = b"<x/>".repeat(1 << 18);
    for _ in 0..64 {
        zip.write_all(&filler).unwrap();
    }
    zip.finish().unwrap();
    path
}

#[test]
fn a_mixed_mailbox_is_drained_exactly() {
    let imap = Dovecot::shared();
    let user = "dm_mixed";
    imap.fresh_user(user);
    let db = TestDb::fresh("daemon_mixed");
    let work = tempfile::tempdir().unwrap();
    let samples = common::repo_root().join("sample-reports");
    let mut files: Vec<PathBuf> = common::input_files(&samples)
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e != "jsonl")
                && p.file_name().unwrap() != "report-no-extension"
        })
        .collect();
    files.push(zip_bomb(work.path()));
    let mails = as_mails(&work.path().join("mails"), &files);
    // The same mail twice: a duplicate delivery.
    let google = mails
        .iter()
        .find(|m| m.ends_with("google.xml.eml"))
        .unwrap()
        .clone();
    let mut delivered = mails.clone();
    delivered.push(google);
    let (archive, invalid, distinct) = expectations(&delivered);
    imap.deliver(user, "INBOX", &delivered);

    let (code, stderr) = run_once(
        &db,
        &imap,
        user,
        &[("DMARC_INGEST_LIMITS_MAX_DECOMPRESSED_BYTES", "8388608")],
    );
    assert_eq!(code, 1, "broken mail makes --once fail: {stderr}");
    assert!(
        stderr.contains("decompressed size exceeds the limit"),
        "{stderr}"
    );
    assert_eq!(
        imap.counts(user, &["INBOX", "Archive", "Invalid"]),
        [0, archive, invalid],
        "{stderr}"
    );
    assert_eq!(totals(&db), sum(&distinct));
    assert_eq!(
        db.number("SELECT count() FROM {database}.reports"),
        distinct.len() as u64
    );
    let failed = db.number("SELECT count() FROM {database}.failures WHERE source LIKE '%uid%'");
    assert!(
        failed >= invalid as u64,
        "failures logged: {failed} < {invalid}"
    );
    assert_eq!(
        db.number("SELECT count() FROM {database}.failures WHERE reason_kind = 'limit_exceeded'"),
        1
    );

    // Delivered again: all duplicates, totals unchanged, everything archived again.
    imap.deliver(user, "INBOX", &delivered);
    let (_, stderr) = run_once(
        &db,
        &imap,
        user,
        &[("DMARC_INGEST_LIMITS_MAX_DECOMPRESSED_BYTES", "8388608")],
    );
    assert!(stderr.contains(" 0 reports written"), "{stderr}");
    assert_eq!(totals(&db), sum(&distinct));
    assert_eq!(
        imap.counts(user, &["INBOX", "Archive", "Invalid"]),
        [0, 2 * archive, 2 * invalid]
    );
}

#[test]
fn kill_mid_batch_then_rerun_loses_nothing() {
    let imap = Dovecot::shared();
    let user = "dm_kill";
    imap.fresh_user(user);
    let db = TestDb::fresh("daemon_kill");
    let work = tempfile::tempdir().unwrap();
    let reports = write_reports(work.path(), "mail", 240, 300);
    let mails = as_mails(&work.path().join("mails"), &reports);
    let (archive, _, distinct) = expectations(&mails);
    imap.deliver(user, "INBOX", &mails);
    let batch = [("DMARC_INGEST_IMAP_FETCH_BATCH", "20")];
    for round in 0..3 {
        let child = spawn_daemon(&db, &imap, user, &batch);
        let before = db.number("SELECT count() FROM {database}.reports");
        wait_until("a batch to land", Duration::from_secs(60), || {
            db.number("SELECT count() FROM {database}.reports") > before
        });
        std::thread::sleep(Duration::from_millis(150 * round));
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
        let counts = imap.counts(user, &["INBOX", "Archive", "Invalid"]);
        assert_eq!(
            counts.iter().sum::<usize>(),
            mails.len(),
            "round {round}: {counts:?}"
        );
        let archived = counts[1] as u64;
        assert!(
            archived <= db.number("SELECT count() FROM {database}.reports"),
            "only committed mail is archived"
        );
    }
    let (code, stderr) = run_once(&db, &imap, user, &batch);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        imap.counts(user, &["INBOX", "Archive", "Invalid"]),
        [0, archive, 0]
    );
    assert_eq!(totals(&db), sum(&distinct));
    assert_eq!(
        db.number("SELECT count() FROM {database}.reports"),
        distinct.len() as u64
    );
}

#[test]
fn clickhouse_down_keeps_mail_until_it_returns() {
    let imap = Dovecot::shared();
    let user = "dm_chdown";
    imap.fresh_user(user);
    let server = OwnServer::start();
    let db = TestDb::fresh_on(&server.url(), "daemon_chdown");
    let work = tempfile::tempdir().unwrap();
    let reports = write_reports(work.path(), "down", 30, 50);
    let mails = as_mails(&work.path().join("mails"), &reports);
    let (archive, _, distinct) = expectations(&mails);
    let fast_retry = [
        ("DMARC_INGEST_CLICKHOUSE_MAX_ATTEMPTS", "2"),
        ("DMARC_INGEST_CLICKHOUSE_RETRY_INITIAL_MS", "100"),
        ("DMARC_INGEST_CLICKHOUSE_RETRY_MAX_MS", "500"),
    ];
    let daemon = spawn_daemon(&db, &imap, user, &fast_retry);
    std::thread::sleep(Duration::from_millis(500));
    server.crash();
    imap.deliver(user, "INBOX", &mails);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        imap.counts(user, &["INBOX", "Archive", "Invalid"]),
        [mails.len(), 0, 0],
        "nothing moves while ClickHouse is down"
    );
    server.script("start");
    wait_until("the backlog to land", Duration::from_secs(60), || {
        imap.counts(user, &["INBOX"])[0] == 0
    });
    assert_eq!(imap.counts(user, &["Archive", "Invalid"]), [archive, 0]);
    assert_eq!(totals(&db), sum(&distinct));
    assert_eq!(terminate(daemon), 0);
}

#[test]
fn cut_connection_reconnects_and_idle_picks_up_new_mail() {
    let imap = Dovecot::own(1);
    let user = "dm_cut";
    imap.fresh_user(user);
    let db = TestDb::fresh("daemon_cut");
    let work = tempfile::tempdir().unwrap();
    let reports = write_reports(work.path(), "cut", 6, 10);
    let mails = as_mails(&work.path().join("mails"), &reports);
    let daemon = spawn_daemon(&db, &imap, user, &[]);
    // Mail delivered while the daemon idles lands within seconds.
    std::thread::sleep(Duration::from_secs(2));
    let delivered_at = Instant::now();
    imap.deliver(user, "INBOX", &mails[..2]);
    wait_until("IDLE to pick up new mail", Duration::from_secs(15), || {
        imap.counts(user, &["Archive"])[0] == 2
    });
    let idle_latency = delivered_at.elapsed();
    assert!(idle_latency < Duration::from_secs(10), "{idle_latency:?}");
    // Cut the IMAP connection; the daemon reconnects and goes on.
    imap.cut_sessions();
    std::thread::sleep(Duration::from_millis(500));
    imap.deliver(user, "INBOX", &mails[2..]);
    wait_until("mail after the cut", Duration::from_secs(30), || {
        imap.counts(user, &["Archive"])[0] == mails.len()
    });
    assert_eq!(db.number("SELECT count() FROM {database}.reports"), 6);
    assert_eq!(terminate(daemon), 0);
}

#[test]
fn several_mailboxes_are_each_drained() {
    let imap = Dovecot::shared();
    let db = TestDb::fresh("daemon_accounts");
    let work = tempfile::tempdir().unwrap();
    let mut expected = HashMap::new();
    for (i, user) in ["dm_acc_a", "dm_acc_b"].iter().enumerate() {
        imap.fresh_user(user);
        let dir = work.path().join(user);
        std::fs::create_dir_all(&dir).unwrap();
        let reports = write_reports(&dir, &format!("acc{i}"), 3, 5);
        let mails = as_mails(&dir.join("mails"), &reports);
        expected.extend(expectations(&mails).2);
        imap.deliver(user, "INBOX", &mails);
    }
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[imap]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"dm_acc_a\"\npassword = \"secret\"\n\n\
             [[imap_accounts]]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"dm_acc_b\"\npassword = \"secret\"\n",
            port = imap.port
        ),
    )
    .unwrap();
    let out = db
        .command(&["--config", config.to_str().unwrap(), "run", "--once"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("6 messages fetched, 6 archived"),
        "{stderr}"
    );
    for user in ["dm_acc_a", "dm_acc_b"] {
        assert_eq!(imap.counts(user, &["INBOX", "Archive"]), [0, 3], "{user}");
    }
    assert_eq!(totals(&db), sum(&expected));
}
