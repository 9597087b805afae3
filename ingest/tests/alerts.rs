//! The alert rules over generated report traffic, judged by `dmarc-ingest alerts check`
//! against the real ClickHouse: each rule fires where it must and not where it must not.

mod common;

use common::clickhouse::TestDb;
use common::smtp::SmtpServer;
use common::traffic::{write_day, write_days, Mail};
use common::webhook::WebhookReceiver;
use dmarc_ingest::config::{Config, SmtpConfig, SmtpTls};

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

/// The part of a received mail with this content type, decoded.
fn part_text(mail: &mailparse::ParsedMail, mime: &str) -> Option<String> {
    if mail.ctype.mimetype == mime {
        return mail.get_body().ok();
    }
    mail.subparts.iter().find_map(|p| part_text(p, mime))
}

#[test]
fn alerts_reach_the_owner_and_the_team_by_mail_and_webhook_once_with_retries() {
    let db = TestDb::fresh("alerts_delivery");
    let state = tempfile::tempdir().unwrap();
    let reports = state.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    sync_domains(&db, state.path(), &["new-source.test"]);
    write_days(
        &reports,
        "new-source.test",
        2..32,
        &[Mail::passing(KNOWN, 20)],
    );
    write_day(
        &reports,
        "new-source.test",
        1,
        &[Mail::failing(SPOOFER, 80)],
    );
    import(&db, &reports);

    // The mail server is down at first; the webhook answers 500 once.
    let smtp = SmtpServer::own(2530);
    smtp.script("stop");
    let hook = WebhookReceiver::start(&[500]);
    let check = || {
        let out = db
            .command(&["alerts", "check"])
            .envs(smtp.env(state.path()))
            .env("DMARC_INGEST_ALERTS_TEAM_RECIPIENTS", "soc@centre.test")
            .env("DMARC_INGEST_ALERTS_WEBHOOK_URL", &hook.url)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        stderr
    };
    let stderr = check();
    assert!(stderr.contains("1 alerts opened"), "{stderr}");
    assert!(stderr.contains("0 deliveries sent, 2 failed"), "{stderr}");
    let failures = db.rows(
        "SELECT channel, outcome, attempt, error FROM {database}.deliveries ORDER BY channel",
    );
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!(failures[0][..3], ["email", "failed", "1"]);
    assert!(failures[0][3].contains("onnection refused"), "{failures:?}");
    assert_eq!(failures[1][..3], ["webhook", "failed", "1"]);
    assert!(failures[1][3].contains("500"), "{failures:?}");

    // At once again (a new process, as after a restart): both wait out their backoff.
    smtp.script("start");
    let stderr = check();
    assert!(stderr.contains("0 deliveries sent, 0 failed"), "{stderr}");
    assert!(smtp.received().is_empty());

    // Two minutes on, the retries go through, once each.
    let mut config = Config::default();
    config.clickhouse = db.config();
    config.smtp = SmtpConfig {
        host: "localhost".into(),
        port: smtp.port + 1,
        tls: SmtpTls::Starttls,
        username: common::smtp::USER.into(),
        password: common::smtp::PASSWORD.into(),
        from: "DMARC reports <dmarc@centre.test>".into(),
        ca_file: Some(smtp.ca_file()),
        ..SmtpConfig::default()
    };
    config.alerts.team_recipients = vec!["soc@centre.test".into()];
    config.alerts.webhook_url = hook.url.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let later = dmarc_ingest::store::now() + 120;
    let summary = rt.block_on(async {
        let store = dmarc_ingest::store::Store::connect(&config.clickhouse)
            .await
            .unwrap();
        let outbox = dmarc_ingest::alerts::send::Outbox::from_config(&config).unwrap();
        dmarc_ingest::alerts::send::deliver_alerts(&store, &outbox, later)
            .await
            .unwrap()
    });
    assert_eq!((summary.sent, summary.failed), (2, 0), "{summary}");
    let stderr = check();
    assert!(stderr.contains("0 deliveries sent, 0 failed"), "{stderr}");

    let received = smtp.received();
    assert_eq!(
        received.len(),
        1,
        "one mail for the alert, whatever the passes"
    );
    let mail = &received[0];
    assert_eq!(
        mail.rcpt_tos,
        ["postmaster@new-source.test", "soc@centre.test"]
    );
    assert_eq!(
        (mail.port, mail.user.as_deref()),
        (smtp.port + 1, Some("dmarc"))
    );
    let parsed = mailparse::parse_mail(&mail.raw).unwrap();
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.get_key_ref().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
            .unwrap_or_default()
    };
    assert!(
        header("Subject").starts_with(
            "[DMARC alert] new-source.test: new source 192.0.2.66 sent 80 messages failing DMARC"
        ),
        "{}",
        header("Subject")
    );
    assert!(header("From").contains("dmarc@centre.test"));
    assert!(
        header("Message-ID").ends_with(".dmarc-ingest@centre.test>"),
        "{}",
        header("Message-ID")
    );
    let text = part_text(&parsed, "text/plain").unwrap();
    assert!(
        text.contains("likely spoofing or phishing in your name"),
        "{text}"
    );
    assert!(text.contains("failing: 80"), "{text}");
    let recorded = db.rows(
        "SELECT message_id FROM {database}.deliveries WHERE channel = 'email' AND outcome = 'sent'",
    );
    assert_eq!(format!("<{}>", recorded[0][0]), header("Message-ID"));

    let bodies = hook.bodies();
    assert_eq!(
        bodies.len(),
        2,
        "the refused POST and its retry: {bodies:?}"
    );
    assert_eq!(
        bodies[0], bodies[1],
        "a retry carries the same id and fields"
    );
    assert_eq!(bodies[1]["rule"], "spoofing_new_source");
    assert_eq!(bodies[1]["domain"], "new-source.test");
    assert_eq!(bodies[1]["event"], "opened");
    assert!(bodies[1]["text"]
        .as_str()
        .unwrap()
        .starts_with("[DMARC alert]"));
    assert_eq!(bodies[1]["evidence"]["failing"], 80.0);
}

#[test]
fn mail_goes_over_implicit_tls_and_plain_only_to_loopback() {
    let smtp = SmtpServer::own(2535);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (tls, port, user) in [
        (SmtpTls::Tls, smtp.port + 2, common::smtp::USER),
        (SmtpTls::None, smtp.port, ""),
    ] {
        let config = SmtpConfig {
            host: "localhost".into(),
            port,
            tls,
            username: user.into(),
            password: if user.is_empty() {
                String::new()
            } else {
                common::smtp::PASSWORD.into()
            },
            from: "DMARC <dmarc@centre.test>".into(),
            ca_file: Some(smtp.ca_file()),
            ..SmtpConfig::default()
        };
        config.validate().unwrap();
        let mailer = dmarc_ingest::alerts::send::Mailer::new(&config).unwrap();
        let message = mailer
            .message(&["soc@centre.test".into()], "test.1@centre.test")
            .unwrap()
            .subject("hello")
            .body("hello".to_owned())
            .unwrap();
        rt.block_on(mailer.send(message)).unwrap();
    }
    let received = smtp.received();
    let ports: Vec<u16> = received.iter().map(|r| r.port).collect();
    assert_eq!(ports, [smtp.port + 2, smtp.port]);
    // A wrong password fails within smtp.timeout_secs, whatever the server does next.
    let config = SmtpConfig {
        host: "localhost".into(),
        port: smtp.port + 2,
        tls: SmtpTls::Tls,
        username: common::smtp::USER.into(),
        password: "wrong".into(),
        from: "DMARC <dmarc@centre.test>".into(),
        ca_file: Some(smtp.ca_file()),
        timeout_secs: 3,
        ..SmtpConfig::default()
    };
    let mailer = dmarc_ingest::alerts::send::Mailer::new(&config).unwrap();
    let message = mailer
        .message(&["soc@centre.test".into()], "test.2@centre.test")
        .unwrap()
        .subject("x")
        .body("x".to_owned())
        .unwrap();
    let started = std::time::Instant::now();
    assert!(rt.block_on(mailer.send(message)).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(smtp.received().len(), 2);
}

#[test]
fn a_pass_stops_mailing_after_three_failures_in_a_row_and_leaves_the_rest_for_later() {
    let db = TestDb::fresh("alerts_postponed");
    let state = tempfile::tempdir().unwrap();
    let reports = state.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    let domains = ["p1.test", "p2.test", "p3.test", "p4.test"];
    sync_domains(&db, state.path(), &domains);
    for domain in domains {
        write_days(&reports, domain, 2..32, &[Mail::passing(KNOWN, 20)]);
        write_day(&reports, domain, 1, &[Mail::failing(SPOOFER, 80)]);
    }
    import(&db, &reports);
    // Nothing listens on the mail server's port.
    let out = db
        .command(&["alerts", "check"])
        .env("DMARC_INGEST_SMTP_HOST", "127.0.0.1")
        .env("DMARC_INGEST_SMTP_PORT", "2549")
        .env("DMARC_INGEST_SMTP_TLS", "none")
        .env("DMARC_INGEST_SMTP_FROM", "dmarc@centre.test")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("4 alerts opened"), "{stderr}");
    assert!(
        stderr
            .contains("0 deliveries sent, 3 failed (tried again later), 0 abandoned, 1 postponed"),
        "{stderr}"
    );
    assert_eq!(
        db.number("SELECT count() FROM {database}.deliveries WHERE outcome = 'failed'"),
        3,
        "the postponed one is no attempt"
    );
}
