//! Connections to mail servers: plain TCP (loopback only) or rustls, with the webpki roots plus
//! an optional extra CA file; and `Watched`, the IMAP transport that gives up on a server silent
//! in the middle of an answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// The webpki roots (Mozilla's, for TLS) and the certificates of a `ca_file` (`ca_pem`, read
/// when the config was loaded), or which of those cannot be a trust anchor. TLS peers are
/// checked against them, and so are S/MIME signers (with `smime_ca_file`).
pub fn roots(ca_pem: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for (n, cert) in ca_pem.map(CertificateDer::pem_slice_iter).into_iter().flatten().enumerate() {
        let cert = cert.map_err(|e| format!("certificate {} cannot be read: {e}", n + 1))?;
        roots.add(cert).map_err(|e| format!("certificate {} cannot be a trusted CA: {e}", n + 1))?;
    }
    Ok(roots)
}

/// A rustls client config trusting `roots(ca_pem)`.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    let roots = roots(ca_pem).map_err(|e| format!("ca_file: {e}"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Upgrades a TCP stream to TLS for `host`.
pub async fn wrap(tcp: TcpStream, host: &str, config: Arc<ClientConfig>) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("bad server name {host}: {e}"))?;
    TlsConnector::from(config).connect(name, tcp).await.map_err(|e| format!("TLS handshake with {host} failed: {e}"))
}

/// Either kind of stream, for clients generic over one transport type.
#[derive(Debug)]
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A transport whose reads fail (`TimedOut`) when the server sends nothing for `limit` while a
/// read waits, and whose writes when it takes nothing for as long: a server, proxy or forgotten
/// NAT mapping that stops in the middle of a response (a FETCH of a backlog, an APPEND) is an
/// error to reconnect from, not a task that waits for ever. TCP keepalive sees only a peer that
/// is gone, not one that is there and silent. The bound is on silence, not on a whole response:
/// a large mail on a slow link still comes in. `set_limit(None)` lifts it where silence is the
/// point (IMAP IDLE).
#[derive(Debug)]
pub struct Watched {
    stream: Transport,
    limit: Option<Duration>,
    /// Armed when a read starts waiting; disarmed by any data.
    silent_until: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Watched {
    /// Unbounded until `set_limit`.
    pub fn new(stream: Transport) -> Watched {
        Watched { stream, limit: None, silent_until: None }
    }

    pub fn set_limit(&mut self, limit: Option<Duration>) {
        self.limit = limit;
        self.silent_until = None;
    }

    #[cfg(test)]
    pub(super) fn into_inner(self) -> Transport {
        self.stream
    }
}

impl Watched {
    /// Passes `progress` on, and bounds how long the stream may make none (a read waiting for
    /// data, or a write for the server to take some).
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        progress: Poll<std::io::Result<T>>,
        waiting: &str,
    ) -> Poll<std::io::Result<T>> {
        if progress.is_ready() {
            self.silent_until = None;
            return progress;
        }
        let Some(limit) = self.limit else { return Poll::Pending };
        let silent_until = self.silent_until.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if silent_until.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.silent_until = None;
        let message = format!("the server {waiting} for {}s in the middle of a response", limit.as_secs_f64());
        Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, message)))
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let progress = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.watch(cx, progress, "sent nothing")
    }
}

/// Writes are bounded too: a server that stops reading (an APPEND's upload) fills the socket's
/// buffer and would hold the write for ever.
impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let progress = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch(cx, progress, "took nothing")
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let progress = Pin::new(&mut this.stream).poll_flush(cx);
        this.watch(cx, progress, "took nothing")
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{Transport, Watched};

    /// A connected pair: our end watched with `limit`, and the server's end.
    async fn pair(limit: Duration) -> (Watched, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (theirs, _) = listener.accept().await.unwrap();
        let mut ours = Watched::new(Transport::Plain(ours));
        ours.set_limit(Some(limit));
        (ours, theirs)
    }

    /// Silence in the middle of a response ends the read; data that keeps coming, however
    /// slowly in all, does not; with the bound lifted (IDLE) silence is waited through.
    #[tokio::test]
    async fn a_read_fails_only_after_the_server_is_silent_for_the_limit() {
        let limit = Duration::from_millis(300);
        let (mut ours, mut theirs) = pair(limit).await;
        let trickle = tokio::spawn(async move {
            for byte in b"12345" {
                tokio::time::sleep(limit / 3).await;
                theirs.write_all(&[*byte]).await.unwrap();
            }
            theirs // kept open, and silent from now on
        });
        let mut got = [0u8; 5];
        ours.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"12345", "five bytes over more than the limit, none late");
        let error = ours.read(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("sent nothing for 0.3s"), "{error}");

        ours.set_limit(None);
        let waited = tokio::time::timeout(limit * 3, ours.read(&mut [0u8; 1])).await;
        assert!(waited.is_err(), "no bound: the read still waits");
        let mut theirs = trickle.await.unwrap();
        theirs.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        ours.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
    }

    /// A server that stops reading (in the middle of an APPEND's upload): once the socket's
    /// buffers are full, the write fails after the limit instead of waiting for ever.
    #[tokio::test]
    async fn a_write_fails_when_the_server_takes_nothing_for_the_limit() {
        let (mut ours, theirs) = pair(Duration::from_millis(300)).await;
        let upload = vec![b'x'; 64 << 20];
        let error = ours.write_all(&upload).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("took nothing for 0.3s"), "{error}");
        drop(theirs);
    }
}
