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
        .env("DMARC_INGEST_METRICS_LISTEN", "")
        .envs(extra.iter().copied())
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
        // Every sample, the one without an extension too (wrapped as octet-stream).
        .filter(|p| {
            p.extension().is_some_and(|e| e != "jsonl")
                || p.file_name().unwrap() == "report-no-extension"
        })
        .collect();
    files.push(zip_bomb(work.path()));
    let mails = as_mails(&work.path().join("mails"), &files);
    assert!(
        mails.iter().any(|m| m.ends_with("report-no-extension.eml")),
        "a file without an extension is wrapped too"
    );
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
        // A MOVE the daemon sent just before it died is finished by the server on its
        // own; until then a mail can show in both folders. Once settled, none is lost or
        // doubled.
        let settled = || imap.counts(user, &["INBOX", "Archive", "Invalid"]);
        wait_until(
            "the server to finish an interrupted MOVE",
            Duration::from_secs(10),
            || settled().iter().sum::<usize>() == mails.len(),
        );
        let counts = settled();
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
    imap.deliver(user, "INBOX", &mails[..1]);
    wait_until("IDLE to pick up new mail", Duration::from_secs(15), || {
        imap.counts(user, &["Archive"])[0] == 1
    });
    let idle_latency = delivered_at.elapsed();
    assert!(idle_latency < Duration::from_secs(10), "{idle_latency:?}");
    // Back in IDLE: mail arriving within the linger after IDLE woke (0.7 s apart) makes
    // one batch.
    std::thread::sleep(Duration::from_millis(500));
    imap.deliver(user, "INBOX", &mails[1..2]);
    std::thread::sleep(Duration::from_millis(700));
    imap.deliver(user, "INBOX", &mails[2..3]);
    wait_until("the trickle to be taken", Duration::from_secs(15), || {
        imap.counts(user, &["Archive"])[0] == 3
    });
    assert_eq!(
        db.number("SELECT toUInt64(max(batch_size)) FROM {database}.mail_attempts WHERE uid > 1"),
        2,
        "the two mails were taken together"
    );
    // Cut the IMAP connection; the daemon reconnects and goes on.
    imap.cut_sessions();
    std::thread::sleep(Duration::from_millis(500));
    imap.deliver(user, "INBOX", &mails[3..]);
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

/// A small valid report with `report_id`, for `policy_domain`.
fn report_xml(report_id: &str, domain: &str, ip: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>hostile.example</org_name>\
         <email>r@hostile.example</email><report_id>{report_id}</report_id><date_range>\
         <begin>1700000000</begin><end>1700086399</end></date_range></report_metadata>\
         <policy_published><domain>{domain}</domain><p>none</p></policy_published><record><row>\
         <source_ip>{ip}</source_ip><count>3</count><policy_evaluated><disposition>none</disposition>\
         <dkim>pass</dkim><spf>pass</spf></policy_evaluated></row><identifiers>\
         <header_from>{domain}</header_from></identifiers><auth_results><dkim><domain>{domain}</domain>\
         <result>pass</result></dkim><spf><domain>{domain}</domain><result>pass</result></spf>\
         </auth_results></record></feedback>"
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// gzip members: `head`, then `filler` to `total` bytes (compressed once, repeated).
fn gzip_flood(head: &[u8], filler: &[u8], total: usize) -> Vec<u8> {
    let chunk = filler.repeat((4 << 20) / filler.len());
    let mut out = gzip(head);
    out.extend(gzip(&chunk).repeat(total / chunk.len()));
    out
}

/// A multipart mail of `parts` (headers, body), with a unique Message-ID.
fn eml(name: &str, parts: &[(String, String)]) -> Vec<u8> {
    let mut m = format!(
        "From: r@hostile.example\r\nTo: rua@reports.example\r\nSubject: {name}\r\nMessage-ID: <{name}@hostile.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"hb\"\r\n\r\n"
    )
    .into_bytes();
    for (headers, body) in parts {
        m.extend_from_slice(format!("--hb\r\n{headers}\r\n\r\n{body}\r\n").as_bytes());
    }
    m.extend_from_slice(b"--hb--\r\n");
    m
}

fn gz_part(name: &str, data: &[u8]) -> (String, String) {
    (
        format!(
            "Content-Type: application/gzip; name=\"{name}\"\r\nContent-Transfer-Encoding: base64"
        ),
        common::base64(data),
    )
}

/// The hostile mail of the poison-proof issue, as files for `as_mails`: each name says
/// what it is, and the `reason_kind` its failure must be recorded with.
fn hostile_mix(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut out: Vec<(PathBuf, &'static str)> = Vec::new();
    let mut put = |name: &str, bytes: Vec<u8>, kind: &'static str| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        out.push((path, kind));
    };
    let head = b"<?xml version=\"1.0\"?><feedback><report_metadata><org_name>";
    // 300 MiB of `x>` in a value, ~600 KB of gzip: 1.7 GiB before.
    put(
        "gt-flood.xml.gz",
        gzip_flood(head, b"x>", 300 << 20),
        "limit_exceeded",
    );
    // 64 MiB of `y>` in a comment inside the value: accepted at 214 MiB before.
    put(
        "comment-flood.xml.gz",
        gzip_flood(&[&head[..], b"<!-- "].concat(), b"y>", 64 << 20),
        "limit_exceeded",
    );
    // A zip entry in a method nobody decodes here (PPMd): stuck in INBOX before.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "r.xml",
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored),
    )
    .unwrap();
    std::io::Write::write_all(
        &mut zip,
        report_xml("ppmd", "example.com", "192.0.2.1").as_bytes(),
    )
    .unwrap();
    let mut zip = zip.finish().unwrap().into_inner();
    for (signature, offset) in [(b"PK\x03\x04", 8), (b"PK\x01\x02", 10)] {
        let at = zip.windows(4).position(|w| w == signature).unwrap();
        zip[at + offset..at + offset + 2].copy_from_slice(&98u16.to_le_bytes());
    }
    put("ppmd.zip", zip, "unsupported");
    // Two different reports without report_id and date range: lost as duplicates before.
    for (i, ip) in ["192.0.2.7", "192.0.2.8"].iter().enumerate() {
        let xml = report_xml("x", "example.com", ip)
            .replace("<report_id>x</report_id>", "")
            .replace(
                "<date_range><begin>1700000000</begin><end>1700086399</end></date_range>",
                "",
            );
        put(
            &format!("no-identity-{i}.xml"),
            xml.into_bytes(),
            "missing_identity",
        );
    }
    // Metadata after the records: accepted by parse and refused by the store before.
    let late = report_xml("late", "example.com", "192.0.2.9").replace(
        "<feedback><report_metadata>",
        "<feedback><record><row><source_ip>192.0.2.9</source_ip><count>1</count></row></record><report_metadata>",
    );
    put("late-metadata.xml", late.into_bytes(), "bad_report");
    // Half a million empty MIME parts (18 MB): 218 MiB and a megabytes-long reason before.
    let mut parts = b"From: r@hostile.example\r\nSubject: parts\r\nMessage-ID: <parts@hostile.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n".to_vec();
    for _ in 0..500_000 {
        parts.extend_from_slice(b"--b\r\nContent-Type: text/plain\r\n\r\n\r\n");
    }
    parts.extend_from_slice(b"--b--\r\n");
    put("parts.eml", parts, "limit_exceeded");
    // The existing bombs: 10 GiB of zeros in gzip members (10 MB), a DOCTYPE.
    let zeros = {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 16 << 20]).unwrap();
        enc.finish().unwrap()
    };
    put("zeros.xml.gz", zeros.repeat(640), "limit_exceeded");
    let laughs =
        std::fs::read(common::repo_root().join("sample-reports/broken/billion-laughs.xml"))
            .unwrap();
    put("laughs.xml", laughs, "doctype");
    // A report that panics the parse stage, and one that kills the process.
    put(
        "panics.xml",
        report_xml("PANIC-ME", "example.com", "192.0.2.10").into_bytes(),
        "panic",
    );
    put(
        "aborts.xml",
        report_xml("ABORT-ME", "example.com", "192.0.2.11").into_bytes(),
        "interrupted",
    );
    out
}

#[test]
fn hostile_mail_is_quarantined_in_bounded_attempts_under_the_memory_budget() {
    let imap = Dovecot::shared();
    let user = "dm_hostile";
    imap.fresh_user(user);
    let db = TestDb::fresh("daemon_hostile");
    let work = tempfile::tempdir().unwrap();
    let files = work.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let good_reports = write_reports(&files, "good", 60, 20);
    let hostile = hostile_mix(&files);
    // A good report beside an HTML body that mentions feedback (as big providers send):
    // archived, with no failure recorded.
    let html = eml(
        "html-body",
        &[
            (
                "Content-Type: text/html; charset=utf-8".into(),
                "<!DOCTYPE html><html><body><p>Send us feedback</p></body></html>".into(),
            ),
            gz_part(
                "html.xml.gz",
                &gzip(report_xml("html-body", "example.org", "198.51.100.1").as_bytes()),
            ),
        ],
    );
    std::fs::write(files.join("html-body.eml"), html).unwrap();
    let mut all: Vec<PathBuf> = good_reports.clone();
    all.extend(hostile.iter().map(|(p, _)| p.clone()));
    all.push(files.join("html-body.eml"));
    let mails = as_mails(&work.path().join("mails"), &all);
    let (_, _, mut distinct) =
        expectations(&as_mails(&work.path().join("good-mails"), &good_reports));
    distinct.insert("html-body".into(), (1, 3));
    imap.deliver(user, "INBOX", &mails);

    // Mail parsed ahead on two threads (none by default on two cores): the read-ahead
    // meets the hostile mix, the faults and the memory budget too.
    let faults = [
        ("DMARC_TEST_PANIC_REPORT_ID", "PANIC-ME"),
        ("DMARC_TEST_ABORT_REPORT_ID", "ABORT-ME"),
        ("DMARC_INGEST_IMAP_FETCH_BATCH", "25"),
        ("DMARC_INGEST_IMAP_READ_AHEAD_THREADS", "2"),
    ];
    let budget_kib = 256 * 1024;
    // Killed mid-batch twice, then run to the end as a supervisor would restart it (an
    // abort counts as a crash); a restart loop would exhaust the runs.
    for kill in 0..2 {
        let mut child = spawn_daemon(&db, &imap, user, &faults);
        let before = db.number("SELECT count() FROM {database}.mail_attempts");
        wait_until("a batch to start", Duration::from_secs(60), || {
            db.number("SELECT count() FROM {database}.mail_attempts") > before
                || child.try_wait().unwrap().is_some()
        });
        std::thread::sleep(Duration::from_millis(200 * kill));
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut runs = Vec::new();
    loop {
        assert!(runs.len() < 8, "restart loop: {runs:?}");
        let m = common::run_measured(
            db.command(&["run", "--once"])
                .envs(imap.env(user))
                .envs(faults),
        );
        assert!(
            m.max_rss_kib < budget_kib,
            "run {} peak RSS {} KiB over the budget: {}",
            runs.len(),
            m.max_rss_kib,
            m.stderr
        );
        runs.push((m.code, m.max_rss_kib, m.elapsed));
        if m.code >= 0 {
            assert_eq!(
                m.code, 1,
                "quarantined mail makes --once exit 1: {}",
                m.stderr
            );
            break;
        }
    }
    assert!(
        runs.len() >= 2,
        "the aborting mail crashed at least one run: {runs:?}"
    );
    let counts = imap.counts(user, &["INBOX", "Archive", "Invalid"]);
    assert_eq!(
        counts,
        [0, good_reports.len() + 1, hostile.len()],
        "runs: {runs:?}"
    );
    // Every good report stored exactly once.
    assert_eq!(totals(&db), sum(&distinct), "runs: {runs:?}");
    assert_eq!(
        db.number("SELECT count() FROM {database}.reports"),
        distinct.len() as u64
    );
    // Every hostile mail has its reason, by kind; the HTML body none.
    for (path, kind) in &hostile {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let found = db.number(&format!(
            "SELECT count() FROM {{database}}.failures WHERE reason_kind = '{kind}' AND (source LIKE '%{name}%' OR source LIKE '%{stem}%')",
            stem = name.split('.').next().unwrap()
        ));
        let any_kind = db.number(&format!(
            "SELECT count() FROM {{database}}.failures WHERE reason_kind = '{kind}'"
        ));
        // A panic or a crash fails the whole mail, named by its UID and Message-ID.
        let whole_mail = matches!(*kind, "interrupted" | "panic");
        assert!(
            found >= 1 || (whole_mail && any_kind >= 1),
            "{name}: no failure of kind {kind}"
        );
    }
    assert_eq!(
        db.number("SELECT count() FROM {database}.failures WHERE source LIKE '%html-body%'"),
        0,
        "the HTML body is not a failure"
    );
    let longest = db.number("SELECT max(length(reason)) FROM {database}.failures");
    assert!(longest < 1200, "reasons are cut: {longest}");
    // Bounded attempts: no mail was tried more than the limit plus the two kills.
    let most = db.number(
        "SELECT max(c) FROM (SELECT uid, count() AS c FROM {database}.mail_attempts GROUP BY uid)",
    );
    assert!(
        most <= u64::from(dmarc_ingest::daemon::MAX_ATTEMPTS_PER_MESSAGE) + 2,
        "{most} attempts at one mail"
    );
    eprintln!("hostile mix: runs (exit code, peak RSS KiB, time): {runs:?}");
}

#[test]
fn a_session_lost_during_a_slow_batch_is_reopened_before_the_move() {
    // dovecot's autologout (30 minutes) is fixed at build time; a server that drops the
    // session while a batch is written is what it does: here the session is cut while
    // the batch sleeps, the keepalive NOOP finds it gone, and the mail is moved over a
    // new session after its UIDVALIDITY is checked, not processed again.
    let imap = Dovecot::own(3);
    let user = "dm_slow";
    imap.fresh_user(user);
    let db = TestDb::fresh("daemon_slow");
    let work = tempfile::tempdir().unwrap();
    let reports = write_reports(work.path(), "slow", 5, 10);
    let mails = as_mails(&work.path().join("mails"), &reports);
    imap.deliver(user, "INBOX", &mails);
    let slow = [
        ("DMARC_TEST_BATCH_DELAY_MS", "4000"),
        ("DMARC_INGEST_IMAP_KEEPALIVE_SECS", "1"),
    ];
    let mut child = db
        .command(&["run", "--once"])
        .envs(imap.env(user))
        .envs(slow)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the batch to start", Duration::from_secs(30), || {
        db.number("SELECT count() FROM {database}.mail_attempts") > 0
    });
    std::thread::sleep(Duration::from_millis(1500));
    imap.cut_sessions();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("IMAP session lost while the batch was"),
        "the keepalive saw the cut: {stderr}"
    );
    assert_eq!(imap.counts(user, &["INBOX", "Archive"]), [0, mails.len()]);
    assert!(
        stderr.contains(" 0 duplicates"),
        "nothing was processed twice: {stderr}"
    );
    assert_eq!(
        db.number("SELECT count() FROM {database}.mail_attempts"),
        mails.len() as u64,
        "one attempt each"
    );
}

#[test]
fn the_next_batch_is_staged_while_the_previous_one_publishes() {
    // Batches of 10 mails: batch 2 is fetched before batch 1's publish has finished, and
    // every batch's mail is moved only after its own publish.
    let imap = Dovecot::shared();
    let user = "dm_pipeline";
    imap.fresh_user(user);
    let db = TestDb::fresh("daemon_pipeline");
    let work = tempfile::tempdir().unwrap();
    let reports = write_reports(work.path(), "pipe", 30, 20);
    let mails = as_mails(&work.path().join("mails"), &reports);
    let (archive, _, distinct) = expectations(&mails);
    imap.deliver(user, "INBOX", &mails);
    let env = [
        ("DMARC_INGEST_IMAP_FETCH_BATCH", "10"),
        ("DMARC_INGEST_LOG", "dmarc_ingest=debug"),
        ("NO_COLOR", "1"),
    ];
    let (code, stderr) = run_once(&db, &imap, user, &env);
    assert_eq!(code, 0, "{stderr}");
    let events: Vec<&str> = stderr
        .lines()
        .filter_map(|l| {
            ["fetched messages", "batch published", "moved messages"]
                .into_iter()
                .find(|e| l.contains(e))
        })
        .collect();
    let nth = |what: &str, n: usize| {
        events
            .iter()
            .enumerate()
            .filter(|(_, e)| **e == what)
            .nth(n)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no {what} #{n} in {events:?}"))
    };
    assert!(
        nth("fetched messages", 1) < nth("batch published", 0),
        "batch 2 is fetched while batch 1 publishes: {events:?}"
    );
    for batch in 0..3 {
        assert!(
            nth("batch published", batch) < nth("moved messages", batch),
            "batch {batch} moves after its publish: {events:?}"
        );
    }
    assert_eq!(imap.counts(user, &["INBOX", "Archive"]), [0, archive]);
    assert_eq!(totals(&db), sum(&distinct));
}

#[test]
fn the_daemon_names_new_sources_in_the_background() {
    // A report of yesterday from 192.0.2.1 (mail.example.test in the test DNS zones): the
    // daemon stores it without waiting on DNS, and its background lookups name the source.
    let dns = common::dns::shared_dns();
    let imap = Dovecot::shared();
    let user = "dm_enrich";
    imap.fresh_user(user);
    let db = TestDb::fresh("daemon_enrich");
    let work = tempfile::tempdir().unwrap();
    let begin = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400
        * 86_400
        - 86_400;
    let report = work.path().join("yesterday.xml");
    std::fs::write(
        &report,
        format!(
            "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>receiver.example</org_name>\
             <email>r@receiver.example</email><report_id>named-1</report_id><date_range>\
             <begin>{begin}</begin><end>{}</end></date_range></report_metadata><policy_published>\
             <domain>example.com</domain><p>none</p></policy_published><record><row>\
             <source_ip>192.0.2.1</source_ip><count>5</count><policy_evaluated>\
             <disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated>\
             </row><identifiers><header_from>example.com</header_from></identifiers>\
             <auth_results><spf><domain>example.com</domain><result>pass</result></spf>\
             </auth_results></record></feedback>",
            begin + 86_399
        ),
    )
    .unwrap();
    let mails = as_mails(&work.path().join("mails"), &[report]);
    imap.deliver(user, "INBOX", &mails);
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let daemon = spawn_daemon(
        &db,
        &imap,
        user,
        &[
            ("DMARC_INGEST_ENRICH_REFRESH_SECS", "1"),
            ("DMARC_INGEST_DNS_NAMESERVERS", dns.nameservers[0].as_str()),
            ("DMARC_INGEST_METRICS_LISTEN", listen.as_str()),
        ],
    );
    wait_until("the source to be named", Duration::from_secs(30), || {
        db.number(
            "SELECT count() FROM {database}.records_enriched \
             WHERE ptr = 'mail.example.test' AND ptr_org = 'example.test'",
        ) == 1
    });
    // The lookup is counted on /metrics.
    wait_until("the lookup to be counted", Duration::from_secs(10), || {
        std::process::Command::new("curl")
            .args(["-sS", &format!("http://{listen}/metrics")])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout).contains("dmarc_ingest_source_lookups_total 1\n")
            })
    });
    assert_eq!(imap.counts(user, &["Archive"]), vec![1]);
    assert_eq!(terminate(daemon), 0);
}

#[test]
fn the_daemon_ingests_with_the_dns_server_stopped_and_names_the_sources_once_it_is_back() {
    // The daemon's DNS server is stopped: every mail is still stored and archived, the
    // sources are named by their network meanwhile; started again, the next background
    // pass names them by their reverse names.
    let dns = common::dns::PrivateDns::new(5363);
    dns.start();
    dns.stop();
    let imap = Dovecot::shared();
    let user = "dm_dns_down";
    imap.fresh_user(user);
    let db = TestDb::fresh("daemon_dns_down");
    let work = tempfile::tempdir().unwrap();
    let networks = common::networks::test_database(work.path());
    let begin = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400
        * 86_400
        - 86_400;
    let reports: Vec<_> = ["192.0.2.1", "192.0.2.44"]
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let path = work.path().join(format!("report-{i}.xml"));
            std::fs::write(
                &path,
                format!(
                    "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>receiver.example\
                     </org_name><email>r@receiver.example</email><report_id>dns-down-{i}</report_id>\
                     <date_range><begin>{begin}</begin><end>{}</end></date_range></report_metadata>\
                     <policy_published><domain>example.com</domain><p>none</p></policy_published>\
                     <record><row><source_ip>{ip}</source_ip><count>5</count><policy_evaluated>\
                     <disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated>\
                     </row><identifiers><header_from>example.com</header_from></identifiers>\
                     <auth_results><spf><domain>example.com</domain><result>pass</result></spf>\
                     </auth_results></record></feedback>",
                    begin + 86_399
                ),
            )
            .unwrap();
            path
        })
        .collect();
    imap.deliver(
        user,
        "INBOX",
        &as_mails(&work.path().join("mails"), &reports),
    );
    let networks = networks.display().to_string();
    let nameserver = dns.nameserver();
    let daemon = spawn_daemon(
        &db,
        &imap,
        user,
        &[
            ("DMARC_INGEST_ENRICH_REFRESH_SECS", "1"),
            ("DMARC_INGEST_DNS_NAMESERVERS", nameserver.as_str()),
            ("DMARC_INGEST_DNS_TIMEOUT_MS", "200"),
            ("DMARC_INGEST_ENRICH_ASN_DATABASE", networks.as_str()),
        ],
    );
    wait_until("both mails to be archived", Duration::from_secs(30), || {
        imap.counts(user, &["INBOX", "Archive"]) == vec![0, 2]
    });
    assert_eq!(db.number("SELECT count() FROM {database}.records"), 2);
    let senders = || {
        db.rows(
            "SELECT source_ip, sender, ptr_status FROM {database}.records_enriched \
             ORDER BY source_ip",
        )
    };
    let row = |ip: &str, sender: &str, status: &str| {
        vec![ip.to_string(), sender.to_string(), status.to_string()]
    };
    wait_until("the network names", Duration::from_secs(30), || {
        senders()
            == vec![
                row("192.0.2.1", "EXAMPLE-MAIL-NET", "failed"),
                row("192.0.2.44", "EXAMPLE-MAIL-NET", "failed"),
            ]
    });

    dns.start();
    wait_until("the reverse names", Duration::from_secs(30), || {
        senders()
            == vec![
                row("192.0.2.1", "example.test", "confirmed"),
                row("192.0.2.44", "Microsoft 365", "confirmed"),
            ]
    });
    assert_eq!(terminate(daemon), 0);
}

#[test]
fn reports_for_domains_outside_the_inventory_are_refused_under_accept_inventory() {
    let imap = Dovecot::shared();
    let user = "dm_accept";
    imap.fresh_user(user);
    let db = TestDb::fresh("daemon_accept");
    let work = tempfile::tempdir().unwrap();
    let domains = work.path().join("domains.csv");
    let accept = |file: &Path| -> Vec<(String, String)> {
        vec![
            ("DMARC_INGEST_DOMAINS_ACCEPT".into(), "inventory".into()),
            (
                "DMARC_INGEST_DOMAINS_FILE".into(),
                file.display().to_string(),
            ),
        ]
    };
    let env = accept(&domains);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // An empty inventory would refuse everything: a configuration error, mail untouched.
    let (code, stderr) = run_once(&db, &imap, user, &env);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("inventory is empty"), "{stderr}");

    std::fs::write(
        &domains,
        "domain,owner,group,parked,contact\ncouncil-a.example,Council A,Councils,no,\n",
    )
    .unwrap();
    let synced = db
        .command(&["domains", "sync"])
        .env("DMARC_INGEST_DOMAINS_FILE", &domains)
        .output()
        .unwrap();
    assert!(synced.status.success());
    let dir = work.path().join("reports");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (id, domain) in [
        ("acc-1", "council-a.example"),
        ("acc-2", "mail.council-a.example"),
        ("acc-3", "spam-target.example"),
    ] {
        let path = dir.join(format!("{id}.xml"));
        std::fs::write(&path, report_xml(id, domain, "192.0.2.1")).unwrap();
        files.push(path);
    }
    imap.deliver(user, "INBOX", &as_mails(&work.path().join("mails"), &files));

    let (code, stderr) = run_once(&db, &imap, user, &env);
    assert_eq!(code, 1, "a refused report is a failed input: {stderr}");
    assert_eq!(
        imap.counts(user, &["INBOX", "Archive", "Invalid"]),
        [0, 2, 1]
    );
    assert_eq!(
        db.rows("SELECT policy_domain FROM {database}.reports ORDER BY policy_domain"),
        [["council-a.example"], ["mail.council-a.example"]]
    );
    let refused =
        db.rows("SELECT reason FROM {database}.failures WHERE reason_kind = 'unknown_domain'");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0][0].contains("spam-target.example") && refused[0][0].contains("inventory"),
        "{refused:?}"
    );

    // `import` refuses it the same way.
    let out = db
        .command(&["import", files[2].to_str().unwrap()])
        .envs(accept(&domains))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not in the domain inventory"), "{stderr}");
}

#[test]
fn the_daemon_checks_the_inventory_dns_at_start_judges_every_domain_and_evaluates_alerts() {
    let smtp = common::smtp::SmtpServer::own(2545);
    let imap = Dovecot::shared();
    let user = "dm_dnscheck";
    imap.fresh_user(user);
    let db = TestDb::fresh("daemon_dnscheck");
    let dns = common::dns::shared_dns();
    let work = tempfile::tempdir().unwrap();
    let domains = work.path().join("domains.csv");
    std::fs::write(
        &domains,
        "domain,owner,group,parked,contact\n\
         good.checks.test,Owner A,G,no,\nplusall.checks.test,Owner B,G,no,it@plusall.checks.test\n",
    )
    .unwrap();
    let synced = db
        .command(&["domains", "sync"])
        .env("DMARC_INGEST_DOMAINS_FILE", &domains)
        .output()
        .unwrap();
    assert!(synced.status.success());
    // Ten days ago plusall was green: turning red opens an alert.
    db.sql(&format!(
        "INSERT INTO {}.domain_status_history (computed_at, domain, status) \
         VALUES (now() - 864000, 'plusall.checks.test', 'green')",
        db.database
    ));
    // Today is the digest day, from midnight: last week's digests go out at start.
    let today = dmarc_ingest::store::now() / 86_400;
    let weekday = ((today + 3) % 7 + 1).to_string();
    let smtp_env = smtp.env(work.path());
    let mut env: Vec<(&str, &str)> = vec![
        ("DMARC_INGEST_DNS_NAMESERVERS", dns.nameservers[0].as_str()),
        ("DMARC_INGEST_DNS_CHECK_INTERVAL", "6h"),
        ("DMARC_INGEST_DOMAINS_RUA_ADDRESS", "dmarc@reports.test"),
        ("DMARC_INGEST_ALERTS_TEAM_RECIPIENTS", "soc@centre.test"),
        ("DMARC_INGEST_ALERTS_DIGEST_WEEKDAY", weekday.as_str()),
        ("DMARC_INGEST_ALERTS_DIGEST_HOUR", "0"),
    ];
    env.extend(smtp_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let child = spawn_daemon(&db, &imap, user, &env);
    wait_until(
        "the daemon's first DNS check",
        Duration::from_secs(60),
        || db.number("SELECT count() FROM {database}.domain_status WHERE computed_at > 0") == 2,
    );
    wait_until(
        "the alerts evaluated after it",
        Duration::from_secs(30),
        || db.number("SELECT count() FROM {database}.alerts WHERE state = 'open'") > 0,
    );
    wait_until(
        "the alert mailed and the two owners' digests",
        Duration::from_secs(30),
        || smtp.received().len() >= 3,
    );
    // The evaluations at start (the interval's and the DNS run's) deliver it once.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(terminate(child), 0);
    let mut subjects: Vec<(String, Vec<String>)> = smtp
        .received()
        .iter()
        .map(|m| {
            let mail = mailparse::parse_mail(&m.raw).unwrap();
            let subject = mail
                .headers
                .iter()
                .find(|h| h.get_key_ref().eq_ignore_ascii_case("Subject"))
                .map(|h| h.get_value())
                .unwrap_or_default();
            (subject, m.rcpt_tos.clone())
        })
        .collect();
    subjects.sort();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    // "DMARC weekly digest..." sorts before "[DMARC alert]...".
    assert_eq!(
        subjects[2],
        (
            "[DMARC alert] plusall.checks.test: status turned red".to_owned(),
            vec![
                "it@plusall.checks.test".to_owned(),
                "soc@centre.test".to_owned()
            ]
        )
    );
    assert!(
        subjects[1].0.starts_with("DMARC weekly digest"),
        "{subjects:?}"
    );
    assert_eq!(
        db.number("SELECT count() FROM {database}.deliveries WHERE outcome = 'sent'"),
        3
    );
    assert_eq!(
        db.rows("SELECT domain, status FROM {database}.domain_status ORDER BY domain"),
        [
            ["good.checks.test", "green"],
            ["plusall.checks.test", "red"]
        ]
    );
    assert_eq!(
        db.number("SELECT count() FROM {database}.dns_checks"),
        2,
        "one run at start, the next one 6 hours later"
    );
    assert_eq!(
        db.rows("SELECT rule, domain FROM {database}.alerts WHERE state = 'open'"),
        [["status_red", "plusall.checks.test"]]
    );
}
