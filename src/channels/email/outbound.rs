//! SMTP out (lettre over rustls; implicit TLS, STARTTLS, or plain to loopback; AUTH PLAIN/LOGIN
//! or XOAUTH2; pooled sessions, `smtp.rs`). Multipart text+HTML, attachments from the blob
//! store, Message-ID `<msg_….cnv_…@domain>`, In-Reply-To and References from the conversation,
//! Reply-To with the conversation token when `reply_token` is on, and a `[ref:cnv_…]` line at the
//! end of text and HTML when `body_token` is on; `Disposition-Notification-To` (a read receipt
//! request, RFC 8098) when `request_read_receipts` is on. Where the server offers
//! DSN, the envelope id is the message id, so a bounce names the message it is about. 4xx
//! replies are temporary, 5xx permanent.
//! A refused login, a failed OAuth2 refresh or a failed TLS setup makes the channel
//! `Unavailable`: the messages wait for fixed credentials and `/readyz` shows the channel failing.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::Address;

use super::config::{EmailChannelConfig, EncryptWhen, ImapConfig, SmtpConfig, TlsMode};
use super::html_text::html_to_text;
use super::imap::ImapSession;
use super::oauth2::TokenSource;
use super::smtp::{self, Envelope, Pool, Session};
use crate::channels::{Outbound, OutboundMessage, SendError, Sent};
use crate::pipeline::ChannelState;
use crate::stitch::email::{body_marker, is_reply_subject, own_message_id};

pub struct SmtpOutbound {
    /// Where a copy of each sent mail is appended (`sent_folder`).
    sent_copy: Option<Arc<SentCopy>>,
    sessions: Pool,
    settings: Transport,
    from: Mailbox,
    domain: String,
    reply_token: bool,
    body_token: bool,
    request_read_receipts: bool,
    request_delivery_receipts: bool,
    address: String,
    /// Other addresses of ours a reply may come from (`From`), as the message says.
    aliases: Vec<String>,
    /// Signs the mail from the addresses its certificate names (`smime_certificate_file`).
    signer: Option<super::smime_sign::Signer>,
    /// Encrypts the mail to its recipients' OpenPGP keys (`openpgp_encrypt`).
    encryptor: Option<super::openpgp_encrypt::Encryptor>,
    /// Encrypts the mail to its recipients' S/MIME certificates (`smime_encrypt`).
    smime_encryptor: Option<super::smime_encrypt::SmimeEncryptor>,
    /// Our Autocrypt header, by the address of ours the mail is from (`autocrypt::ours`).
    autocrypt: Vec<(String, HeaderValue)>,
    channel: String,
    /// Which Bcc recipients already took their copy of a message (`copies_taken`).
    state: ChannelState,
}

/// The gauge that tells when a channel's signing certificate expires, to alert on
/// (`Outbound::gauges`): recipients' mail clients then show our signature as not valid.
const CERTIFICATE_EXPIRY_GAUGE: &str = "switchboard_smime_certificate_expiry_timestamp_seconds";

/// Says in the log, at start and at each reload, when the signing certificate has expired or
/// expires within 30 days (the gauge `CERTIFICATE_EXPIRY_GAUGE` tells it all the time).
fn report_expiry(channel: &str, expires: Option<u64>) {
    let Some(expires) = expires else { return };
    let now = crate::model::time::now_ms() / 1000;
    let when = crate::model::time::rfc3339(expires as i64 * 1000);
    if (expires as i64) < now {
        tracing::warn!(channel, expired = %when, "the S/MIME signing certificate has expired: recipients see our signature as not valid; renew smime_certificate_file");
    } else if (expires as i64) < now + 30 * 86_400 {
        tracing::warn!(channel, expires = %when, "the S/MIME signing certificate expires within 30 days; renew smime_certificate_file");
    }
}

/// TLS for `host`, trusting the webpki roots and the certificates of a `ca_file` (`ca_pem`).
fn tls_parameters(host: &str, ca_pem: Option<&[u8]>) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(host.to_owned());
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(Certificate::from_pem(pem).map_err(|e| e.to_string())?);
    }
    builder.build_rustls().map_err(|e| e.to_string())
}

/// Where SMTP sessions connect, and how they secure the connection.
pub(super) fn server(smtp: &SmtpConfig) -> Result<smtp::Server, String> {
    let tls = match smtp.tls {
        TlsMode::None => Tls::None,
        TlsMode::Implicit => Tls::Wrapper(tls_parameters(&smtp.host, smtp.ca_pem.as_deref())?),
        TlsMode::Starttls => Tls::Required(tls_parameters(&smtp.host, smtp.ca_pem.as_deref())?),
    };
    Ok(smtp::Server { host: smtp.host.clone(), port: smtp.port, timeout: smtp.timeout.0, tls })
}

/// Where sessions connect and how they log in.
struct Transport {
    server: smtp::Server,
    username: Option<String>,
    password: Option<String>,
    tokens: Option<TokenSource>,
}

impl SmtpOutbound {
    /// `None` when the channel has no `[channels.smtp]`.
    pub fn new(config: &EmailChannelConfig, state: ChannelState) -> Option<SmtpOutbound> {
        let smtp = config.smtp.as_ref()?;
        let server = match server(smtp) {
            Ok(server) => server,
            Err(e) => {
                tracing::error!(channel = %config.id, error = %e, "SMTP TLS setup failed; the channel cannot send");
                return None;
            }
        };
        let settings = Transport {
            server,
            username: smtp.username.clone(),
            password: smtp.password.as_ref().map(|p| p.expose().to_owned()),
            tokens: smtp.oauth2.clone().map(|o| TokenSource::new(o, state.clone())),
        };
        let from = Mailbox::new(config.name.clone(), config.address.parse().ok()?);
        // Validation built this signer once already: it fails here only if the files changed
        // since, and then the channel does not send rather than send unsigned.
        let signer = match (&config.smime_certificate_pem, &config.smime_key) {
            (Some(pem), Some(key)) => {
                match super::smime_sign::Signer::new(pem, key.expose().as_bytes(), config.our_addresses()) {
                    Ok(signer) => {
                        report_expiry(&config.id, signer.expires);
                        Some(signer)
                    }
                    Err(e) => {
                        tracing::error!(channel = %config.id, error = %e, "S/MIME signing identity unusable; the channel cannot send");
                        return None;
                    }
                }
            }
            _ => None,
        };
        let sent_copy = config.imap.as_ref().and_then(|imap| {
            let folder = imap.sent_folder.clone()?;
            let tokens = imap.oauth2.clone().map(|o| TokenSource::new(o, state.clone()));
            let mailbox = super::mutf7::encode(&folder);
            Some(Arc::new(SentCopy { imap: imap.clone(), folder, mailbox, tokens, session: Default::default() }))
        });
        Some(SmtpOutbound {
            sent_copy,
            sessions: Pool::new(smtp.idle_timeout.0),
            settings,
            from,
            domain: config.domain().to_owned(),
            reply_token: config.reply_token,
            body_token: config.body_token,
            request_read_receipts: config.request_read_receipts,
            request_delivery_receipts: config.request_delivery_receipts,
            address: config.address.clone(),
            aliases: config.aliases.clone(),
            signer,
            encryptor: super::openpgp_encrypt::Encryptor::new(config, state.clone()),
            smime_encryptor: super::smime_encrypt::SmimeEncryptor::new(config, state.clone()),
            autocrypt: super::autocrypt::ours(config),
            channel: config.id.clone(),
            state,
        })
    }

    async fn deliver(&self, out: &OutboundMessage) -> Result<Sent, SendError> {
        let permanent = |code: &str, reason: String| SendError::Permanent { code: code.to_owned(), reason };
        let m = &out.message;
        // An internationalised domain goes out in A-labels: a server without SMTPUTF8 refuses it
        // in Unicode, and every server takes it this way.
        let to: Mailbox = super::ascii_domain(&out.recipient)
            .parse()
            .map_err(|e| permanent("bad_address", format!("`{}`: {e}", out.recipient)))?;
        let mailboxes = |field: &str, parties: &[crate::model::Party]| {
            parties
                .iter()
                .map(|p| {
                    let address = super::ascii_domain(&p.address)
                        .parse()
                        .map_err(|e| permanent("bad_address", format!("{field} `{}`: {e}", p.address)))?;
                    Ok(Mailbox::new(p.name.clone(), address))
                })
                .collect::<Result<Vec<Mailbox>, SendError>>()
        };
        let (cc, bcc) = (mailboxes("cc", &m.cc)?, mailboxes("bcc", &m.bcc)?);
        // Bcc recipients are in the envelope only: the mail's header never names them.
        let recipients: Vec<Address> = std::iter::once(&to).chain(&cc).chain(&bcc).map(|m| m.email.clone()).collect();
        let header_id = own_message_id(m.id.as_str(), m.conversation_id.as_str(), &self.domain);
        let subject = match m.subject.as_deref() {
            // "Re: AW: Rechnung" would tell a German customer we cannot write mail.
            Some(s) if !out.thread_refs.is_empty() && !is_reply_subject(s) => format!("Re: {s}"),
            Some(s) => s.to_owned(),
            None => String::new(),
        };
        // The alias the customer wrote to, when the message is from one; the envelope keeps our
        // address, so bounces come back to this mailbox whichever it is.
        let from: Mailbox = match self.aliases.iter().find(|a| a.eq_ignore_ascii_case(&m.from.address)) {
            Some(alias) => Mailbox::new(
                self.from.name.clone(),
                alias.parse().map_err(|e| permanent("bad_address", format!("{e}")))?,
            ),
            None => self.from.clone(),
        };
        let signer = self.signer.as_ref().filter(|signer| signer.signs_for(from.email.as_ref()));
        let from_address = from.email.to_string();
        // Dated now, not when built: an encrypted mail's protected header (built first) has
        // the same date as its outer one.
        let mut builder = lettre::Message::builder()
            .date_now()
            .from(from)
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{header_id}>")));
        for cc in cc {
            builder = builder.cc(cc);
        }
        let header =
            |name: &'static str, value: &str| HeaderValue::new(HeaderName::new_from_ascii_str(name), value.into());
        if self.request_read_receipts && !m.auto_reply {
            // The recipient's mail client may answer with a read receipt (RFC 8098), to the
            // mailbox we read: our message becomes `read`.
            builder = builder.raw_header(header("Disposition-Notification-To", &format!("<{}>", self.address)));
        }
        if let Some((_, autocrypt)) = self.autocrypt.iter().find(|(ours, _)| ours.eq_ignore_ascii_case(&from_address)) {
            // Our key, for the recipient's mail client to encrypt its answer with.
            builder = builder.raw_header(autocrypt.clone());
        }
        if m.auto_reply {
            // RFC 3834: the recipient's automatons (vacation notices) must not answer it;
            // Exchange and Outlook look at X-Auto-Response-Suppress instead.
            builder = builder
                .raw_header(header("Auto-Submitted", "auto-replied"))
                .raw_header(header("X-Auto-Response-Suppress", "All"));
        }
        if self.reply_token {
            let (local, domain) = self.address.split_once('@').unwrap_or((&self.address, &self.domain));
            let token: Mailbox = format!("{local}+{}@{domain}", m.conversation_id)
                .parse()
                .map_err(|e| permanent("bad_address", format!("{e}")))?;
            builder = builder.reply_to(Mailbox::new(self.from.name.clone(), token.email));
        }
        if let Some(parent) = out.in_reply_to_ref.as_ref().or(out.thread_refs.last()) {
            builder = builder.in_reply_to(format!("<{parent}>"));
            let references = out.thread_refs.iter().map(|r| format!("<{r}>")).collect::<Vec<_>>().join(" ");
            builder = builder.references(references);
        }
        let (mut text, mut html) = (m.text.clone(), m.html.clone());
        // HTML alone is what spam filters score (SpamAssassin's MIME_HTML_ONLY) and what text
        // mail clients cannot show: the text alternative is made from it.
        if text.is_none() {
            text = html.as_deref().map(html_to_text).map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        }
        if self.body_token {
            let marker = body_marker(m.conversation_id.as_str());
            if text.is_some() || html.is_none() {
                text = Some(format!("{}\n\n{marker}\n", text.unwrap_or_default().trim_end()));
            }
            html = html.map(|h| with_html_marker(&h, &marker));
        }
        // Parts with a Content-ID are the HTML's inline images (`cid:`): they go beside it in a
        // multipart/related; the rest are attachments. Without HTML nothing shows them inline.
        let (mut inline, mut attached) = (Vec::new(), Vec::new());
        for (attachment, blob) in m.attachments.iter().zip(&out.files) {
            let bytes = blob.read().await.map_err(|e| SendError::Temporary {
                code: "blob_unreadable".into(),
                reason: format!("attachment {}: {e}", attachment.id),
                retry_after: None,
            })?;
            let content_type = ContentType::parse(&attachment.content_type)
                .unwrap_or(ContentType::parse("application/octet-stream").expect("valid"));
            let name = attachment.filename.clone().unwrap_or_else(|| attachment.id.to_string());
            // Files go as base64, whatever they hold: lettre sends an ASCII file as 7bit with its
            // bare line feeds, which SMTP forbids (Postfix refuses or rewrites them) and which a
            // signature made over the mail would no longer match once a server fixed them.
            let bytes = Body::new_with_encoding(bytes, ContentTransferEncoding::Base64).unwrap_or_else(Body::new);
            match attachment.content_id.clone().filter(|_| html.is_some()) {
                Some(cid) => inline.push(Attachment::new_inline_with_name(cid, name).body(bytes, content_type)),
                None => attached.push(Attachment::new(name).body(bytes, content_type)),
            }
        }
        let body = match (text, html, inline.is_empty()) {
            (text, None, _) => MultiPart::alternative().singlepart(SinglePart::plain(text.unwrap_or_default())),
            (Some(text), Some(html), true) => MultiPart::alternative_plain_html(text, html),
            (None, Some(html), true) => MultiPart::alternative().singlepart(SinglePart::html(html)),
            (text, Some(html), false) => {
                let related = MultiPart::related().singlepart(SinglePart::html(html));
                let related = inline.into_iter().fold(related, |related, part| related.singlepart(part));
                match text {
                    Some(text) => MultiPart::alternative().singlepart(SinglePart::plain(text)).multipart(related),
                    None => MultiPart::alternative().multipart(related),
                }
            }
        };
        let mixed = attached.into_iter().fold(MultiPart::mixed().multipart(body), |mixed, part| mixed.singlepart(part));
        let (mail, encryption, bcc_copies) = self.protect(builder, mixed, signer, out).await?;
        let mail = mail.formatted();
        let envelope = |to| Envelope {
            from: &self.from.email,
            to,
            envid: m.id.as_str(),
            notify_success: self.request_delivery_receipts,
        };
        let failed = |e: smtp::TransactionError| match e.refused {
            Some(address) => refused_recipient(&e.error, &address),
            None => classify(&e.error),
        };
        let mut session = self.session().await?;
        // Bcc recipients with a copy of their own get it first: a copy that fails fails the
        // message before the others have it. Each copy the server takes is recorded at once,
        // so a retry (a copy or the mail itself refused for now) sends no copy twice; the
        // record goes with the message's job.
        let taken_key = crate::store::outbound::send_progress_key(m.id.as_str(), "bcc-copies-taken");
        let mut taken = if bcc_copies.is_empty() { Vec::new() } else { copies_taken(&self.state, &taken_key).await };
        for (copy, bcc) in bcc_copies.iter().zip(&bcc) {
            let address = bcc.email.to_string();
            if taken.iter().any(|t| t.eq_ignore_ascii_case(&address)) {
                tracing::info!(channel = %self.channel, message_id = %m.id, bcc = %address,
                    "the Bcc copy was taken on an earlier attempt; not sent again");
                continue;
            }
            session.send(&envelope(std::slice::from_ref(&bcc.email)), &copy.formatted()).await.map_err(failed)?;
            taken.push(address);
            if let Err(e) = self.state.set(&taken_key, &taken.join("\n")).await {
                // A retry would send this copy again: better twice than not at all.
                tracing::warn!(channel = %self.channel, message_id = %m.id, error = %e,
                    "could not record a Bcc copy as sent; a retry would send it again");
            }
        }
        // Bcc recipients with a copy of their own are not in the mail's envelope.
        let (to_and_cc, _) = recipients.split_at(recipients.len() - bcc.len());
        let mail_recipients = if bcc_copies.is_empty() { &recipients[..] } else { to_and_cc };
        session.send(&envelope(mail_recipients), &mail).await.map_err(failed)?;
        self.sessions.give_back(session);
        if let Some(copy) = self.sent_copy.clone() {
            let mail = with_bcc_header(mail, &bcc);
            // In the background: the mail is sent, and neither its status nor the send timeout
            // may wait for the copy (a timeout here would send it twice).
            tokio::spawn(async move { copy.append(&mail).await });
        }
        Ok(Sent { provider_message_id: Some(header_id.clone()), thread_ref: Some(header_id), encryption })
    }

    /// The mail of `builder` with the body `mixed`, encrypted when the channel says so: with
    /// OpenPGP when every recipient has a key (our OpenPGP key signs inside, no S/MIME
    /// signature), else with S/MIME when every one has a certificate (our S/MIME signature
    /// inside); else in clear, S/MIME-signed by `signer` when it signs for the sender. With
    /// what the message says of its encryption, and, when S/MIME encrypts (whose EnvelopedData
    /// names every certificate it is encrypted to), a copy for each Bcc recipient, in order,
    /// encrypted to theirs alone: the mail itself is then for To and Cc only.
    async fn protect(
        &self,
        mut builder: lettre::message::MessageBuilder,
        mixed: MultiPart,
        signer: Option<&super::smime_sign::Signer>,
        out: &OutboundMessage,
    ) -> Result<(lettre::Message, Option<crate::model::MailEncryption>, Vec<lettre::Message>), SendError> {
        let permanent = |code: &str, reason: String| SendError::Permanent { code: code.to_owned(), reason };
        let m = &out.message;
        let named: Vec<&str> =
            std::iter::once(out.recipient.as_str()).chain(m.cc.iter().map(|p| p.address.as_str())).collect();
        let hidden: Vec<&str> = m.bcc.iter().map(|p| p.address.as_str()).collect();
        let openpgp = match &self.encryptor {
            Some(encryptor) => Some((encryptor, encryptor.keys(&named, &hidden).await)),
            None => None,
        };
        // Certificates are looked up only when OpenPGP does not encrypt.
        let smime = match &self.smime_encryptor {
            Some(encryptor) if !matches!(openpgp, Some((_, Ok(_)))) => {
                let certificates = async {
                    let mut each_hidden = Vec::new();
                    for address in &hidden {
                        each_hidden.push(encryptor.certificates(&[address]).await?);
                    }
                    Ok((encryptor.certificates(&named).await?, each_hidden))
                };
                Some((encryptor, certificates.await))
            }
            _ => None,
        };
        let sign = |content: MultiPart| match signer {
            Some(signer) => signer.sign(content, crate::model::time::now_ms()).map_err(|e| permanent("smime_sign", e)),
            None => Ok(content),
        };
        let mut bcc_copies = Vec::new();
        let (mail, encryption) = match (openpgp, smime) {
            (Some((encryptor, Ok(keys))), _) => {
                // The header as it would go out, for the encrypted part to carry.
                let header = builder.clone().multipart(MultiPart::mixed().build());
                let header = header.map_err(|e| permanent("build", e.to_string()))?;
                let encrypted = encryptor.encrypt(mixed, header.headers(), keys);
                let (encrypted, encryption) = encrypted.map_err(|(code, reason)| permanent(code, reason))?;
                if encryptor.hides_subject() {
                    builder = builder.subject(super::openpgp_encrypt::HIDDEN_SUBJECT);
                }
                (builder.multipart(encrypted), Some(encryption))
            }
            (_, Some((encryptor, Ok((certificates, each_hidden))))) => {
                let entity = sign(mixed)?.formatted();
                let encrypt = |certificates| {
                    encryptor.encrypt(&entity, certificates).map_err(|reason| permanent("smime_encrypt", reason))
                };
                let (encrypted, mut encryption) = encrypt(certificates)?;
                for certificates in each_hidden {
                    let copy = builder.clone().singlepart(encrypt(certificates)?.0);
                    bcc_copies.push(copy.map_err(|e| permanent("build", e.to_string()))?);
                }
                if !hidden.is_empty() {
                    let each = hidden.join(", ");
                    encryption.detail += &format!("; Bcc {each} each in a copy of their own, encrypted to theirs");
                }
                (builder.singlepart(encrypted), Some(encryption))
            }
            (openpgp, smime) => {
                let refusals = [
                    openpgp.and_then(|(e, keys)| Some((e.policy(), keys.err()?))),
                    smime.and_then(|(e, certificates)| Some((e.policy(), certificates.err()?))),
                ];
                if let Some((_, (code, reason))) =
                    refusals.iter().flatten().find(|(policy, _)| *policy == EncryptWhen::Always)
                {
                    return Err(permanent(code, format!("{reason}, and the channel always encrypts: not sent")));
                }
                let reasons: Vec<&str> = refusals.iter().flatten().map(|(_, (_, reason))| reason.as_str()).collect();
                // Said, in the log and on the message, so that an operator and the helpdesk can
                // tell that a reply went in clear, and why.
                let clear = (!reasons.is_empty()).then(|| {
                    let detail = format!("sent in clear (when_possible): {}", reasons.join("; "));
                    tracing::info!(channel = %self.channel, message_id = %m.id, "{detail}");
                    crate::model::MailEncryption { kind: "none".into(), decrypted: false, detail }
                });
                (builder.multipart(sign(mixed)?), clear)
            }
        };
        Ok((mail.map_err(|e| permanent("build", e.to_string()))?, encryption, bcc_copies))
    }

    /// An idle session, or a new one logged in with the password or a current OAuth2 access
    /// token (a session stays logged in when its token later expires).
    async fn session(&self) -> Result<Session, SendError> {
        if let Some(session) = self.sessions.take().await {
            return Ok(session);
        }
        let secret = match &self.settings.tokens {
            Some(tokens) => Some(
                tokens
                    .access_token()
                    .await
                    .map_err(|reason| SendError::Unavailable { code: "oauth2".into(), reason })?,
            ),
            None => self.settings.password.clone(),
        };
        let login = smtp::login(self.settings.username.as_deref(), secret.clone(), self.settings.tokens.is_some());
        let session = Session::open(&self.settings.server, login).await.map_err(|e| classify(&e));
        if let (Err(SendError::Unavailable { code, .. }), Some(tokens), Some(token)) =
            (&session, &self.settings.tokens, &secret)
        {
            if code.starts_with("smtp_53") {
                tokens.refused(token).await;
            }
        }
        let session = session?;
        tracing::debug!(host = %self.settings.server.host, dsn = session.offers_dsn(), "SMTP session opened");
        Ok(session)
    }
}

/// The Bcc recipients (one address a line under `key`) whose copy of a message a server took,
/// while the message itself still waits to be sent.
async fn copies_taken(state: &ChannelState, key: &str) -> Vec<String> {
    match state.get(key).await {
        Ok(value) => value.unwrap_or_default().lines().map(str::to_owned).collect(),
        Err(e) => {
            // Not knowing, every copy is sent: twice rather than not at all.
            tracing::warn!(channel = state.channel_id(), key, error = %e, "cannot read which Bcc copies were sent");
            Vec::new()
        }
    }
}

/// The Sent folder's copy of a mail names its Bcc recipients, as a mail client's does: the
/// only place an agent can see who was copied blind. The mail sent never does.
fn with_bcc_header(mail: Vec<u8>, bcc: &[Mailbox]) -> Vec<u8> {
    if bcc.is_empty() {
        return mail;
    }
    let list = bcc.iter().map(|m| m.email.to_string()).collect::<Vec<_>>().join(",\r\n ");
    let mut copy = format!("Bcc: {list}\r\n").into_bytes();
    copy.extend_from_slice(&mail);
    copy
}

/// Copies of sent mail, appended to the Sent folder like a mail client does.
struct SentCopy {
    imap: ImapConfig,
    /// `sent_folder` as configured (for logs)...
    folder: String,
    /// ...and as IMAP names it (modified UTF-7).
    mailbox: String,
    tokens: Option<TokenSource>,
    /// The IMAP session the copies go through, kept between sends: one login per session rather
    /// than per mail (servers throttle, and lock out, accounts that log in too often). Appends
    /// take turns on it.
    session: tokio::sync::Mutex<Option<ImapSession>>,
}

impl SentCopy {
    /// Appends through the kept session, or, when there is none or the append fails on it
    /// (the server logged it out meanwhile), through a fresh login, once. A failure is logged;
    /// the mail itself is sent. A connection that died or stalls does not hold the session's
    /// lock for ever: the login is bounded by `imap.timeout`, and so is silence in the upload
    /// and the answer (`tls::Watched`), while a large mail on a slow link still goes up.
    async fn append(&self, bytes: &[u8]) {
        let mut kept = self.session.lock().await;
        if let Some(mut session) = kept.take() {
            if session.append(&self.mailbox, Some("(\\Seen)"), None, bytes).await.is_ok() {
                *kept = Some(session);
                return;
            }
        }
        let fresh = async {
            let mut session = super::imap::login(&self.imap, self.tokens.as_ref()).await?;
            session.append(&self.mailbox, Some("(\\Seen)"), None, bytes).await?;
            Ok::<_, super::imap::ImapError>(session)
        };
        match fresh.await {
            Ok(session) => *kept = Some(session),
            Err(e) => tracing::warn!(folder = %self.folder, error = %e, "sent, but the copy to the Sent folder failed"),
        }
    }

    /// Logs the kept session out, after the append under way (if any); gives up after a few
    /// seconds, so that a stop is not held up.
    async fn close(&self) {
        let logout = async {
            if let Some(mut session) = self.session.lock().await.take() {
                let _ = session.logout().await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), logout).await;
    }
}

/// `html` with `marker` as a last, small paragraph (before `</body>` when there is one). Visible
/// on purpose: hidden text is what spam filters look for.
fn with_html_marker(html: &str, marker: &str) -> String {
    let paragraph = format!("<p style=\"color:#888888;font-size:11px\">{marker}</p>");
    match html.to_ascii_lowercase().rfind("</body>") {
        Some(at) => format!("{}{paragraph}{}", &html[..at], &html[at..]),
        None => format!("{html}{paragraph}"),
    }
}

/// A recipient the server refused at RCPT: the mail went to nobody. Permanent (5xx) or
/// temporary (4xx) for the message as a whole, naming the address, so that the helpdesk can send
/// again without it.
fn refused_recipient(e: &lettre::transport::smtp::Error, address: &Address) -> SendError {
    match classify(e) {
        SendError::Permanent { code, reason } => {
            SendError::Permanent { code, reason: format!("recipient `{address}` refused: {reason}") }
        }
        SendError::Temporary { code, reason, retry_after } => SendError::Temporary {
            code,
            reason: format!("recipient `{address}` refused for now: {reason}"),
            retry_after,
        },
        other => other,
    }
}

/// What a failed SMTP transaction means for the message and for the channel.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    let reason = e.to_string();
    if smtp::login_refused(e) {
        return SendError::Unavailable { code: format!("smtp_{code}"), reason: format!("login refused: {reason}") };
    }
    if e.is_tls() {
        return SendError::Unavailable { code: "smtp_tls".into(), reason };
    }
    // lettre's own refusals before any mail moves, e.g. no authentication mechanism in common.
    if e.is_client() {
        return SendError::Unavailable { code: "smtp_client".into(), reason };
    }
    if e.is_permanent() {
        return SendError::Permanent { code: format!("smtp_{code}"), reason };
    }
    let code = if code.is_empty() { "smtp_transport".to_owned() } else { format!("smtp_{code}") };
    SendError::Temporary { code, reason, retry_after: None }
}

impl Outbound for SmtpOutbound {
    fn send<'a>(&'a self, message: &'a OutboundMessage) -> BoxFuture<'a, Result<Sent, SendError>> {
        self.deliver(message).boxed()
    }

    fn gauges(&self) -> Vec<(&'static str, f64)> {
        let expires = self.signer.as_ref().and_then(|signer| signer.expires);
        expires.map(|expires| (CERTIFICATE_EXPIRY_GAUGE, expires as f64)).into_iter().collect()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async {
            let copies = async {
                if let Some(copy) = &self.sent_copy {
                    copy.close().await;
                }
            };
            futures_util::future::join(self.sessions.close(), copies).await;
        }
        .boxed()
    }
}
