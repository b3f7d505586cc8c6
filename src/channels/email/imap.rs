//! IMAP connections: connecting (implicit TLS, STARTTLS or, to a loopback host, none) with TCP
//! keepalive, logging in (a password, or XOAUTH2 with a token source or a bare access token),
//! bounding every wait by `imap.timeout`, and the errors a session ends with, classified by
//! what the folder loop does next. Used by the folder loops (`inbound.rs`), the Sent-folder
//! copy (`outbound.rs`) and the checks (`probe.rs`); what a session does once logged in is
//! theirs.

use std::time::Duration;

use async_imap::{Client, Session};
use tokio::net::TcpStream;

use super::config::{ImapConfig, TlsMode};
use super::oauth2::{xoauth2, TokenSource, XOAuth2};
use super::tls::{self, Transport, Watched};

pub(super) type ImapSession = Session<Watched>;

/// Why an IMAP session ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum ImapError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("login refused: {0}")]
    Auth(String),
    #[error("IMAP error: {0}")]
    Protocol(String),
    /// The connection ended under the session (the server closed it, or it broke).
    #[error("connection lost: {0}")]
    Dropped(String),
    /// The server answered NO: it refuses this command, the session itself still stands.
    #[error("refused: {0}")]
    Refused(String),
    /// The server stopped answering (`imap.timeout`).
    #[error("{0}")]
    Timeout(String),
    #[error("store error: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl ImapError {
    pub(super) fn code(&self) -> &'static str {
        match self {
            ImapError::Connect(_) | ImapError::Dropped(_) => "imap_connect",
            ImapError::Timeout(_) => "imap_timeout",
            ImapError::Auth(_) => "imap_auth",
            ImapError::Protocol(_) | ImapError::Refused(_) => "imap_protocol",
            ImapError::Store(_) => "store",
        }
    }
}

impl From<async_imap::error::Error> for ImapError {
    fn from(e: async_imap::error::Error) -> Self {
        match e {
            // `Watched`: the server fell silent in the middle of a response.
            async_imap::error::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                ImapError::Timeout(e.to_string())
            }
            async_imap::error::Error::Io(e) => ImapError::Dropped(e.to_string()),
            async_imap::error::Error::ConnectionLost => ImapError::Dropped("the server closed the connection".into()),
            other => ImapError::Protocol(other.to_string()),
        }
    }
}

/// How soon a connection whose peer vanished (a NAT or firewall forgetting it, a server that
/// died without a word) is known dead: TCP keepalive probes after this much silence, then every
/// `KEEPALIVE_INTERVAL`. Without them a read in IDLE, which `Watched` leaves unbounded, could
/// wait for ever.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// `work` given `imap.timeout`: a server that stops answering is an error to reconnect from,
/// not a task that waits for ever.
pub(super) async fn within<T>(
    imap: &ImapConfig,
    what: &str,
    work: impl std::future::Future<Output = Result<T, ImapError>>,
) -> Result<T, ImapError> {
    tokio::time::timeout(imap.timeout.0, work).await.unwrap_or_else(|_| {
        Err(ImapError::Timeout(format!(
            "{}:{}: no answer to {what} within {}s",
            imap.host,
            imap.port,
            imap.timeout.0.as_secs_f64()
        )))
    })
}

pub(super) async fn connect(imap: &ImapConfig) -> Result<Client<Watched>, ImapError> {
    let tcp = TcpStream::connect((imap.host.as_str(), imap.port))
        .await
        .map_err(|e| ImapError::Connect(format!("{}:{}: {e}", imap.host, imap.port)))?;
    let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE_IDLE).with_interval(KEEPALIVE_INTERVAL);
    if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive) {
        tracing::warn!(host = %imap.host, error = %e, "cannot turn on TCP keepalive for IMAP");
    }
    let tls_config = || tls::client_config(imap.ca_pem.as_deref()).map_err(ImapError::Connect);
    let mut client = match imap.tls {
        TlsMode::None => Client::new(Watched::new(Transport::Plain(tcp))),
        TlsMode::Implicit => Client::new(Watched::new(Transport::Tls(Box::new(
            tls::wrap(tcp, &imap.host, tls_config()?).await.map_err(ImapError::Connect)?,
        )))),
        TlsMode::Starttls => {
            let mut plain = Client::new(tcp);
            plain.read_response().await.map_err(|e| ImapError::Connect(e.to_string()))?;
            plain.run_command_and_check_ok("STARTTLS", None).await?;
            let tcp = plain.into_inner();
            let tls = tls::wrap(tcp, &imap.host, tls_config()?).await.map_err(ImapError::Connect)?;
            return Ok(Client::new(Watched::new(Transport::Tls(Box::new(tls)))));
        }
    };
    client.read_response().await.map_err(|e| ImapError::Connect(format!("no greeting: {e}")))?;
    Ok(client)
}

/// Connects and authenticates (password or XOAUTH2), each attempt within `imap.timeout`.
pub(super) async fn login(imap: &ImapConfig, tokens: Option<&TokenSource>) -> Result<ImapSession, ImapError> {
    let mut session = match tokens {
        None => {
            let password = imap.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
            within(imap, "connecting and logging in", async {
                let client = connect(imap).await?;
                client.login(&imap.username, &password).await.map_err(|(e, _)| ImapError::Auth(e.to_string()))
            })
            .await?
        }
        Some(tokens) => {
            let (token, new) = tokens.access_token_telling_if_new().await.map_err(ImapError::Auth)?;
            match xoauth2_login(imap, tokens, &token).await {
                // A token can die before its time (its grant revoked at the provider, the
                // password changed): the provider is asked again at once, and its answer —
                // a new token, or why there is none — is what counts. Not when the refused
                // token is new: asking again would only repeat it (a server refusing every
                // token, a username that is not the grant's account).
                Err(ImapError::Auth(_)) if !new => {
                    let token = tokens.access_token().await.map_err(ImapError::Auth)?;
                    xoauth2_login(imap, tokens, &token).await?
                }
                other => other?,
            }
        }
    };
    // The login was bounded as a whole; from here on, silence within each answer is.
    session.get_mut().set_limit(Some(imap.timeout.0));
    Ok(session)
}

/// One XOAUTH2 login with `token`; a refused token is not handed out again.
async fn xoauth2_login(imap: &ImapConfig, tokens: &TokenSource, token: &str) -> Result<ImapSession, ImapError> {
    let logged_in = login_with_token(imap, token).await;
    if let Err(ImapError::Auth(_)) = &logged_in {
        tokens.refused(token).await;
    }
    logged_in
}

/// One XOAUTH2 login with an access token as it is (`switchboard oauth2` checks a new grant's).
pub(super) async fn login_with_token(imap: &ImapConfig, token: &str) -> Result<ImapSession, ImapError> {
    within(imap, "connecting and logging in", async {
        let client = connect(imap).await?;
        let auth = XOAuth2(xoauth2(&imap.username, token));
        client.authenticate("XOAUTH2", auth).await.map_err(|(e, _)| ImapError::Auth(e.to_string()))
    })
    .await
}

/// A command's error, where a NO is the server refusing this command, not the session's end.
pub(super) fn imap_error(e: async_imap::error::Error) -> ImapError {
    match e {
        async_imap::error::Error::No(reason) => ImapError::Refused(reason),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    /// IMAP connections ask the kernel to probe a silent peer, so a connection that died
    /// without a word (NAT state forgotten) ends a FETCH or IDLE read instead of hanging it.
    #[tokio::test]
    async fn imap_connections_have_tcp_keepalive() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"* OK ready\r\n").await.unwrap();
            socket
        });
        let toml =
            format!("host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"u\"\nfolders = [\"INBOX\"]\n");
        let imap: super::ImapConfig = toml::from_str(&toml).unwrap();
        let client = super::connect(&imap).await.unwrap();
        let super::Transport::Plain(tcp) = client.into_inner().into_inner() else { panic!("a plain connection") };
        let socket = socket2::SockRef::from(&tcp);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), super::KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), super::KEEPALIVE_INTERVAL);
        drop(server.await.unwrap());
    }
}
