//! Mailbox: the IMAP side of the daemon.
//!
//! In: an [`ImapConfig`] (one `[imap]` section or one extra account). Out: an authenticated
//! [`Mailbox`] that lists the UIDs of a folder ([`Mailbox::uids`]), hands out raw messages
//! by UID ([`Mailbox::fetch`], never marking them `\Seen`, bodies over the size cap left on
//! the server), moves them to the archive or invalid folder afterwards
//! ([`Mailbox::move_to`]) and waits for new mail ([`Mailbox::idle`], IDLE or NOOP polling).
//!
//! What can fail ([`MailboxError`]): the TCP connection, TLS (an untrusted certificate is
//! permanent), the login (wrong credentials are permanent, `[UNAVAILABLE]` is transient),
//! a command the server refuses (`NO`, transient unless its response code says otherwise)
//! or calls malformed (`BAD`, permanent), a `BYE`, a timeout. After a `NO` or `BAD` the
//! session is still usable; after any other error its state is unknown: drop the
//! [`Mailbox`] and connect again.
//!
//! Quirks of `async-imap` 0.12 that shape this module:
//! - its stream-returning commands (`uid_fetch`, `uid_search`, `uid_store`, `list`,
//!   `noop`, `capabilities`, `expunge`) drop the tagged completion without looking at it,
//!   so a `NO` or `BAD` reads as an empty success. Every command after login is
//!   therefore run by one helper here that reads the responses itself and checks the
//!   tagged status; the library's `login`, `authenticate`, `logout` and IDLE (`init`,
//!   `wait_with_timeout`, `done`) do check it and are used as they are.
//! - its `select` quotes the name but does not write `&` as `&-` (modified UTF-7):
//!   dovecot refuses such a name. Folder names are quoted here.
//! - IDLE's `wait_with_timeout` timeout is an inactivity timeout that every
//!   `* OK Still here` resets (dovecot sends one every 2 minutes), so it alone never
//!   ends a 25-minute IDLE; the deadline is enforced here. The connection closing during
//!   IDLE is reported as `ManualInterrupt`.
//! - its parse errors quote the whole unparsed buffer (a message body, megabytes);
//!   error texts are cut to [`MAX_ERROR_TEXT`] here.
//!
//! Split by concern: [`session`] (connect, login, the commands), [`tls`], [`uid_set`],
//! [`error`]. The account's settings are [`crate::config::ImapConfig`].

pub mod error;
pub mod session;
pub mod tls;
pub mod uid_set;

pub use error::{MailboxError, MAX_ERROR_TEXT};
pub use session::{Capabilities, FetchedMessage, IdleOutcome, Mailbox, Selected};
pub use uid_set::{uid_sets, MAX_UID_SET_CHARS};
