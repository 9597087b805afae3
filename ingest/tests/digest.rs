//! `dmarc-ingest digest` over generated reports in the real ClickHouse: the files of
//! `--out`, and the mail through the real SMTP server (recipients, subject, text and HTML
//! parts, the inline charts, the CSV), sent once per owner and week; the written page
//! rendered by headless Chromium.

mod common;

use common::clickhouse::TestDb;
use common::smtp::SmtpServer;
use common::traffic::{today_midnight, write_day, Mail};

fn find_part<'a>(
    mail: &'a mailparse::ParsedMail<'a>,
    mime: &str,
) -> Vec<&'a mailparse::ParsedMail<'a>> {
    let mut found = Vec::new();
    if mail.ctype.mimetype == mime {
        found.push(mail);
    }
    for part in &mail.subparts {
        found.extend(find_part(part, mime));
    }
    found
}

fn header(part: &mailparse::ParsedMail, name: &str) -> String {
    part.headers
        .iter()
        .find(|h| h.get_key_ref().eq_ignore_ascii_case(name))
        .map(|h| h.get_value())
        .unwrap_or_default()
}

#[test]
fn each_owner_gets_the_weeks_digest_as_files_and_once_by_mail() {
    let db = TestDb::fresh("digest");
    let state = tempfile::tempdir().unwrap();
    let domains = state.path().join("domains.csv");
    std::fs::write(
        &domains,
        "domain,owner,group,parked,contact\n\
         a.test,Council A,G,no,it@a.test\n\
         b.test,Council A,G,no,it@a.test\n\
         c.test,Council B,G,no,it@c.test\n",
    )
    .unwrap();
    let out = db
        .command(&["domains", "sync"])
        .env("DMARC_INGEST_DOMAINS_FILE", &domains)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Last week (Monday to Sunday): a.test gets mail every day, failing from a new source
    // on its Wednesday; c.test only on Monday; b.test none.
    let today = (today_midnight() / 86_400) as u16;
    let monday = today - (u32::from(today) + 3) as u16 % 7 - 7;
    let reports = state.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    for offset in 0..7u16 {
        let days_ago = u64::from(today - (monday + offset));
        let mut mails = vec![Mail::passing("192.0.2.10", 100)];
        if offset == 2 {
            mails.push(Mail::failing("192.0.2.66", 40));
        }
        write_day(&reports, "a.test", days_ago, &mails);
    }
    write_day(
        &reports,
        "c.test",
        u64::from(today - monday),
        &[Mail::passing("192.0.2.20", 5)],
    );
    let out = db.cli(&["import", &reports.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // As files.
    let files = state.path().join("digests");
    let out = db.cli(&["digest", "--out", &files.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("2 owners: 2 written, 0 mailed"), "{stderr}");
    let week = dmarc_ingest::alerts::day_text(monday);
    let html = std::fs::read_to_string(files.join(format!("council-a-{week}.html"))).unwrap();
    assert!(html.contains("a.test") && html.contains("b.test") && !html.contains("c.test"));
    assert!(
        html.contains("data:image/png;base64,"),
        "the chart is embedded"
    );
    let text = std::fs::read_to_string(files.join(format!("council-a-{week}.txt"))).unwrap();
    assert!(text.contains("740"), "a.test's 740 messages: {text}");
    assert!(text.contains("192.0.2.66"), "the new source: {text}");
    let csv = std::fs::read_to_string(files.join(format!("council-a-{week}.csv"))).unwrap();
    assert!(csv.starts_with("section,domain,"), "{csv}");
    assert!(csv.contains("daily,a.test,"), "{csv}");
    assert!(files.join(format!("council-b-{week}.html")).exists());

    // Rendered as a phone shows it, without errors.
    let png = state.path().join("digest.png");
    let render = std::process::Command::new(common::repo_root().join("deploy/dev/chromium.sh"))
        .arg("render")
        .arg(files.join(format!("council-a-{week}.html")))
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        render.status.success(),
        "{}",
        String::from_utf8_lossy(&render.stderr)
    );
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);

    // By mail, for one owner, twice: one mail.
    let smtp = SmtpServer::own(2540);
    let mail_digest = || {
        let out = db
            .command(&["digest", "--owner", "Council A"])
            .envs(smtp.env(state.path()))
            .env("DMARC_INGEST_ALERTS_TEAM_RECIPIENTS", "soc@centre.test")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        stderr
    };
    assert!(mail_digest().contains("1 owners: 0 written, 1 mailed"));
    assert!(mail_digest().contains("0 mailed, 1 mailed before"));
    let received = smtp.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_tos, ["it@a.test", "soc@centre.test"]);
    let mail = mailparse::parse_mail(&received[0].raw).unwrap();
    assert_eq!(mail.ctype.mimetype, "multipart/mixed");
    assert!(
        header(&mail, "Subject").starts_with(&format!("DMARC weekly digest {week}")),
        "{}",
        header(&mail, "Subject")
    );
    let text = find_part(&mail, "text/plain")[0].get_body().unwrap();
    assert!(text.contains("a.test") && text.contains("740"), "{text}");
    let html = find_part(&mail, "text/html")[0].get_body().unwrap();
    let images = find_part(&mail, "image/png");
    assert_eq!(images.len(), 1, "one chart: a.test had mail, b.test none");
    let cid = header(images[0], "Content-ID");
    assert!(
        html.contains(&format!(
            "cid:{}",
            cid.trim_matches(|c| c == '<' || c == '>')
        )),
        "{cid}"
    );
    let png_bytes = images[0].get_body_raw().unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let info = decoder.read_info().unwrap();
    assert_eq!(info.info().width, dmarc_ingest::alerts::digest::CHART_WIDTH);
    let csv = find_part(&mail, "text/csv");
    assert_eq!(csv.len(), 1);
    assert!(header(csv[0], "Content-Disposition").contains("attachment"));
    assert!(
        csv[0].get_body().unwrap().contains("sender,a.test,"),
        "the senders' rows"
    );

    // An owner not in the inventory is a usage error.
    let out = db.cli(&[
        "digest",
        "--owner",
        "Nobody",
        "--out",
        &files.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}
