//! Mailbox session: an account's settings -> an authenticated IMAP session
//! ([`Mailbox`]) and the commands the daemon runs on it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{
    AttributeValue, Capability, MailboxDatum, NameAttribute, Response, ResponseCode, Status,
};
use async_imap::{Client, Session};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tracing::{debug, info, warn};

use super::error::{
    clip, imap_error, io_error, login_error, outcome_text, refusal, response_code, MailboxError,
};
use super::tls::tls_handshake;
use super::uid_set::{uid_sets, MAX_UID_SET_CHARS};
use crate::config::{check_folder_name, same_folder, AuthMethod, ImapConfig, TlsMode};

/// What the server offers that this client uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `IDLE` (RFC 2177): otherwise [`Mailbox::idle`] polls with NOOP.
    pub idle: bool,
    /// `MOVE` (RFC 6851): otherwise COPY + STORE \Deleted + EXPUNGE.
    pub r#move: bool,
    /// `UIDPLUS` (RFC 4315): `UID EXPUNGE` removes only the moved messages.
    pub uidplus: bool,
}

/// The state of a folder just selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    /// UIDs are only comparable while this stays the same.
    pub uid_validity: u32,
    /// The UID the next message will get, if the server said.
    pub uid_next: Option<u32>,
    /// Messages in the folder.
    pub exists: u32,
}

/// One message as fetched.
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    pub uid: u32,
    /// Size in octets: the server's `RFC822.SIZE`, or the bytes received if more.
    pub size: u64,
    /// The whole message as stored (CRLF line ends); empty when `too_large`.
    pub raw: Bytes,
    /// Larger than the cap given to [`Mailbox::fetch`]: not downloaded, quarantine it.
    pub too_large: bool,
}

impl fmt::Debug for FetchedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedMessage")
            .field("uid", &self.uid)
            .field("size", &self.size)
            .field("raw_len", &self.raw.len())
            .field("too_large", &self.too_large)
            .finish()
    }
}

/// Why [`Mailbox::idle`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOutcome {
    /// New messages arrived in the selected folder (or may have: look).
    NewData,
    /// The timeout passed without news.
    TimedOut,
    /// The stop future resolved.
    Stopped,
}

/// The connection under the session: TCP, or TLS over TCP.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Transport for T {}
pub(super) type Io = Box<dyn Transport>;

/// What a [`Mailbox`] knows besides its session.
#[derive(Debug, Clone)]
struct State {
    host: String,
    username: String,
    caps: Capabilities,
    command_timeout: Duration,
    poll_interval: Duration,
    /// The folder selected last, for logs.
    selected: Option<String>,
    /// An `EXISTS` or `RECENT` arrived since the last [`Mailbox::uids`].
    new_data: bool,
}

/// An authenticated IMAP connection.
pub struct Mailbox {
    session: Session<Io>,
    state: State,
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("state", &self.state)
            .finish()
    }
}

/// `AUTHENTICATE PLAIN`: authorization id empty, then user and password.
struct PlainAuth<'a> {
    username: &'a str,
    password: &'a str,
}

impl async_imap::Authenticator for PlainAuth<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.username.len() + self.password.len() + 2);
        out.push(0);
        out.extend_from_slice(self.username.as_bytes());
        out.push(0);
        out.extend_from_slice(self.password.as_bytes());
        out
    }
}

/// The next response of the command `$what` on `$mailbox`, within the command timeout
/// (a macro: the library's response type cannot be named in a signature).
macro_rules! next_response {
    ($mailbox:expr, $what:expr) => {
        timeout(
            $mailbox.state.command_timeout,
            $mailbox.session.read_response(),
        )
        .await
        .map_err(|_| MailboxError::Timeout($what))?
        .map_err(|e| io_error($what, e))?
        .ok_or_else(|| MailboxError::Bye(format!("connection ended during {}", $what)))?
    };
}

impl Mailbox {
    /// Connects, sets up TLS as configured, logs in and reads the capabilities.
    pub async fn connect(cfg: &ImapConfig) -> Result<Mailbox, MailboxError> {
        if cfg.password.is_empty() {
            return Err(MailboxError::Config(format!(
                "no password for {} (set password or password_file)",
                cfg.username
            )));
        }
        let limit = Duration::from_secs(cfg.connect_timeout_secs);
        let mailbox = timeout(limit, Self::connect_inner(cfg))
            .await
            .map_err(|_| MailboxError::Timeout("connect and login"))??;
        info!(
            host = %cfg.host,
            port = cfg.port,
            user = %cfg.username,
            idle = mailbox.state.caps.idle,
            has_move = mailbox.state.caps.r#move,
            uidplus = mailbox.state.caps.uidplus,
            "IMAP session ready"
        );
        Ok(mailbox)
    }

    async fn connect_inner(cfg: &ImapConfig) -> Result<Mailbox, MailboxError> {
        debug!(host = %cfg.host, port = cfg.port, tls = ?cfg.tls, "connecting to IMAP server");
        let tcp = TcpStream::connect((cfg.host.as_str(), cfg.port))
            .await
            .map_err(|source| MailboxError::Connect {
                host: cfg.host.clone(),
                port: cfg.port,
                source,
            })?;
        // Commands are small and answered one at a time: don't let Nagle delay them.
        tcp.set_nodelay(true).map_err(|e| io_error("connect", e))?;
        let client: Client<Io> = match cfg.tls {
            TlsMode::None => {
                let mut client = Client::new(Box::new(tcp) as Io);
                read_greeting(&mut client).await?;
                client
            }
            TlsMode::Tls => {
                let mut client = Client::new(tls_handshake(cfg, tcp).await?);
                read_greeting(&mut client).await?;
                client
            }
            TlsMode::Starttls => {
                let mut client = Client::new(tcp);
                read_greeting(&mut client).await?;
                client
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| match imap_error("STARTTLS", e) {
                        MailboxError::Refused { message, .. }
                        | MailboxError::Rejected { message, .. } => {
                            MailboxError::Tls(format!("the server does not do STARTTLS: {message}"))
                        }
                        other => other,
                    })?;
                // Anything the server sent after its OK is dropped with the plain-text
                // client (RFC 3207 command injection). No greeting follows the handshake.
                Client::new(tls_handshake(cfg, client.into_inner()).await?)
            }
        };
        let session = match cfg.auth {
            AuthMethod::Login => client
                .login(&cfg.username, &cfg.password)
                .await
                .map_err(|(e, _)| login_error("LOGIN", e))?,
            AuthMethod::Plain => client
                .authenticate(
                    "PLAIN",
                    PlainAuth {
                        username: &cfg.username,
                        password: &cfg.password,
                    },
                )
                .await
                .map_err(|(e, _)| login_error("AUTHENTICATE PLAIN", e))?,
        };
        let mut mailbox = Mailbox {
            session,
            state: State {
                host: cfg.host.clone(),
                username: cfg.username.clone(),
                caps: Capabilities::default(),
                command_timeout: Duration::from_secs(cfg.command_timeout_secs),
                poll_interval: Duration::from_secs(cfg.poll_interval_secs),
                selected: None,
                new_data: false,
            },
        };
        // Asked again after login: servers announce more (or other) capabilities then.
        let mut caps = Capabilities::default();
        let mut all = Vec::new();
        mailbox
            .command("CAPABILITY", "CAPABILITY", |resp| {
                if let Response::Capabilities(list) = resp {
                    for cap in list {
                        if let Capability::Atom(name) = cap {
                            all.push(name.to_string());
                            match name.to_ascii_uppercase().as_str() {
                                "IDLE" => caps.idle = true,
                                "MOVE" => caps.r#move = true,
                                "UIDPLUS" => caps.uidplus = true,
                                _ => {}
                            }
                        }
                    }
                }
            })
            .await?;
        debug!(host = %cfg.host, capabilities = %all.join(" "), "IMAP capabilities");
        mailbox.state.caps = caps;
        Ok(mailbox)
    }

    /// What the server offers.
    pub fn capabilities(&self) -> &Capabilities {
        &self.state.caps
    }

    /// Turns off an extension the server announces but implements badly (and lets tests
    /// run the fallbacks against a server that has them all).
    pub fn capabilities_mut(&mut self) -> &mut Capabilities {
        &mut self.state.caps
    }

    /// Creates folder `name` unless it exists (another client creating it meanwhile is
    /// fine).
    pub async fn ensure_folder(&mut self, name: &str) -> Result<(), MailboxError> {
        let quoted = quote(name)?;
        let mut exists = false;
        self.command("LIST", &format!("LIST \"\" {quoted}"), |resp| {
            if let Response::MailboxData(MailboxDatum::List(list)) = resp {
                let selectable = !list.name_attributes.iter().any(|a| match a {
                    NameAttribute::NoSelect => true,
                    NameAttribute::Extension(x) => x.eq_ignore_ascii_case("\\NonExistent"),
                    _ => false,
                });
                if selectable && same_folder(&list.name, name) {
                    exists = true;
                }
            }
        })
        .await?;
        if exists {
            return Ok(());
        }
        match self
            .command("CREATE", &format!("CREATE {quoted}"), |_| {})
            .await
        {
            Ok(()) => {
                info!(host = %self.state.host, folder = name, "created IMAP folder");
                Ok(())
            }
            Err(MailboxError::Refused { message, .. })
                if response_code(&message)
                    .is_some_and(|c| c.eq_ignore_ascii_case("ALREADYEXISTS")) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Selects folder `name` (read-write: messages will be moved out of it).
    pub async fn select(&mut self, name: &str) -> Result<Selected, MailboxError> {
        let quoted = quote(name)?;
        let (mut uid_validity, mut uid_next, mut exists) = (None, None, 0);
        self.command("SELECT", &format!("SELECT {quoted}"), |resp| match resp {
            Response::Data {
                status: Status::Ok,
                outcome,
            } => match outcome.code {
                Some(ResponseCode::UidValidity(v)) => uid_validity = Some(v),
                Some(ResponseCode::UidNext(v)) => uid_next = Some(v),
                _ => {}
            },
            Response::MailboxData(MailboxDatum::Exists(n)) => exists = *n,
            _ => {}
        })
        .await?;
        let uid_validity = uid_validity.ok_or_else(|| {
            MailboxError::Protocol(format!("SELECT {name:?} gave no UIDVALIDITY"))
        })?;
        // The EXISTS above and news from before are about this SELECT or the folder
        // selected before: not new mail.
        while self.session.unsolicited_responses.try_recv().is_ok() {}
        self.state.new_data = false;
        self.state.selected = Some(name.to_owned());
        debug!(
            host = %self.state.host,
            mailbox = name,
            uid_validity,
            uid_next,
            exists,
            "selected"
        );
        Ok(Selected {
            uid_validity,
            uid_next,
            exists,
        })
    }

    /// The UIDs of the selected folder's messages not flagged `\Deleted`, ascending.
    /// Forgets the news seen so far (the next [`Mailbox::idle`] waits for new news).
    pub fn forget_news(&mut self) {
        self.drain_unsolicited();
        self.state.new_data = false;
    }

    pub async fn uids(&mut self) -> Result<Vec<u32>, MailboxError> {
        // What arrives from here on is news for the next call.
        self.drain_unsolicited();
        self.state.new_data = false;
        let mut found = BTreeSet::new();
        self.command("UID SEARCH", "UID SEARCH UNDELETED", |resp| {
            if let Response::MailboxData(MailboxDatum::Search(uids)) = resp {
                found.extend(uids.iter().copied());
            }
        })
        .await?;
        Ok(found.into_iter().collect())
    }

    /// The sizes (`RFC822.SIZE`) of the messages `uids` of the selected folder; UIDs that
    /// no longer exist are left out.
    pub async fn sizes(&mut self, uids: &[u32]) -> Result<BTreeMap<u32, u64>, MailboxError> {
        let wanted: BTreeSet<u32> = uids.iter().copied().collect();
        let mut sizes: BTreeMap<u32, u64> = BTreeMap::new();
        for set in uid_sets(uids, MAX_UID_SET_CHARS) {
            self.command(
                "UID FETCH",
                &format!("UID FETCH {set} (UID RFC822.SIZE)"),
                |resp| {
                    if let Some((uid, attrs)) = fetch_of(resp, &wanted) {
                        for a in attrs {
                            if let AttributeValue::Rfc822Size(size) = a {
                                sizes.insert(uid, u64::from(*size));
                            }
                        }
                    }
                },
            )
            .await?;
        }
        Ok(sizes)
    }

    /// Fetches the messages `uids` of the selected folder without marking them `\Seen`,
    /// ascending by UID. A message over `max_bytes` comes back with `too_large` set and no
    /// body: only its size is fetched. UIDs that no longer exist are left out.
    ///
    /// Memory: every returned body is held at once; the caller bounds it by the number of
    /// UIDs it asks for (`fetch_batch`) times `max_bytes`.
    pub async fn fetch(
        &mut self,
        uids: &[u32],
        max_bytes: u64,
    ) -> Result<Vec<FetchedMessage>, MailboxError> {
        let sizes = self.sizes(uids).await?;
        let mut out: BTreeMap<u32, FetchedMessage> = BTreeMap::new();
        let mut small = Vec::new();
        for (&uid, &size) in &sizes {
            if size > max_bytes {
                out.insert(uid, too_large(uid, size));
            } else {
                small.push(uid);
            }
        }
        // A partial fetch of one octet more than the cap: a server that under-reports
        // RFC822.SIZE still cannot send more than that.
        let cap = max_bytes.saturating_add(1).min(u64::from(u32::MAX));
        let body_wanted: BTreeSet<u32> = small.iter().copied().collect();
        for set in uid_sets(&small, MAX_UID_SET_CHARS) {
            let mut bodies: Vec<(u32, Bytes)> = Vec::new();
            let what = "UID FETCH";
            let tag = self
                .start(what, &format!("UID FETCH {set} (UID BODY.PEEK[]<0.{cap}>)"))
                .await?;
            loop {
                let resp = next_response!(self, what);
                if let Some(result) = self.settles(what, &tag, resp.parsed()) {
                    result?;
                    break;
                }
                // The body is kept in the response's own buffer, cut to it: no copy of
                // a message of tens of megabytes (a copy only if the parser made one).
                let found = fetch_of(resp.parsed(), &body_wanted).and_then(|(uid, attrs)| {
                    attrs.iter().find_map(|a| match a {
                        AttributeValue::BodySection {
                            section: None,
                            data: Some(data),
                            ..
                        } => Some((uid, data.as_ptr() as usize, data.len())),
                        _ => None,
                    })
                });
                let Some((uid, at, len)) = found else {
                    continue;
                };
                let base = resp.borrow_owner().as_ptr() as usize;
                if at >= base && at + len <= base + resp.borrow_owner().len() {
                    let owner = resp.into_owner().freeze();
                    bodies.push((uid, owner.slice(at - base..at - base + len)));
                } else if let Some((_, data)) = take_copy(resp.parsed(), uid) {
                    bodies.push((uid, data));
                }
            }
            for (uid, raw) in bodies {
                let reported = sizes.get(&uid).copied().unwrap_or(0);
                let got = raw.len() as u64;
                if got > max_bytes {
                    warn!(
                        host = %self.state.host,
                        mailbox = self.state.selected.as_deref().unwrap_or(""),
                        uid,
                        reported,
                        "message larger than its RFC822.SIZE said and than the cap"
                    );
                    out.insert(uid, too_large(uid, got));
                } else {
                    out.insert(
                        uid,
                        FetchedMessage {
                            uid,
                            size: reported.max(got),
                            raw,
                            too_large: false,
                        },
                    );
                }
            }
        }
        debug!(
            host = %self.state.host,
            mailbox = self.state.selected.as_deref().unwrap_or(""),
            asked = uids.len(),
            fetched = out.len(),
            "fetched messages"
        );
        Ok(out.into_values().collect())
    }

    /// Moves the messages `uids` of the selected folder to `folder`: `UID MOVE` if the
    /// server has MOVE, else `UID COPY`, `\Deleted`, and `UID EXPUNGE` of exactly these
    /// (with UIDPLUS) or a plain `EXPUNGE` (which also removes any other message someone
    /// flagged `\Deleted`).
    pub async fn move_to(&mut self, uids: &[u32], folder: &str) -> Result<(), MailboxError> {
        if uids.is_empty() {
            return Ok(());
        }
        let target = quote(folder)?;
        let caps = self.state.caps;
        for set in uid_sets(uids, MAX_UID_SET_CHARS) {
            if caps.r#move {
                self.command("UID MOVE", &format!("UID MOVE {set} {target}"), |_| {})
                    .await?;
                continue;
            }
            self.command("UID COPY", &format!("UID COPY {set} {target}"), |_| {})
                .await?;
            self.command(
                "UID STORE",
                &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
                |_| {},
            )
            .await?;
            if caps.uidplus {
                self.command("UID EXPUNGE", &format!("UID EXPUNGE {set}"), |_| {})
                    .await?;
            } else {
                self.command("EXPUNGE", "EXPUNGE", |_| {}).await?;
            }
        }
        info!(
            host = %self.state.host,
            mailbox = self.state.selected.as_deref().unwrap_or(""),
            folder,
            count = uids.len(),
            has_move = caps.r#move,
            "moved messages"
        );
        Ok(())
    }

    /// Waits up to `timeout` for new mail in the selected folder, or until `stop`
    /// resolves, and hands the mailbox back. Uses IDLE (ended with DONE) when the server
    /// has it, else NOOP every `poll_interval_secs`. Returns `NewData` at once if news
    /// came in since the last [`Mailbox::uids`].
    pub async fn idle(
        mut self,
        timeout: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<(Mailbox, IdleOutcome), MailboxError> {
        let mut stop = std::pin::pin!(stop);
        self.drain_unsolicited();
        if self.state.new_data {
            return Ok((self, IdleOutcome::NewData));
        }
        let deadline = Instant::now() + timeout;
        if !self.state.caps.idle {
            return self.poll(deadline, stop).await;
        }
        let Mailbox { session, mut state } = self;
        let command_timeout = state.command_timeout;
        let mut handle = session.idle();
        tokio::time::timeout(command_timeout, handle.init())
            .await
            .map_err(|_| MailboxError::Timeout("IDLE"))?
            .map_err(|e| imap_error("IDLE", e))?;
        debug!(
            host = %state.host,
            mailbox = state.selected.as_deref().unwrap_or(""),
            ?timeout,
            "idling"
        );
        let outcome = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let (wait, _interrupt) = handle.wait_with_timeout(remaining);
            tokio::select! {
                r = wait => match r.map_err(|e| imap_error("IDLE", e))? {
                    IdleResponse::NewData(resp) => match resp.parsed() {
                        Response::MailboxData(MailboxDatum::Exists(_))
                        | Response::MailboxData(MailboxDatum::Recent(_)) => {
                            break IdleOutcome::NewData;
                        }
                        Response::Data { status: Status::Bye, outcome } => {
                            return Err(MailboxError::Bye(clip(
                                outcome.information.as_deref().unwrap_or("BYE during IDLE"),
                            )));
                        }
                        // EXPUNGE, FETCH (flags): not new mail.
                        _ => continue,
                    },
                    IdleResponse::Timeout => break IdleOutcome::TimedOut,
                    // Only the end of the stream: this handle's stop source is never used.
                    IdleResponse::ManualInterrupt => {
                        return Err(MailboxError::Bye("connection ended during IDLE".into()));
                    }
                },
                _ = tokio::time::sleep_until(deadline) => break IdleOutcome::TimedOut,
                _ = &mut stop => break IdleOutcome::Stopped,
            }
        };
        let session = tokio::time::timeout(command_timeout, handle.done())
            .await
            .map_err(|_| MailboxError::Timeout("IDLE DONE"))?
            .map_err(|e| imap_error("IDLE DONE", e))?;
        state.new_data = false;
        let mut mailbox = Mailbox { session, state };
        mailbox.drain_unsolicited();
        // Mail that came in while DONE was on its way is news too.
        let outcome = match outcome {
            IdleOutcome::TimedOut if mailbox.state.new_data => IdleOutcome::NewData,
            other => other,
        };
        debug!(host = %mailbox.state.host, ?outcome, "idle ended");
        Ok((mailbox, outcome))
    }

    /// The IDLE stand-in: NOOP every poll interval until news, the deadline or `stop`.
    async fn poll(
        mut self,
        deadline: Instant,
        mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(Mailbox, IdleOutcome), MailboxError> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok((self, IdleOutcome::TimedOut));
            }
            let next = (now + self.state.poll_interval).min(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = &mut stop => return Ok((self, IdleOutcome::Stopped)),
            }
            self.noop().await?;
            if self.state.new_data {
                return Ok((self, IdleOutcome::NewData));
            }
        }
    }

    /// NOOP: keeps the connection alive and collects news about the selected folder.
    pub async fn noop(&mut self) -> Result<(), MailboxError> {
        self.command("NOOP", "NOOP", |_| {}).await
    }

    /// Ends the session politely.
    pub async fn logout(mut self) -> Result<(), MailboxError> {
        timeout(self.state.command_timeout, self.session.logout())
            .await
            .map_err(|_| MailboxError::Timeout("LOGOUT"))?
            .map_err(|e| imap_error("LOGOUT", e))?;
        debug!(host = %self.state.host, user = %self.state.username, "logged out");
        Ok(())
    }

    /// Notes news the library put on its unsolicited channel (during SELECT, IDLE DONE).
    fn drain_unsolicited(&mut self) {
        use async_imap::types::UnsolicitedResponse as U;
        while let Ok(r) = self.session.unsolicited_responses.try_recv() {
            if matches!(r, U::Exists(_) | U::Recent(_)) {
                self.state.new_data = true;
            }
        }
    }

    /// Runs `command` (named `what` in errors), passes every untagged response to
    /// `on_data`, and checks the tagged completion. Each response must come within the
    /// command timeout.
    async fn command(
        &mut self,
        what: &'static str,
        command: &str,
        mut on_data: impl FnMut(&Response<'_>),
    ) -> Result<(), MailboxError> {
        let tag = self.start(what, command).await?;
        loop {
            let resp = next_response!(self, what);
            match self.settles(what, &tag, resp.parsed()) {
                Some(result) => return result,
                None => on_data(resp.parsed()),
            }
        }
    }

    /// Sends `command`; returns its tag.
    async fn start(
        &mut self,
        what: &'static str,
        command: &str,
    ) -> Result<async_imap::imap_proto::RequestId, MailboxError> {
        timeout(
            self.state.command_timeout,
            self.session.run_command(command),
        )
        .await
        .map_err(|_| MailboxError::Timeout(what))?
        .map_err(|e| imap_error(what, e))
    }

    /// What a response of command `what` (tagged `tag`) means for the command: its end
    /// (`Some`: the tagged completion, checked; or a `BYE`), or data (`None`). Notes news
    /// (`EXISTS`, `RECENT`) and logs warnings and alerts.
    fn settles(
        &mut self,
        what: &'static str,
        tag: &async_imap::imap_proto::RequestId,
        resp: &Response<'_>,
    ) -> Option<Result<(), MailboxError>> {
        match resp {
            Response::Done {
                tag: done,
                status,
                outcome,
            } if done == tag => Some(match status {
                Status::Ok => Ok(()),
                other => Err(refusal(what, other, &outcome_text(outcome))),
            }),
            Response::Data {
                status: Status::Bye,
                outcome,
            } => Some(Err(MailboxError::Bye(clip(
                outcome.information.as_deref().unwrap_or("BYE"),
            )))),
            Response::MailboxData(MailboxDatum::Exists(_))
            | Response::MailboxData(MailboxDatum::Recent(_)) => {
                self.state.new_data = true;
                None
            }
            // Untagged NO/BAD are warnings; [ALERT] texts must reach a human
            // (RFC 3501 7.1).
            Response::Data { status, outcome }
                if *status != Status::Ok || matches!(outcome.code, Some(ResponseCode::Alert)) =>
            {
                warn!(
                    host = %self.state.host,
                    command = what,
                    ?status,
                    text = %clip(outcome.information.as_deref().unwrap_or("")),
                    "IMAP server says"
                );
                None
            }
            _ => None,
        }
    }
}

/// A copy of the body of the FETCH response of `uid` (when it is not in the response's
/// buffer).
fn take_copy(resp: &Response<'_>, uid: u32) -> Option<(u32, Bytes)> {
    let Response::Fetch(_, attrs) = resp else {
        return None;
    };
    attrs.iter().find_map(|a| match a {
        AttributeValue::BodySection {
            section: None,
            data: Some(data),
            ..
        } => Some((uid, Bytes::copy_from_slice(data))),
        _ => None,
    })
}

/// The UID and attributes of a FETCH response for one of `wanted` (servers may send
/// FETCH responses for other messages, e.g. flag changes by another client).
fn fetch_of<'r, 'a>(
    resp: &'r Response<'a>,
    wanted: &BTreeSet<u32>,
) -> Option<(u32, &'r [AttributeValue<'a>])> {
    let Response::Fetch(_, attrs) = resp else {
        return None;
    };
    let uid = attrs.iter().find_map(|a| match a {
        AttributeValue::Uid(u) => Some(*u),
        _ => None,
    })?;
    wanted.contains(&uid).then_some((uid, attrs.as_slice()))
}

fn too_large(uid: u32, size: u64) -> FetchedMessage {
    FetchedMessage {
        uid,
        size,
        raw: Bytes::new(),
        too_large: true,
    }
}

/// Reads the server greeting; `BYE` (busy, refusing) or PREAUTH (cannot log in as the
/// configured user) is an error.
async fn read_greeting<T>(client: &mut Client<T>) -> Result<(), MailboxError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug,
{
    let greeting = client
        .read_response()
        .await
        .map_err(|e| io_error("greeting", e))?
        .ok_or_else(|| MailboxError::Bye("connection ended before the greeting".into()))?;
    match greeting.parsed() {
        Response::Data {
            status: Status::Ok, ..
        } => Ok(()),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(MailboxError::Bye(clip(
            outcome.information.as_deref().unwrap_or("BYE"),
        ))),
        other => Err(MailboxError::Protocol(clip(&format!(
            "unexpected greeting: {other:?}"
        )))),
    }
}

/// `name` as an IMAP quoted string (`&` written `&-` as modified UTF-7 wants).
fn quote(name: &str) -> Result<String, MailboxError> {
    check_folder_name("folder", name).map_err(MailboxError::Config)?;
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '&' => out.push_str("&-"),
            _ => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_without_password_fails_before_the_network() {
        let c = ImapConfig {
            host: "imap.invalid".into(),
            ..ImapConfig::default()
        };
        let err = Mailbox::connect(&c).await.unwrap_err();
        assert!(matches!(err, MailboxError::Config(_)), "{err:?}");
        assert!(!err.is_transient());
    }

    #[test]
    fn folder_names_are_quoted() {
        assert_eq!(quote("INBOX").unwrap(), "\"INBOX\"");
        assert_eq!(quote("A \"b\" \\c").unwrap(), "\"A \\\"b\\\" \\\\c\"");
        assert_eq!(quote("Reports & Co").unwrap(), "\"Reports &- Co\"");
        assert!(quote("a\r\nb").is_err());
        assert!(quote("").is_err());
    }

    /// Compiles only if every operation can run in a spawned task.
    fn _operations_are_send(mut m: Mailbox, cfg: &ImapConfig) {
        fn send<T: Send>(_: T) {}
        send(Mailbox::connect(cfg));
        send(m.ensure_folder("A"));
        send(m.select("A"));
        send(m.uids());
        send(m.fetch(&[], 0));
        send(m.move_to(&[], "A"));
        send(m.noop());
        send(m.idle(Duration::ZERO, std::future::ready(())));
    }

    #[test]
    fn plain_auth_response() {
        use async_imap::Authenticator;
        let mut a = PlainAuth {
            username: "u",
            password: "p w",
        };
        assert_eq!(a.process(b""), b"\0u\0p w");
    }
}
