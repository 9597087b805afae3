//! Exit codes mean one thing each (0 all stored, 1 some inputs failed or were quarantined,
//! 2 usage or configuration, 3 a server unreachable or refusing us), and what goes to a
//! pipe carries no colour codes. Real binary, real dovecot and ClickHouse.

mod common;

use std::process::{Command, Output};

use common::clickhouse::{write_reports, TestDb};
use common::imap::{as_mails, Dovecot};

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dmarc-ingest"));
    c.env_remove("NO_COLOR");
    c
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn usage_and_configuration_errors_exit_2() {
    let out = binary().arg("--no-such-flag").output().unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = binary()
        .args([
            "--config",
            "/nonexistent/dmarc-ingest.toml",
            "parse",
            "x.xml",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/dmarc-ingest.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn failed_inputs_exit_1_and_the_help_lists_the_codes() {
    let root = common::repo_root().join("sample-reports");
    let out = binary()
        .arg("parse")
        .arg(root.join("broken/empty.xml"))
        .arg(root.join("reporters/google.xml"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let help = binary().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for line in [
        "0 everything stored",
        "1 some inputs failed",
        "2 usage",
        "3 a server",
    ] {
        assert!(text.contains(line), "--help lacks {line:?}: {text}");
    }
}

#[test]
fn an_unreachable_clickhouse_exits_3_and_logs_to_a_pipe_without_colour() {
    for args in [
        &["schema", "apply"][..],
        &["import", "sample-reports/reporters"][..],
    ] {
        let out = binary()
            .current_dir(common::repo_root())
            .args(args)
            .env("DMARC_INGEST_CLICKHOUSE_URL", "http://127.0.0.1:1")
            .env("DMARC_INGEST_CLICKHOUSE_MAX_ATTEMPTS", "2")
            .env("DMARC_INGEST_CLICKHOUSE_RETRY_MAX_MS", "50")
            .env("DMARC_INGEST_LOG", "warn")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(code(&out), 3, "{args:?}: {err}");
        assert!(err.contains(" WARN "), "{args:?}: a log line: {err}");
        assert!(
            !err.contains('\u{1b}'),
            "{args:?}: colour codes in a pipe: {err:?}"
        );
        assert_eq!(
            err.matches("client error (Connect)").count(),
            err.lines().count(),
            "{args:?}: each line says it once: {err}"
        );
    }
}

#[test]
fn a_refused_imap_login_exits_3_and_quarantined_mail_exits_1() {
    let imap = Dovecot::shared();
    let db = TestDb::fresh("exit_codes");
    assert!(db.cli(&["schema", "apply"]).status.success());

    let user = "exit_login";
    imap.fresh_user(user);
    let out = db
        .command(&["run", "--once"])
        .envs(imap.env(user))
        .env("DMARC_INGEST_IMAP_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));

    let user = "exit_quarantine";
    imap.fresh_user(user);
    let work = tempfile::tempdir().unwrap();
    let mut files = write_reports(work.path(), "exit", 2, 3);
    files.push(common::repo_root().join("sample-reports/broken/not-dmarc.xml"));
    let mails = as_mails(&work.path().join("mails"), &files);
    imap.deliver(user, "INBOX", &mails);
    let out = db
        .command(&["run", "--once"])
        .envs(imap.env(user))
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(
        imap.counts(user, &["INBOX", "Archive", "Invalid"]),
        [0, 2, 1]
    );

    let user = "exit_clean";
    imap.fresh_user(user);
    let mails = as_mails(
        &work.path().join("clean"),
        &write_reports(work.path(), "exit-clean", 2, 3),
    );
    imap.deliver(user, "INBOX", &mails);
    let out = db
        .command(&["run", "--once"])
        .envs(imap.env(user))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
