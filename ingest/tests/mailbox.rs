//! The IMAP stage against the real dovecot started by `deploy/dev/dovecot.sh`: plain,
//! implicit TLS and STARTTLS connections, LOGIN and AUTHENTICATE PLAIN, listing,
//! fetching (exact bytes, no `\Seen`, the size cap), folders, moving (MOVE and the
//! COPY/EXPUNGE fallbacks), IDLE (new mail, timeout, stop) and its NOOP-polling stand-in.
//!
//! Each test has its own login (`mb_<test>`, mail removed first), so they run in parallel
//! and again without interfering.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_imap::types::Flag;
use dmarc_ingest::config::{AuthMethod, ImapConfig, TlsMode};
use dmarc_ingest::mailbox::{IdleOutcome, Mailbox, MailboxError};
use futures::TryStreamExt;

/// The shared dev dovecot: where its script, state and ports are.
struct Dovecot {
    script: PathBuf,
    state: PathBuf,
    port: u16,
    tls_port: u16,
}

fn dovecot() -> &'static Dovecot {
    static STARTED: OnceLock<Dovecot> = OnceLock::new();
    STARTED.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let d = Dovecot {
            script: root.join("deploy/dev/dovecot.sh"),
            state: std::env::var_os("DMARC_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join(".state")),
            port: port_from_env("DMARC_IMAP_PORT", 1143),
            tls_port: port_from_env("DMARC_IMAPS_PORT", 1993),
        };
        script(&d.script, &["install"]);
        script(&d.script, &["start"]);
        d
    })
}

fn port_from_env(name: &str, default: u16) -> u16 {
    std::env::var(name)
        .ok()
        .map(|p| p.parse().unwrap())
        .unwrap_or(default)
}

/// Runs the dev script; one at a time (`add-user` rewrites the passwd file).
fn script(path: &Path, args: &[&str]) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(path).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test's own login with an empty mailbox, and a directory for its mail files.
struct Account {
    user: String,
    password: String,
    dir: tempfile::TempDir,
}

impl Account {
    fn new(test: &str) -> Account {
        let d = dovecot();
        let user = format!("mb_{test}");
        let mail = d.state.join("dovecot/mail").join(&user);
        match std::fs::remove_dir_all(&mail) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {}: {e}", mail.display()),
        }
        let password = format!("pw-{test}");
        script(&d.script, &["add-user", &user, &password]);
        // dovecot's passwd-file driver looks at the file at most once a second: a login in
        // the second of the change (after another test's login) would not see the user.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        std::thread::sleep(Duration::from_nanos(
            1_000_000_000 - u64::from(now.subsec_nanos()) + 20_000_000,
        ));
        Account {
            user,
            password,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Plain IMAP to 127.0.0.1 with LOGIN, short timeouts.
    fn config(&self) -> ImapConfig {
        ImapConfig {
            host: "127.0.0.1".into(),
            port: dovecot().port,
            tls: TlsMode::None,
            username: self.user.clone(),
            password: self.password.clone(),
            poll_interval_secs: 1,
            // dovecot delays logins from an IP after failed ones (up to 15 s; the
            // wrong-password test makes some).
            connect_timeout_secs: 40,
            command_timeout_secs: 10,
            ..ImapConfig::default()
        }
    }

    /// Writes a message of about `body_bytes` (CRLF line ends, as IMAP serves them) and
    /// returns its path and bytes.
    fn message(&self, name: &str, body_bytes: usize) -> (PathBuf, Vec<u8>) {
        let mut text = format!(
            "From: reports@reporter.example\r\nTo: dmarc@example.net\r\n\
             Subject: Report Domain: example.net Report-ID: {name}\r\n\
             Message-ID: <{name}@reporter.example>\r\n\
             Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
        );
        let line = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
        let mut body = 0;
        while body < body_bytes {
            text.push_str(line);
            body += line.len();
        }
        let path = self.dir.path().join(format!("{name}.eml"));
        std::fs::write(&path, &text).unwrap();
        (path, text.into_bytes())
    }

    fn deliver(&self, folder: &str, files: &[&Path]) {
        let mut args = vec!["deliver", &self.user, folder];
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        args.extend(files.iter().map(String::as_str));
        script(&dovecot().script, &args);
    }

    /// A session of the library itself, to look behind this crate's back.
    async fn raw_session(&self) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", dovecot().port))
            .await
            .unwrap();
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap().unwrap();
        client
            .login(&self.user, &self.password)
            .await
            .map_err(|(e, _)| e)
            .unwrap()
    }

    /// UID and whether `\Seen` is set, of every message in `folder`.
    async fn seen_flags(&self, folder: &str) -> Vec<(u32, bool)> {
        let mut s = self.raw_session().await;
        let exists = s.select(folder).await.unwrap().exists;
        if exists == 0 {
            return Vec::new();
        }
        let fetches: Vec<_> = s
            .fetch("1:*", "(UID FLAGS)")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut out: Vec<(u32, bool)> = fetches
            .iter()
            .map(|f| (f.uid.unwrap(), f.flags().any(|f| f == Flag::Seen)))
            .collect();
        out.sort();
        s.logout().await.unwrap();
        out
    }
}

/// Runs a test body with a time limit (generous: see `connect_timeout_secs` above).
async fn bounded<F: Future>(secs: u64, body: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .expect("test took too long")
}

async fn connect(cfg: &ImapConfig) -> Mailbox {
    Mailbox::connect(cfg)
        .await
        .unwrap_or_else(|e| panic!("connect {cfg:?}: {e}"))
}

#[tokio::test]
async fn plain_login_capabilities_and_select() {
    bounded(60, async {
        let acc = Account::new("plain_login");
        let mut mb = connect(&acc.config()).await;
        let caps = *mb.capabilities();
        assert!(caps.idle && caps.r#move && caps.uidplus, "{caps:?}");
        let sel = mb.select("INBOX").await.unwrap();
        assert!(sel.uid_validity > 0);
        assert_eq!(sel.exists, 0);
        assert!(mb.uids().await.unwrap().is_empty());
        assert!(mb.fetch(&[], 1000).await.unwrap().is_empty());
        mb.move_to(&[], "Archive").await.unwrap();
        mb.noop().await.unwrap();
        mb.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn authenticate_plain() {
    bounded(60, async {
        let acc = Account::new("auth_plain");
        let cfg = ImapConfig {
            auth: AuthMethod::Plain,
            ..acc.config()
        };
        let mut mb = connect(&cfg).await;
        mb.select("INBOX").await.unwrap();
        mb.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn wrong_password_is_a_permanent_auth_error() {
    bounded(60, async {
        let acc = Account::new("wrong_password");
        for auth in [AuthMethod::Login, AuthMethod::Plain] {
            let cfg = ImapConfig {
                password: "not-the-password".into(),
                auth,
                ..acc.config()
            };
            let err = Mailbox::connect(&cfg).await.unwrap_err();
            assert!(matches!(err, MailboxError::Auth(_)), "{auth:?}: {err:?}");
            assert!(!err.is_transient(), "{err}");
            assert!(!err.to_string().contains("not-the-password"), "{err}");
        }
    })
    .await;
}

#[tokio::test]
async fn nothing_listening_is_a_transient_connect_error() {
    bounded(60, async {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = ImapConfig {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            password: "x".into(),
            ..ImapConfig::default()
        };
        let err = Mailbox::connect(&cfg).await.unwrap_err();
        assert!(matches!(err, MailboxError::Connect { .. }), "{err:?}");
        assert!(err.is_transient());
    })
    .await;
}

#[tokio::test]
async fn silent_server_times_out() {
    bounded(60, async {
        // Accepts the connection but never greets.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (_conn, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let cfg = ImapConfig {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            password: "x".into(),
            connect_timeout_secs: 1,
            ..ImapConfig::default()
        };
        let started = Instant::now();
        let err = Mailbox::connect(&cfg).await.unwrap_err();
        assert!(matches!(err, MailboxError::Timeout(_)), "{err:?}");
        assert!(err.is_transient());
        assert!(started.elapsed() < Duration::from_secs(5));
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn implicit_tls_with_the_test_ca() {
    bounded(60, async {
        let acc = Account::new("implicit_tls");
        let ca = dovecot().state.join("dovecot/ca.pem");
        // The server certificate names both localhost and 127.0.0.1.
        for host in ["localhost", "127.0.0.1"] {
            let cfg = ImapConfig {
                host: host.into(),
                port: dovecot().tls_port,
                tls: TlsMode::Tls,
                ca_file: Some(ca.clone()),
                ..acc.config()
            };
            let mut mb = connect(&cfg).await;
            assert!(mb.capabilities().idle);
            mb.select("INBOX").await.unwrap();
            mb.logout().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn untrusted_certificate_is_a_permanent_tls_error() {
    bounded(60, async {
        let acc = Account::new("untrusted_tls");
        let cfg = ImapConfig {
            host: "localhost".into(),
            port: dovecot().tls_port,
            tls: TlsMode::Tls,
            ca_file: None,
            ..acc.config()
        };
        let err = Mailbox::connect(&cfg).await.unwrap_err();
        assert!(matches!(err, MailboxError::Tls(_)), "{err:?}");
        assert!(!err.is_transient());
        // A CA file without certificates is a configuration error.
        let empty = acc.dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let cfg = ImapConfig {
            ca_file: Some(empty),
            ..cfg
        };
        let err = Mailbox::connect(&cfg).await.unwrap_err();
        assert!(matches!(err, MailboxError::Config(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn starttls_with_the_test_ca() {
    bounded(60, async {
        let acc = Account::new("starttls");
        let cfg = ImapConfig {
            host: "localhost".into(),
            port: dovecot().port,
            tls: TlsMode::Starttls,
            ca_file: Some(dovecot().state.join("dovecot/ca.pem")),
            auth: AuthMethod::Plain,
            ..acc.config()
        };
        let mut mb = connect(&cfg).await;
        assert!(mb.capabilities().r#move);
        mb.select("INBOX").await.unwrap();
        mb.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn fetch_gives_the_exact_bytes_and_leaves_mail_unseen() {
    bounded(60, async {
        let acc = Account::new("fetch_exact");
        let msgs: Vec<(PathBuf, Vec<u8>)> = (0..3)
            .map(|i| acc.message(&format!("r{i}"), 100 + i * 1000))
            .collect();
        let paths: Vec<&Path> = msgs.iter().map(|(p, _)| p.as_path()).collect();
        acc.deliver("INBOX", &paths);

        let mut mb = connect(&acc.config()).await;
        let sel = mb.select("INBOX").await.unwrap();
        assert_eq!(sel.exists, 3);
        let uids = mb.uids().await.unwrap();
        assert_eq!(uids.len(), 3);
        assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
        assert!(sel.uid_next.unwrap() > *uids.last().unwrap());

        // Asked out of order, with a duplicate and a UID that does not exist.
        let ask = [uids[2], uids[0], uids[1], uids[0], 999_999];
        let got = mb.fetch(&ask, 1 << 20).await.unwrap();
        assert_eq!(got.iter().map(|m| m.uid).collect::<Vec<_>>(), uids);
        for (m, (_, bytes)) in got.iter().zip(&msgs) {
            assert!(!m.too_large);
            assert_eq!(m.size, bytes.len() as u64);
            assert!(
                m.raw == *bytes,
                "uid {} differs from what was delivered",
                m.uid
            );
        }
        mb.logout().await.unwrap();

        let flags = acc.seen_flags("INBOX").await;
        assert_eq!(flags, uids.iter().map(|&u| (u, false)).collect::<Vec<_>>());
        // The check can see \Seen: a non-PEEK fetch sets it.
        let mut raw = acc.raw_session().await;
        raw.select("INBOX").await.unwrap();
        let _: Vec<_> = raw
            .uid_fetch(uids[0].to_string(), "BODY[]")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        raw.logout().await.unwrap();
        assert_eq!(acc.seen_flags("INBOX").await[0], (uids[0], true));
    })
    .await;
}

#[tokio::test]
async fn messages_over_the_cap_are_not_downloaded() {
    bounded(60, async {
        let acc = Account::new("size_cap");
        let (small, small_bytes) = acc.message("small", 500);
        let (big, big_bytes) = acc.message("big", 20_000);
        acc.deliver("INBOX", &[&small, &big]);
        let mut mb = connect(&acc.config()).await;
        mb.select("INBOX").await.unwrap();
        let uids = mb.uids().await.unwrap();
        let cap = 5_000;
        let got = mb.fetch(&uids, cap).await.unwrap();
        assert_eq!(got.len(), 2);
        assert!(!got[0].too_large);
        assert_eq!(got[0].raw, small_bytes);
        assert!(got[1].too_large, "{:?}", got[1]);
        assert!(got[1].raw.is_empty());
        assert_eq!(got[1].size, big_bytes.len() as u64);
        // Exactly at the cap is still fetched.
        let got = mb.fetch(&uids[1..], big_bytes.len() as u64).await.unwrap();
        assert!(!got[0].too_large);
        assert_eq!(got[0].raw, big_bytes);
        mb.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn uids_skip_deleted_messages() {
    bounded(60, async {
        let acc = Account::new("skip_deleted");
        let (a, _) = acc.message("a", 10);
        let (b, _) = acc.message("b", 10);
        acc.deliver("INBOX", &[&a, &b]);
        let mut raw = acc.raw_session().await;
        raw.select("INBOX").await.unwrap();
        let _: Vec<_> = raw
            .store("1", "+FLAGS.SILENT (\\Deleted)")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        raw.logout().await.unwrap();
        let mut mb = connect(&acc.config()).await;
        assert_eq!(mb.select("INBOX").await.unwrap().exists, 2);
        assert_eq!(mb.uids().await.unwrap().len(), 1);
        mb.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn folders_are_created_once_and_mail_moves_to_them() {
    bounded(60, async {
        let acc = Account::new("move_archive");
        let msgs: Vec<(PathBuf, Vec<u8>)> =
            (0..3).map(|i| acc.message(&format!("m{i}"), 200)).collect();
        let paths: Vec<&Path> = msgs.iter().map(|(p, _)| p.as_path()).collect();
        acc.deliver("INBOX", &paths);

        let mut mb = connect(&acc.config()).await;
        for folder in ["Archive", "Archive", "Invalid", "Reports/Done & Dusted"] {
            mb.ensure_folder(folder).await.unwrap();
        }
        mb.select("INBOX").await.unwrap();
        let uids = mb.uids().await.unwrap();
        mb.move_to(&uids[..2], "Archive").await.unwrap();
        mb.move_to(&uids[2..], "Reports/Done & Dusted")
            .await
            .unwrap();
        assert!(mb.uids().await.unwrap().is_empty());
        assert_eq!(mb.select("INBOX").await.unwrap().exists, 0);

        assert_eq!(mb.select("Archive").await.unwrap().exists, 2);
        let archived = mb.uids().await.unwrap();
        let got = mb.fetch(&archived, 1 << 20).await.unwrap();
        assert_eq!(got[0].raw, msgs[0].1);
        assert_eq!(got[1].raw, msgs[1].1);
        assert_eq!(mb.select("Reports/Done & Dusted").await.unwrap().exists, 1);
        assert_eq!(mb.select("Invalid").await.unwrap().exists, 0);

        // Moving to a folder that does not exist fails for good ([TRYCREATE]).
        mb.select("Archive").await.unwrap();
        let err = mb.move_to(&archived, "Nowhere").await.unwrap_err();
        assert!(matches!(err, MailboxError::Refused { .. }), "{err:?}");
        assert!(!err.is_transient(), "{err}");
        // The session is still usable after a refusal.
        assert_eq!(mb.uids().await.unwrap(), archived);
        mb.logout().await.unwrap();
        assert_eq!(acc.seen_flags("Archive").await.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn move_without_the_move_extension() {
    bounded(60, async {
        let acc = Account::new("move_fallback");
        let (a, a_bytes) = acc.message("a", 100);
        let (b, b_bytes) = acc.message("b", 100);
        let (c, _) = acc.message("c", 100);
        acc.deliver("INBOX", &[&a, &b, &c]);
        let mut mb = connect(&acc.config()).await;
        mb.ensure_folder("Archive").await.unwrap();
        mb.select("INBOX").await.unwrap();
        let uids = mb.uids().await.unwrap();

        // COPY + \Deleted + UID EXPUNGE.
        mb.capabilities_mut().r#move = false;
        mb.move_to(&uids[..1], "Archive").await.unwrap();
        assert_eq!(mb.uids().await.unwrap(), uids[1..]);
        // COPY + \Deleted + EXPUNGE.
        mb.capabilities_mut().uidplus = false;
        mb.move_to(&uids[1..2], "Archive").await.unwrap();
        assert_eq!(mb.uids().await.unwrap(), uids[2..]);
        assert_eq!(mb.select("INBOX").await.unwrap().exists, 1);

        assert_eq!(mb.select("Archive").await.unwrap().exists, 2);
        let archived = mb.uids().await.unwrap();
        let got = mb.fetch(&archived, 1 << 20).await.unwrap();
        assert_eq!(got[0].raw, a_bytes);
        assert_eq!(got[1].raw, b_bytes);
        mb.logout().await.unwrap();
        // The copies do not carry \Deleted.
        assert_eq!(acc.seen_flags("Archive").await.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn idle_wakes_up_on_new_mail() {
    bounded(60, async {
        let acc = Account::new("idle_new_mail");
        let (msg, _) = acc.message("late", 100);
        let mut mb = connect(&acc.config()).await;
        mb.select("INBOX").await.unwrap();
        assert!(mb.uids().await.unwrap().is_empty());

        let user = acc.user.clone();
        let script_path = dovecot().script.clone();
        let msg_arg = msg.display().to_string();
        let delivery = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            script(&script_path, &["deliver", &user, "INBOX", &msg_arg]);
        });
        let started = Instant::now();
        let (mut mb, outcome) = mb
            .idle(Duration::from_secs(20), std::future::pending())
            .await
            .unwrap();
        delivery.join().unwrap();
        assert_eq!(outcome, IdleOutcome::NewData);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(mb.uids().await.unwrap().len(), 1);
        mb.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn idle_times_out_and_stops() {
    bounded(60, async {
        let acc = Account::new("idle_timeout");
        let mut mb = connect(&acc.config()).await;
        mb.select("INBOX").await.unwrap();
        mb.uids().await.unwrap();

        let started = Instant::now();
        let (mb, outcome) = mb
            .idle(Duration::from_secs(1), std::future::pending())
            .await
            .unwrap();
        assert_eq!(outcome, IdleOutcome::TimedOut);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(5),
            "{took:?}"
        );

        let started = Instant::now();
        let stop = tokio::time::sleep(Duration::from_millis(300));
        let (mut mb, outcome) = mb.idle(Duration::from_secs(20), stop).await.unwrap();
        assert_eq!(outcome, IdleOutcome::Stopped);
        assert!(started.elapsed() < Duration::from_secs(5));

        // The session is usable afterwards.
        mb.noop().await.unwrap();
        assert!(mb.uids().await.unwrap().is_empty());
        mb.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn news_seen_outside_idle_is_not_lost() {
    bounded(60, async {
        let acc = Account::new("idle_pending");
        let (msg, _) = acc.message("between", 100);
        let mut mb = connect(&acc.config()).await;
        mb.select("INBOX").await.unwrap();
        assert!(mb.uids().await.unwrap().is_empty());
        // Mail arrives between the listing and the IDLE; the NOOP hears of it.
        acc.deliver("INBOX", &[&msg]);
        mb.noop().await.unwrap();
        let started = Instant::now();
        let (mut mb, outcome) = mb
            .idle(Duration::from_secs(20), std::future::pending())
            .await
            .unwrap();
        assert_eq!(outcome, IdleOutcome::NewData);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(mb.uids().await.unwrap().len(), 1);
        // Listed: no longer news.
        let (mb, outcome) = mb
            .idle(Duration::from_secs(1), std::future::pending())
            .await
            .unwrap();
        assert_eq!(outcome, IdleOutcome::TimedOut);
        mb.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn polling_stands_in_for_idle() {
    bounded(60, async {
        let acc = Account::new("idle_polling");
        let (msg, _) = acc.message("polled", 100);
        let mut mb = connect(&acc.config()).await;
        mb.capabilities_mut().idle = false;
        mb.select("INBOX").await.unwrap();
        mb.uids().await.unwrap();

        let (mb, outcome) = mb
            .idle(Duration::from_millis(1500), std::future::pending())
            .await
            .unwrap();
        assert_eq!(outcome, IdleOutcome::TimedOut);

        let (mb, outcome) = mb
            .idle(
                Duration::from_secs(20),
                tokio::time::sleep(Duration::from_millis(200)),
            )
            .await
            .unwrap();
        assert_eq!(outcome, IdleOutcome::Stopped);

        let user = acc.user.clone();
        let script_path = dovecot().script.clone();
        let msg_arg = msg.display().to_string();
        let delivery = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            script(&script_path, &["deliver", &user, "INBOX", &msg_arg]);
        });
        let started = Instant::now();
        let (mut mb, outcome) = mb
            .idle(Duration::from_secs(20), std::future::pending())
            .await
            .unwrap();
        delivery.join().unwrap();
        assert_eq!(outcome, IdleOutcome::NewData);
        // poll_interval_secs = 1 in these configs.
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(mb.uids().await.unwrap().len(), 1);
        mb.logout().await.unwrap();
    })
    .await;
}
