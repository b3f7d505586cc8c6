//! SMTP client sessions: lettre's connection (TLS, STARTTLS, AUTH) driven by us, and a small pool
//! of idle sessions.
//!
//! Not lettre's transport, because it cannot put parameters on `MAIL FROM` and `RCPT TO`. With
//! them, on a server that offers DSN (RFC 3461), each mail carries `ENVID=<our message id>` and
//! `RET=HDRS`, and its recipient `NOTIFY=FAILURE,DELAY` (`SUCCESS,FAILURE,DELAY` when the channel
//! asks for delivery receipts) and `ORCPT`: the report that comes back names the message in
//! `Original-Envelope-Id`, even when the original's headers are cut off or its Message-ID was
//! rewritten on the way. A server without DSN gets plain commands (it
//! would refuse unknown parameters).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Tls};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter, RcptParameter};
use lettre::transport::smtp::Error;
use lettre::Address;

/// Idle sessions kept for reuse.
const MAX_IDLE: usize = 4;
/// How long QUIT may take when sessions are closed at shutdown or reload.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how to connect.
pub(super) struct Server {
    pub host: String,
    pub port: u16,
    pub timeout: Duration,
    pub tls: Tls,
}

/// One logged-in session.
pub(super) struct Session {
    conn: AsyncSmtpConnection,
    /// The server offers DSN (RFC 3461).
    dsn: bool,
    idle_since: Instant,
}

/// One mail's envelope: `envid` names it in delivery status notifications.
pub(super) struct Envelope<'a> {
    pub from: &'a Address,
    /// The recipient first, then the Cc recipients.
    pub to: &'a [Address],
    pub envid: &'a str,
    /// Ask for a DSN on successful delivery too (`request_delivery_receipts`).
    pub notify_success: bool,
}

/// A failed mail transaction: the server's (or the connection's) error, and the recipient the
/// server refused when that was what failed.
#[derive(Debug)]
pub(super) struct TransactionError {
    pub error: Error,
    pub refused: Option<Address>,
}

impl From<Error> for TransactionError {
    fn from(error: Error) -> Self {
        TransactionError { error, refused: None }
    }
}

/// What `Session::open` logs in with: `secret` is a password (AUTH PLAIN, else LOGIN) or, with
/// `oauth2`, an access token (XOAUTH2). No login without both a user name and a secret.
pub fn login(
    username: Option<&str>,
    secret: Option<String>,
    oauth2: bool,
) -> Option<(Credentials, &'static [Mechanism])> {
    let mechanisms: &'static [Mechanism] =
        if oauth2 { &[Mechanism::Xoauth2] } else { &[Mechanism::Plain, Mechanism::Login] };
    Some((Credentials::new(username?.to_owned(), secret?), mechanisms))
}

/// Whether the server refused the login itself (530/534/535/538: authentication required, too
/// weak, refused, needs encryption), not the connection or the mail.
pub(super) fn login_refused(e: &Error) -> bool {
    e.status().is_some_and(|code| code.to_string().starts_with("53"))
}

impl Session {
    /// Connects (implicit TLS or STARTTLS as configured), learns whether the server offers DSN,
    /// and logs in when `login` is given.
    pub async fn open(server: &Server, login: Option<(Credentials, &[Mechanism])>) -> Result<Session, Error> {
        let hello = ClientId::default();
        let wrapper = match &server.tls {
            Tls::Wrapper(parameters) => Some(parameters.clone()),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (server.host.as_str(), server.port),
            Some(server.timeout),
            &hello,
            wrapper,
            None,
        )
        .await?;
        if let Tls::Required(parameters) = &server.tls {
            // Refused by lettre when the server does not offer STARTTLS: never in the clear.
            conn.starttls(parameters.clone(), &hello).await?;
        }
        // lettre keeps only the extensions it knows: ask for the list again (RFC 5321 allows
        // EHLO at any point; done before AUTH, which is then the session's last change).
        let ehlo = conn.command(Ehlo::new(hello)).await?;
        let dsn = ehlo.message().skip(1).any(|line| {
            line.split_ascii_whitespace().next().is_some_and(|keyword| keyword.eq_ignore_ascii_case("DSN"))
        });
        if let Some((credentials, mechanisms)) = login {
            conn.auth(mechanisms, &credentials).await?;
        }
        Ok(Session { conn, dsn, idle_since: Instant::now() })
    }

    /// One mail transaction, to every recipient or to none: a refused recipient ends it before
    /// DATA (as mail clients do), so that retrying, or sending again without that address, never
    /// gives the others the mail twice. On an error the session is ended (QUIT, unless the
    /// connection is already broken) and must not be reused.
    pub async fn send(&mut self, envelope: &Envelope<'_>, mail: &[u8]) -> Result<(), TransactionError> {
        let result = self.transaction(envelope, mail).await;
        if result.is_err() {
            self.conn.abort().await;
        }
        result
    }

    async fn transaction(&mut self, envelope: &Envelope<'_>, mail: &[u8]) -> Result<(), TransactionError> {
        // As lettre's own transaction does, except that a server lacking 8BITMIME or SMTPUTF8
        // gets the mail anyway and answers for itself (lettre's builder writes ASCII bodies, so
        // this is about internationalised addresses).
        let info = self.conn.server_info();
        let mut mail_parameters = Vec::new();
        if !mail.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            mail_parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let ascii = |address: &Address| AsRef::<str>::as_ref(address).is_ascii();
        let non_ascii = !ascii(envelope.from) || !envelope.to.iter().all(ascii);
        if non_ascii && info.supports_feature(Extension::SmtpUtfEight) {
            mail_parameters.push(MailParameter::SmtpUtfEight);
        }
        if self.dsn {
            // lettre writes the values as xtext (RFC 3461 §4).
            let other =
                |keyword: &str, value: String| MailParameter::Other { keyword: keyword.into(), value: Some(value) };
            mail_parameters.push(other("ENVID", envelope.envid.to_owned()));
            mail_parameters.push(other("RET", "HDRS".into()));
        }
        self.conn.command(Mail::new(Some(envelope.from.clone()), mail_parameters)).await?;
        for to in envelope.to {
            let mut rcpt_parameters = Vec::new();
            if self.dsn {
                let other =
                    |keyword: &str, value: String| RcptParameter::Other { keyword: keyword.into(), value: Some(value) };
                let notify = if envelope.notify_success { "SUCCESS,FAILURE,DELAY" } else { "FAILURE,DELAY" };
                rcpt_parameters.push(other("NOTIFY", notify.into()));
                // An internationalised address would need RFC 6533's utf-8 type: left out rather
                // than risk a refused RCPT.
                if ascii(to) {
                    rcpt_parameters.push(other("ORCPT", format!("rfc822;{to}")));
                }
            }
            self.conn
                .command(Rcpt::new(to.clone(), rcpt_parameters))
                .await
                .map_err(|error| TransactionError { error, refused: Some(to.clone()) })?;
        }
        self.conn.command(Data).await?;
        self.conn.message(mail).await?;
        Ok(())
    }

    pub fn offers_dsn(&self) -> bool {
        self.dsn
    }

    /// Whether the server offers `mechanism` for AUTH (as it said after TLS).
    pub fn offers_auth(&self, mechanism: Mechanism) -> bool {
        self.conn.server_info().supports_auth_mechanism(mechanism)
    }

    /// Ends the session with QUIT (given `QUIT_TIMEOUT`).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(QUIT_TIMEOUT, self.conn.quit()).await;
    }
}

/// Idle sessions, reused newest first. A session idle for `idle_timeout` (`[channels.smtp]`,
/// default 60 s: servers drop idle clients after a few minutes, RFC 5321 §4.5.3.2.7) is closed
/// with QUIT by a background task, and `close` ends the rest with QUIT at shutdown or when a
/// reload retires the channel: no session is cut off without a word. An `idle_timeout` of zero
/// keeps none (QUIT after every mail).
pub(super) struct Pool {
    idle: Arc<Mutex<Idle>>,
    idle_timeout: Duration,
    reaper: std::sync::OnceLock<()>,
}

#[derive(Default)]
struct Idle {
    sessions: Vec<Session>,
    /// Set by `close`: sessions given back afterwards are ended instead of kept.
    closed: bool,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Pool {
        Pool { idle: Arc::default(), idle_timeout, reaper: std::sync::OnceLock::new() }
    }

    /// An idle session that still answers (NOOP), if there is one.
    pub async fn take(&self) -> Option<Session> {
        loop {
            let mut session = self.idle.lock().expect("pool lock").sessions.pop()?;
            if session.idle_since.elapsed() >= self.idle_timeout {
                drop(tokio::spawn(quit_all(vec![session])));
            } else if session.conn.test_connected().await {
                return Some(session);
            }
        }
    }

    /// Keeps a session that finished its transaction, unless enough are idle already (or the
    /// pool keeps none, or is closed): then it is ended with QUIT.
    pub fn give_back(&self, mut session: Session) {
        session.idle_since = Instant::now();
        if session.conn.has_broken() {
            return;
        }
        let refused = {
            let mut idle = self.idle.lock().expect("pool lock");
            if idle.closed || idle.sessions.len() >= MAX_IDLE || self.idle_timeout.is_zero() {
                Some(session)
            } else {
                idle.sessions.push(session);
                None
            }
        };
        match refused {
            // Not waited for: the mail is sent, its status need not wait for a goodbye.
            Some(session) => drop(tokio::spawn(quit_all(vec![session]))),
            None => self.start_reaper(),
        }
    }

    /// Ends every idle session with QUIT (each given `QUIT_TIMEOUT`), and any given back later.
    pub async fn close(&self) {
        let sessions = {
            let mut idle = self.idle.lock().expect("pool lock");
            idle.closed = true;
            std::mem::take(&mut idle.sessions)
        };
        quit_all(sessions).await;
    }

    fn start_reaper(&self) {
        self.reaper.get_or_init(|| {
            // Ends with the pool (the channel's sending side): only a weak reference is kept.
            let idle = Arc::downgrade(&self.idle);
            let idle_timeout = self.idle_timeout;
            let period = (idle_timeout / 4).max(Duration::from_millis(100));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    let Some(idle) = idle.upgrade() else { return };
                    let expired: Vec<Session> = {
                        let mut idle = idle.lock().expect("pool lock");
                        let (expired, kept) =
                            idle.sessions.drain(..).partition(|s: &Session| s.idle_since.elapsed() >= idle_timeout);
                        idle.sessions = kept;
                        expired
                    };
                    drop(idle);
                    quit_all(expired).await;
                }
            });
        });
    }
}

/// QUIT on each session at once, none waited for longer than `QUIT_TIMEOUT`.
async fn quit_all(sessions: Vec<Session>) {
    futures_util::future::join_all(sessions.into_iter().map(Session::quit)).await;
}
