//! The store against the real ClickHouse (started by `deploy/dev/clickhouse.sh`):
//! totals equal the parser's, re-imports change nothing, kill -9 at any point and a
//! ClickHouse that goes away leave nothing partial visible and exact totals after a re-run.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::clickhouse::{write_reports, OwnServer, TestDb};
use dmarc_ingest::config::Limits;
use dmarc_ingest::rows;

/// What the parser finds under `paths`, one entry per distinct report identity.
fn parser_totals(paths: &[PathBuf]) -> HashMap<String, (u64, u64)> {
    let mut got = common::collect(paths, &Limits::default(), "");
    // The store keys date_begin as seconds; the parser's key uses the same number.
    std::mem::take(&mut got.distinct)
}

fn sum(t: &HashMap<String, (u64, u64)>) -> (u64, u64) {
    t.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1))
}

fn totals(db: &TestDb) -> (u64, u64) {
    (
        db.number("SELECT count() FROM {database}.records"),
        db.number("SELECT sum(message_count) FROM {database}.records"),
    )
}

/// Every report analysts can see is complete (no partial report is visible).
fn assert_no_partial_reports(db: &TestDb, expected: &HashMap<String, (u64, u64)>) {
    for (key, rows) in db.records_per_report() {
        let want = expected
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected report {key}"));
        assert_eq!(rows, want.0, "report {key} is partly visible");
    }
}

#[test]
fn import_is_exact_and_idempotent() {
    let db = TestDb::fresh("import_exact");
    // The corpus when it is there (common::corpus says so when it is not).
    let mut paths = vec![common::repo_root().join("sample-reports")];
    paths.extend(common::corpus());
    let expected = parser_totals(&paths);
    let args: Vec<String> = ["import".to_string()]
        .into_iter()
        .chain(paths.iter().map(|p| p.display().to_string()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let first = db.cli(&args);
    let stderr = String::from_utf8_lossy(&first.stderr).into_owned();
    assert_eq!(
        first.status.code(),
        Some(1),
        "broken fixtures must fail: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{} reports imported", expected.len())),
        "{stderr}"
    );
    assert!(stderr.contains("failed: "), "{stderr}");
    assert_eq!(totals(&db), sum(&expected));
    assert_eq!(
        db.number("SELECT count() FROM {database}.reports"),
        expected.len() as u64
    );
    assert_eq!(
        db.number("SELECT sum(message_count) FROM {database}.reports"),
        sum(&expected).1
    );
    assert_no_partial_reports(&db, &expected);
    let parser_failures = common::collect(&paths, &Limits::default(), "")
        .failures
        .len();
    assert!(parser_failures >= 9);
    assert_eq!(
        db.number("SELECT count() FROM {database}.failures"),
        parser_failures as u64,
        "every broken input is logged"
    );
    assert_eq!(
        db.number("SELECT count() FROM {database}.failures WHERE reason = '' OR source = ''"),
        0
    );

    // The rollups (materialized views) agree with the tables they summarise.
    assert_eq!(
        db.number("SELECT sum(messages) FROM {database}.records_daily"),
        sum(&expected).1
    );
    assert_eq!(
        db.number("SELECT sum(records) FROM {database}.records_daily"),
        sum(&expected).0
    );
    assert_eq!(
        db.number("SELECT sum(reports) FROM {database}.reporter_daily"),
        expected.len() as u64
    );
    // Organisational domains and recomputed alignment are filled in.
    assert_eq!(
        db.number("SELECT count() FROM {database}.records WHERE header_from != '' AND header_from_org = ''"),
        0
    );
    assert!(db.number("SELECT sum(dkim_aligned) FROM {database}.records") > 0);

    let second = db.cli(&args);
    let stderr = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(stderr.contains("0 reports imported"), "{stderr}");
    assert_eq!(totals(&db), sum(&expected), "a re-import changes nothing");
    assert_eq!(
        db.number("SELECT count() FROM {database}.reports"),
        expected.len() as u64
    );
    assert!(
        db.number("SELECT count() FROM {database}.ingest_log WHERE outcome = 'duplicate'")
            >= expected.len() as u64
    );
    // Each broken input is still listed once, now with two deliveries.
    assert_eq!(
        db.number("SELECT count() FROM {database}.failures"),
        parser_failures as u64
    );
    assert_eq!(
        db.number("SELECT min(deliveries) * 10 + max(deliveries) FROM {database}.failures"),
        22
    );
    assert_eq!(
        db.number("SELECT sum(messages) FROM {database}.records_daily"),
        sum(&expected).1,
        "duplicates do not reach the rollups"
    );
}

#[test]
fn kill_at_any_point_then_rerun_is_exact() {
    let db = TestDb::fresh("kill_rerun");
    let dir = tempfile::tempdir().unwrap();
    let mut files = write_reports(dir.path(), "kill", 16, 12_000);
    files.extend(write_reports(dir.path(), "small", 40, 30));
    let expected = parser_totals(&[dir.path().to_owned()]);
    let dir_arg = dir.path().display().to_string();
    // Small batches: many staging inserts and several publishes to interrupt.
    let env = [
        ("DMARC_INGEST_CLICKHOUSE_BATCH_ROWS", "5000"),
        ("DMARC_INGEST_CLICKHOUSE_PUBLISH_REPORTS", "5"),
    ];
    for (round, delay_ms) in [150u64, 400, 700, 1100, 1600, 2300].iter().enumerate() {
        let mut child = db
            .command(&["import", &dir_arg])
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*delay_ms));
        // SIGKILL: no chance to clean up.
        let _ = child.kill();
        let _ = child.wait();
        assert_no_partial_reports(&db, &expected);
        let (rows, _) = totals(&db);
        assert!(
            rows <= sum(&expected).0,
            "round {round}: more rows than exist"
        );
    }
    let last = db
        .command(&["import", &dir_arg])
        .envs(env)
        .output()
        .unwrap();
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert_eq!(totals(&db), sum(&expected));
    assert_eq!(
        db.number("SELECT count() FROM {database}.reports"),
        expected.len() as u64
    );
    assert_no_partial_reports(&db, &expected);
    drop(files);
}

#[test]
fn clickhouse_stopped_mid_import_fails_cleanly_then_catches_up() {
    let server = OwnServer::start();
    let db = TestDb::fresh_on(&server.url(), "server_down");
    let dir = tempfile::tempdir().unwrap();
    write_reports(dir.path(), "down", 60, 8_000);
    let expected = parser_totals(&[dir.path().to_owned()]);
    let dir_arg = dir.path().display().to_string();
    let env = [
        ("DMARC_INGEST_CLICKHOUSE_BATCH_ROWS", "4000"),
        ("DMARC_INGEST_CLICKHOUSE_PUBLISH_REPORTS", "3"),
        ("DMARC_INGEST_CLICKHOUSE_MAX_ATTEMPTS", "3"),
        ("DMARC_INGEST_CLICKHOUSE_RETRY_INITIAL_MS", "100"),
        ("DMARC_INGEST_CLICKHOUSE_RETRY_MAX_MS", "400"),
    ];
    let t0 = Instant::now();
    let child = db
        .command(&["import", &dir_arg])
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Crash the server once the first batch is published: the rest is still to come.
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.number("SELECT count() FROM {database}.reports") == 0 {
        assert!(Instant::now() < deadline, "nothing was published");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("published first batch after {:?}", t0.elapsed());
    server.crash();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a server problem: {stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(stderr.contains("stopped early"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));

    eprintln!("import gave up after {:?}", started.elapsed());
    server.script("start");
    eprintln!("restarted after {:?}", started.elapsed());
    assert_no_partial_reports(&db, &expected);
    let rerun = db
        .command(&["import", &dir_arg])
        .envs(env)
        .output()
        .unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    eprintln!("re-run done after {:?}", started.elapsed());
    assert_eq!(totals(&db), sum(&expected));
    assert_no_partial_reports(&db, &expected);
}

#[test]
fn a_staging_insert_repeated_after_a_lost_ack_is_published_once() {
    use dmarc_ingest::store::Store;
    let db = TestDb::fresh("restaged");
    let (ingest_id, batch_id) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (header, rows) = google_rows(ingest_id);
    let count = rows.len() as u64;
    let mut staged = staged_row(&header, count, ingest_id);
    staged.batch_id = batch_id;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let published = runtime.block_on(async {
        let store = Store::connect(&db.config()).await.unwrap();
        // Each insert twice: as if the first acknowledgement was lost and it was retried.
        for _ in 0..2 {
            store.insert_rows("records_staging", &rows).await.unwrap();
            store
                .insert_rows("reports_staging", std::slice::from_ref(&staged))
                .await
                .unwrap();
        }
        store.publish(batch_id).await.unwrap()
    });
    assert!(published.published.contains(&ingest_id));
    assert_eq!(db.number("SELECT count() FROM {database}.records"), count);
    assert_eq!(db.number("SELECT count() FROM {database}.reports"), 1);
}

#[test]
fn the_rows_have_the_columns_of_the_staging_tables_in_order() {
    use clickhouse::Row;
    let db = TestDb::fresh("row_columns");
    let columns = |table: &str| -> Vec<String> {
        let sql = format!(
            "SELECT name FROM system.columns WHERE database = '{{database}}' AND table = '{table}'"
        );
        db.rows(&sql).into_iter().map(|mut r| r.remove(0)).collect()
    };
    assert_eq!(
        columns("records_staging"),
        rows::RecordRow::COLUMN_NAMES,
        "rows::RecordRow"
    );
    assert_eq!(
        columns("reports_staging"),
        rows::StagedReport::COLUMN_NAMES,
        "rows::StagedReport"
    );
}

#[test]
fn a_staging_insert_sent_again_stages_in_the_session_and_publishes_once() {
    // Each batch's first staging insert of records is committed and then (test fault)
    // reported lost, so it is sent again: the rows are twice in the session's table, and
    // every report is published once. Nothing goes through the shared staging tables.
    let db = TestDb::fresh("session_resent");
    let dir = tempfile::tempdir().unwrap();
    write_reports(dir.path(), "resent", 8, 30);
    let expected = parser_totals(&[dir.path().to_owned()]);
    let dir_arg = dir.path().display().to_string();
    let out = db
        .command(&["import", &dir_arg])
        .env("DMARC_TEST_STAGING_ACK_LOST", "1")
        .env("DMARC_INGEST_CLICKHOUSE_BATCH_ROWS", "50")
        .env("DMARC_INGEST_CLICKHOUSE_PUBLISH_REPORTS", "3")
        .env("DMARC_INGEST_CLICKHOUSE_RETRY_INITIAL_MS", "10")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("acknowledgement of the insert into staged_records was lost")
            .count(),
        3,
        "one resend per batch of 3 reports: {stderr}"
    );
    assert_eq!(totals(&db), sum(&expected));
    assert_no_partial_reports(&db, &expected);
    assert_eq!(
        db.number("SELECT count() FROM {database}.records_staging"),
        0
    );
    assert_eq!(
        db.number("SELECT count() FROM {database}.reports_staging"),
        0
    );
}

#[test]
fn a_batch_whose_staging_session_is_lost_fails_as_unavailable() {
    // The server lost the batch's session (restarted, or it timed out): the publish finds
    // no staged rows and says so; the batch waits, its reports are not blamed.
    use dmarc_ingest::store::{BatchWriter, PendingReport, Store, StoreError};
    let db = TestDb::fresh("session_lost");
    let ingest_id = uuid::Uuid::new_v4();
    let (header, rows) = google_rows(ingest_id);
    let count = rows.len() as u64;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let result = runtime.block_on(async {
        let store = Store::connect(&db.config()).await.unwrap();
        let mut writer: BatchWriter<()> = BatchWriter::new(&store);
        let identity = rows::identity(&header).unwrap();
        writer.begin_report(&identity).unwrap();
        for row in rows {
            writer.push_record(row);
        }
        writer.flush_rows().await.unwrap();
        // Waits for that staging insert (and stages nothing more): the session is free.
        writer.flush_rows().await.unwrap();
        writer.finish_report(
            staged_row(&header, count, ingest_id),
            PendingReport {
                ingest_id,
                identity,
                source: "test".into(),
                records: count,
                messages: 0,
                tag: (),
            },
        );
        let session = writer
            .staging_session()
            .expect("a single server stages in a session")
            .to_owned();
        db.sql_in_session(&session, "DROP TEMPORARY TABLE staged_records");
        writer.publish().await
    });
    match result {
        Err(e @ StoreError::Unavailable(_)) => {
            assert!(e.to_string().contains("staging session"), "{e}");
            assert!(e.is_transient());
        }
        other => panic!("expected the batch to wait: {other:?}"),
    }
    assert_eq!(db.number("SELECT count() FROM {database}.records"), 0);
    assert_eq!(db.number("SELECT count() FROM {database}.reports"), 0);
}

/// The rows of google.xml as stored rows of one report, and its header.
fn google_rows(
    ingest_id: uuid::Uuid,
) -> (
    dmarc_ingest::report::ReportHeader,
    Vec<dmarc_ingest::rows::RecordRow>,
) {
    use dmarc_ingest::report::ReportReader;
    let path = common::repo_root().join("sample-reports/reporters/google.xml");
    let xml = std::fs::read(&path).unwrap();
    let mut reader = ReportReader::open(&xml[..], &Limits::default()).unwrap();
    let mut record_rows = rows::RecordRows::new("test").ingest(ingest_id, 0);
    let mut rows = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        rows.push(record_rows.row(reader.header(), r).unwrap());
    }
    (reader.into_header(), rows)
}

/// The staged reports row of a report of `records` records.
fn staged_row(
    header: &dmarc_ingest::report::ReportHeader,
    records: u64,
    ingest_id: uuid::Uuid,
) -> dmarc_ingest::rows::StagedReport {
    rows::staged_report(header, (records, 0), "test", ingest_id, 0).unwrap()
}

#[test]
fn a_report_short_of_staged_rows_is_not_published_nor_called_a_duplicate() {
    use dmarc_ingest::store::{BatchWriter, PendingReport, ReportOutcome, Store};
    let db = TestDb::fresh("incomplete");
    let ingest_id = uuid::Uuid::new_v4();
    let (header, rows) = google_rows(ingest_id);
    assert!(rows.len() >= 2, "google.xml has several records");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcomes = runtime.block_on(async {
        let store = Store::connect(&db.config()).await.unwrap();
        let mut writer: BatchWriter<()> = BatchWriter::new(&store);
        let identity = rows::identity(&header).unwrap();
        assert!(writer.begin_report(&identity).is_some());
        // One staged row goes missing (as after a staging insert that failed unseen).
        let count = rows.len() as u64;
        for row in rows.into_iter().skip(1) {
            writer.add_record(row).await.unwrap();
        }
        writer.finish_report(
            staged_row(&header, count, ingest_id),
            PendingReport {
                ingest_id,
                identity,
                source: "test".into(),
                records: count,
                messages: 0,
                tag: (),
            },
        );
        writer.publish().await.unwrap()
    });
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].1, ReportOutcome::Incomplete);
    assert_eq!(db.number("SELECT count() FROM {database}.records"), 0);
    assert_eq!(db.number("SELECT count() FROM {database}.reports"), 0);
}

#[test]
fn abandoning_a_report_keeps_the_rows_of_the_one_finished_before() {
    // A stage panicked on the second report of a batch, before it had begun: the rows of
    // the first, finished one were dropped with it and its report published empty.
    use dmarc_ingest::store::{BatchWriter, PendingReport, ReportOutcome, Store};
    let db = TestDb::fresh("abandon");
    let ingest_id = uuid::Uuid::new_v4();
    let (header, rows) = google_rows(ingest_id);
    let count = rows.len() as u64;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcomes = runtime.block_on(async {
        let store = Store::connect(&db.config()).await.unwrap();
        let mut writer: BatchWriter<()> = BatchWriter::new(&store);
        let identity = rows::identity(&header).unwrap();
        writer.begin_report(&identity).unwrap();
        for row in rows {
            assert!(!writer.push_record(row));
        }
        writer.finish_report(
            staged_row(&header, count, ingest_id),
            PendingReport {
                ingest_id,
                identity,
                source: "test".into(),
                records: count,
                messages: 0,
                tag: (),
            },
        );
        writer.abandon_report();
        writer.publish().await.unwrap()
    });
    assert_eq!(outcomes[0].1, ReportOutcome::Published);
    assert_eq!(db.number("SELECT count() FROM {database}.records"), count);
}

#[test]
fn a_decade_of_archived_reports_imports_in_one_run() {
    // One report a month for 130 months: one publish batch, but current ClickHouse refuses
    // an insert block over 100 partitions; the store publishes it in month groups.
    let db = TestDb::fresh("decade");
    let dir = tempfile::tempdir().unwrap();
    let first = 1_262_304_000u32; // 2010-01-01
    for i in 0..130u32 {
        let begin = first + i * 31 * 86_400;
        let xml = format!(
            "<feedback><report_metadata><org_name>archive.example</org_name><report_id>m{i}</report_id>\
             <date_range><begin>{begin}</begin><end>{}</end></date_range></report_metadata>\
             <policy_published><domain>example.com</domain></policy_published>\
             <record><row><source_ip>192.0.2.{}</source_ip><count>{}</count></row>\
             <identifiers><header_from>example.com</header_from></identifiers></record></feedback>",
            begin + 86_399,
            i % 250 + 1,
            i + 1
        );
        std::fs::write(dir.path().join(format!("m{i:03}.xml")), xml).unwrap();
    }
    let out = db.cli(&["import", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("130 reports imported"), "{stderr}");
    assert_eq!(totals(&db), (130, (1..=130).sum()));
    assert_eq!(
        db.number("SELECT uniqExact(toYYYYMM(date_begin)) FROM {database}.records"),
        130
    );
}

#[test]
fn a_publish_out_of_memory_is_split_until_it_passes() {
    // ClickHouse's memory limit (Code 241) refuses a publish of more than three reports
    // (a test fault): the batch of ten is published in halves, then quarters.
    let db = TestDb::fresh("memory_split");
    let dir = tempfile::tempdir().unwrap();
    let reports = common::clickhouse::write_reports(dir.path(), "mem", 10, 5);
    let out = db
        .command(&["import", dir.path().to_str().unwrap()])
        .env("DMARC_TEST_PUBLISH_MEMORY_LIMIT_REPORTS", "3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("splitting the batch"), "{stderr}");
    assert!(stderr.contains("10 reports imported"), "{stderr}");
    assert_eq!(
        db.number("SELECT count() FROM {database}.reports"),
        reports.len() as u64
    );
    assert_eq!(db.number("SELECT count() FROM {database}.records"), 50);
}

/// `records_daily` and `reporter_daily` summed, against `records` and `reports`.
fn rollups_match(db: &TestDb) -> Result<(), String> {
    let pairs = [
        (
            "SELECT sum(messages) FROM {database}.records_daily",
            "SELECT sum(message_count) FROM {database}.records",
        ),
        (
            "SELECT sum(records) FROM {database}.records_daily",
            "SELECT count() FROM {database}.records",
        ),
        (
            "SELECT sum(messages) FROM {database}.source_daily",
            "SELECT sum(message_count) FROM {database}.records",
        ),
        (
            "SELECT sum(records) FROM {database}.source_daily",
            "SELECT count() FROM {database}.records",
        ),
        (
            "SELECT sum(reports) FROM {database}.reporter_daily",
            "SELECT count() FROM {database}.reports",
        ),
        (
            "SELECT sum(messages) FROM {database}.reporter_daily",
            "SELECT sum(message_count) FROM {database}.reports",
        ),
    ];
    for (rollup, base) in pairs {
        let (r, b) = (db.number(rollup), db.number(base));
        if r != b {
            return Err(format!("{rollup} = {r}, {base} = {b}"));
        }
    }
    Ok(())
}

#[test]
fn a_repair_left_by_a_process_that_died_is_done_by_the_next() {
    // A view fails after its records committed, and the process dies before it repairs
    // the rollup: the days are on record in rollup_repairs, and the next run repairs them
    // once, then forgets them.
    let db = TestDb::fresh("rollup_repair_restart");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    write_reports(dirs[0].path(), "died", 4, 30);
    write_reports(dirs[1].path(), "next", 1, 5);
    write_reports(dirs[2].path(), "after", 1, 5);
    let import = |dir: &tempfile::TempDir, faults: &[(&str, &str)]| {
        let out = db
            .command(&["import", &dir.path().display().to_string()])
            .envs(faults.iter().copied())
            .env("DMARC_INGEST_LOG", "info")
            .env("DMARC_INGEST_CLICKHOUSE_RETRY_INITIAL_MS", "50")
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, stderr) = import(
        &dirs[0],
        &[
            ("DMARC_TEST_VIEW_FAILS_ONCE", "1"),
            ("DMARC_TEST_ABORT_BEFORE_REPAIR", "1"),
        ],
    );
    assert!(!status.success(), "the process died: {stderr}");
    assert!(
        stderr.contains("aborting before the rollup repair"),
        "{stderr}"
    );
    assert!(db.number("SELECT count() FROM {database}.records") > 0);
    assert!(rollups_match(&db).is_err(), "the rollup is short");
    let pending = "SELECT count() FROM (SELECT argMax(repaired, version) AS last \
                   FROM {database}.rollup_repairs GROUP BY policy_domain, day) WHERE last = 0";
    assert!(db.number(pending) > 0);

    let (status, stderr) = import(&dirs[1], &[]);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("left pending by an earlier run"),
        "{stderr}"
    );
    assert!(stderr.contains("rollups repaired"), "{stderr}");
    rollups_match(&db).unwrap();
    assert_eq!(db.number(pending), 0);

    let (status, stderr) = import(&dirs[2], &[]);
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("left pending"), "{stderr}");
    rollups_match(&db).unwrap();
}

#[test]
fn a_view_that_fails_after_its_records_committed_is_repaired() {
    // The first publish's records commit, then (test fault) its view's rows are lost and
    // the call fails as a busy server does: the retry finds the records there, and the
    // rollup of those days is repaired once the batch is published.
    let db = TestDb::fresh("rollup_repair");
    let dir = tempfile::tempdir().unwrap();
    write_reports(dir.path(), "view", 6, 40);
    let expected = parser_totals(&[dir.path().to_owned()]);
    let dir_arg = dir.path().display().to_string();
    let out = db
        .command(&["import", &dir_arg])
        .env("DMARC_TEST_VIEW_FAILS_ONCE", "1")
        .env("DMARC_INGEST_LOG", "info")
        .env("DMARC_INGEST_CLICKHOUSE_RETRY_INITIAL_MS", "50")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("rollups will be repaired"), "{stderr}");
    assert!(stderr.contains("rollups repaired"), "{stderr}");
    assert_eq!(totals(&db), sum(&expected));
    rollups_match(&db).unwrap();

    // A rollup gone wrong by hand (lost, and doubled elsewhere) is rebuilt by the command,
    // and a second run changes nothing.
    let name = &db.database;
    db.sql(&format!("TRUNCATE TABLE {name}.reporter_daily"));
    db.sql(&format!("TRUNCATE TABLE {name}.source_daily"));
    db.sql(&format!(
        "INSERT INTO {name}.records_daily SELECT * FROM {name}.records_daily"
    ));
    assert!(rollups_match(&db).is_err());
    for _ in 0..2 {
        let out = db
            .command(&[
                "schema",
                "rebuild-rollups",
                "--from",
                "1970-01-01",
                "--to",
                "2105-12-31",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        rollups_match(&db).unwrap();
    }
    let out = db
        .command(&[
            "schema",
            "rebuild-rollups",
            "--from",
            "yesterday",
            "--to",
            "2105-12-31",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));
}
