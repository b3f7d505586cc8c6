//! `[[channels]] type = "email"`: our address, IMAP in, SMTP out.

use std::path::PathBuf;

use serde::Deserialize;

use crate::channels::ChannelLimits;
use crate::config::{self, ConfigDuration, Secret, SecretSource};

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannelConfig {
    pub id: String,
    /// Our address: From of replies; recognises our own mail; base of reply tokens.
    pub address: String,
    /// Display name on replies.
    pub name: Option<String>,
    /// Other addresses whose mail arrives in this mailbox (`info@`, `sales@` forwarded here):
    /// ours like `address`. A reply goes out from the one the customer wrote to.
    #[serde(default)]
    pub aliases: Vec<String>,
    pub imap: Option<ImapConfig>,
    pub smtp: Option<SmtpConfig>,
    /// Put `local+cnv_…@domain` in Reply-To so replies find their conversation even when a
    /// mail system drops the threading headers.
    #[serde(default)]
    pub reply_token: bool,
    /// A mail whose Reply-To names someone other than its From belongs to the Reply-To address
    /// (contact, conversation, where replies go): web contact forms send From `noreply@…` with
    /// the customer in Reply-To. `false`: always the From address.
    #[serde(default = "default_use_reply_to")]
    pub use_reply_to: bool,
    /// Who forwards customers' mail to us (agents, colleagues): addresses, or domains for
    /// everyone at one. A mail one of them forwarded (inline, or the original attached) is the
    /// original sender's: contact, conversation and where replies go, as when the customer had
    /// written to us; `from` stays who forwarded it.
    #[serde(default)]
    pub forwarders: Vec<String>,
    /// End each sent mail's text and HTML with `[ref:cnv_…]`, so a reply that quotes it finds
    /// its conversation even when a relay rewrote our Message-ID and the subject changed.
    #[serde(default)]
    pub body_token: bool,
    /// Ask for a read receipt (`Disposition-Notification-To`, RFC 8098) on each mail sent; a
    /// receipt that comes back makes the message `read` (`message.read`). Mail clients ask
    /// their user first, and many say no: a message without a receipt may well have been read.
    #[serde(default)]
    pub request_read_receipts: bool,
    /// Ask the mail servers on the way for a delivery status notification on success too
    /// (`NOTIFY=SUCCESS`, RFC 3461, where our SMTP server offers DSN): a report that the mail
    /// was `delivered` into the recipient's mailbox, or `relayed` to a server that gives no
    /// further reports (normally the recipient's own: what mail providers count as delivered),
    /// makes the message `delivered` (`message.delivered`).
    #[serde(default)]
    pub request_delivery_receipts: bool,
    /// How far back a reply may be joined to a conversation by subject alone.
    #[serde(default = "default_subject_window")]
    pub subject_window: ConfigDuration,
    /// Largest attachment stored; larger ones are listed under `attachments_skipped`.
    pub max_attachment_bytes: Option<usize>,
    /// Largest mail fetched whole. A larger one is imported from its header alone (sender,
    /// subject, threading) with its body listed under `attachments_skipped`, and stays on the
    /// server: one giant mail must not exhaust a small machine's memory on every retry.
    #[serde(default = "default_max_mail_bytes")]
    pub max_mail_bytes: u64,
    /// Keep every mail's source (`message.eml`, the message's `source`) beside what was parsed
    /// from it, so nothing a lenient MIME parse missed is lost. Off: only a mail that parses to
    /// nothing keeps its source (as an attachment).
    #[serde(default = "default_keep_source")]
    pub keep_source: bool,
    /// The authserv-id of the receiving mail server whose `Authentication-Results` header is
    /// trusted (`mx.google.com`), or `*` for the topmost header whatever its id (Microsoft 365
    /// writes none). See `authentication`. Unset: Gmail's and Microsoft's when the IMAP host is
    /// theirs (`known_authserv_id`), else none; `"none"`: none even then.
    pub authserv_id: Option<String>,
    /// Refuse a mail the receiving server's spam filter marked as spam (`X-Spam-Flag: YES`,
    /// rspamd's `X-Spam: Yes`, Microsoft 365's `SFV:SPM`…, see `report::spam_verdict`): listed
    /// with why, and an operator can still take it in. `false`: import it like any other.
    #[serde(default = "default_refuse_spam")]
    pub refuse_spam: bool,
    /// A PEM file of CA certificates trusted for S/MIME signatures besides the Mozilla roots
    /// built in for TLS (a company's own CA; a public CA's S/MIME-only root). See `smime`.
    pub smime_ca_file: Option<PathBuf>,
    /// Filled by validation: the certificates of `smime_ca_file`.
    #[serde(skip)]
    pub smime_ca_pem: Option<Vec<u8>>,
    /// A file of the OpenPGP public keys whose signatures are trusted (`gpg --export --armor`,
    /// binary or armored, one block or several): a customer's key, once the operator has
    /// decided it is theirs. See `openpgp`.
    pub openpgp_keyring_file: Option<PathBuf>,
    /// Filled by validation: the keys of `openpgp_keyring_file`.
    #[serde(skip)]
    pub openpgp_keys: Vec<pgp::composed::SignedPublicKey>,
    /// Our own OpenPGP secret key, to read mail encrypted to us (`gpg --export-secret-keys
    /// --armor support@example.com`; one key or several): inline, in `openpgp_secret_key_file`
    /// or in the environment variable `openpgp_secret_key_env`; with its passphrase in
    /// `openpgp_passphrase` (or `_file`, `_env`) when it has one. See `openpgp_decrypt`.
    pub openpgp_secret_key: Option<Secret>,
    pub openpgp_secret_key_file: Option<PathBuf>,
    pub openpgp_secret_key_env: Option<String>,
    pub openpgp_passphrase: Option<Secret>,
    pub openpgp_passphrase_file: Option<PathBuf>,
    pub openpgp_passphrase_env: Option<String>,
    /// Filled by validation: the keys of `openpgp_secret_key`, unlocked.
    #[serde(skip)]
    pub openpgp_secret_keys: super::openpgp_decrypt::SecretKeys,
    /// Encrypt the mail we send with OpenPGP to its recipients' keys in `openpgp_keyring_file`,
    /// or else those their mail carried in its Autocrypt header (`autocrypt`): `never`,
    /// `when_possible` (when every recipient has one; in clear otherwise) or `always` (a mail to
    /// a recipient without one is not sent). See `openpgp_encrypt`.
    #[serde(default)]
    pub openpgp_encrypt: EncryptWhen,
    /// Hide the subject of the mail we encrypt: it travels inside the encryption (protected
    /// headers, as Thunderbird, K-9 and mutt write and read them) and the outside says "...".
    /// `false`: the subject stays readable outside, for recipients whose mail client shows no
    /// protected subject (Outlook's GpgOL).
    #[serde(default = "default_openpgp_encrypt_subject")]
    pub openpgp_encrypt_subject: bool,
    /// With `openpgp_secret_key`, the mail we send carries our public key in an Autocrypt
    /// header, so that customers' mail clients (Delta Chat, Thunderbird, K-9/FairEmail) can
    /// encrypt their mail to us. See `autocrypt`.
    #[serde(default = "default_openpgp_autocrypt")]
    pub openpgp_autocrypt: bool,
    /// Sign the mail we send with S/MIME (see `smime_sign`): a PEM file with the certificate for
    /// our address first, then its intermediates, and its private key (PKCS#8, or PKCS#1 for
    /// RSA) inline, in `smime_key_file` or in the environment variable `smime_key_env`.
    pub smime_certificate_file: Option<PathBuf>,
    pub smime_key: Option<Secret>,
    pub smime_key_file: Option<PathBuf>,
    pub smime_key_env: Option<String>,
    /// Filled by validation: the certificates of `smime_certificate_file`.
    #[serde(skip)]
    pub smime_certificate_pem: Option<Vec<u8>>,
    /// Encrypt the mail we send with S/MIME to its recipients' certificates (from their validly
    /// signed mail, or `smime_recipients_file`): `never`, `when_possible` or `always`, as
    /// `openpgp_encrypt` (which is tried first when both are on). See `smime_encrypt`.
    #[serde(default)]
    pub smime_encrypt: EncryptWhen,
    /// A PEM file of certificates of people we may encrypt to besides those their signed mail
    /// brought (and their intermediates), each taken for the addresses it names when it chains
    /// to a trusted CA (the Mozilla roots or `smime_ca_file`) for mail protection.
    pub smime_recipients_file: Option<PathBuf>,
    /// Filled by validation: the certificates of `smime_recipients_file`.
    #[serde(skip)]
    pub smime_recipients_pem: Option<Vec<u8>>,
    #[serde(default)]
    pub limits: ChannelLimits,
}

/// When the mail we send is encrypted (`openpgp_encrypt`, `smime_encrypt`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncryptWhen {
    /// Never (the default).
    #[default]
    Never,
    /// When every recipient has a key (a certificate); in clear otherwise.
    WhenPossible,
    /// Always: a mail to a recipient without one is not sent.
    Always,
}

/// The receiving servers of the mailbox hosts whose Authentication-Results header is known to
/// be theirs and on top of every mail from outside: Gmail's (`mx.google.com`); Microsoft 365's
/// and Outlook.com's, which write no authserv-id (`*`: the topmost header).
fn known_authserv_id(imap_host: &str) -> Option<&'static str> {
    match imap_host.trim_end_matches('.').to_ascii_lowercase().as_str() {
        "imap.gmail.com" | "imap.googlemail.com" => Some("mx.google.com"),
        "outlook.office365.com" | "outlook.office.com" | "imap-mail.outlook.com" => {
            Some(super::authentication::TOPMOST)
        }
        _ => None,
    }
}

/// 64 MiB: above what Gmail (50 MB) accepts, below Microsoft 365's 150 MB ceiling.
fn default_max_mail_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_use_reply_to() -> bool {
    true
}

fn default_refuse_spam() -> bool {
    true
}

fn default_keep_source() -> bool {
    true
}

fn default_openpgp_encrypt_subject() -> bool {
    true
}

fn default_openpgp_autocrypt() -> bool {
    true
}

fn default_subject_window() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(30 * 86_400))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS (IMAP 143, submission 587).
    Starttls,
    /// No TLS: only allowed to a loopback host.
    None,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    pub host: String,
    #[serde(default = "default_imap_port")]
    pub port: u16,
    #[serde(default = "implicit")]
    pub tls: TlsMode,
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// XOAUTH2 instead of a password (Gmail, Microsoft 365).
    pub oauth2: Option<super::oauth2::OAuth2Config>,
    /// Folders to import from.
    #[serde(default = "default_folders")]
    pub folders: Vec<String>,
    /// `keep`, `seen` or `move:<folder>`.
    #[serde(default = "default_after_import")]
    pub after_import: String,
    /// `false`: mail already in a folder when the channel first opens it is left alone; only
    /// mail arriving after that is imported.
    #[serde(default = "default_import_existing")]
    pub import_existing: bool,
    /// Poll interval when the server has no IDLE.
    #[serde(default = "default_poll")]
    pub poll_interval: ConfigDuration,
    /// IDLE is re-issued after this long (servers drop IDLE after 30 minutes).
    #[serde(default = "default_idle")]
    pub idle_timeout: ConfigDuration,
    /// How often a mail the server refused to deliver is asked for again.
    #[serde(default = "default_unfetchable_retry")]
    pub unfetchable_retry: ConfigDuration,
    /// How long connecting (with TLS and login) and opening a folder may take, and how long the
    /// server may send nothing in the middle of an answer (IDLE aside): a server that accepts
    /// the connection, or starts a FETCH, and then says nothing is given up and tried again.
    #[serde(default = "default_imap_timeout")]
    pub timeout: ConfigDuration,
    /// A PEM file of extra trusted CA certificates (private or test servers).
    pub ca_file: Option<PathBuf>,
    /// Filled by validation: the certificates of `ca_file`.
    #[serde(skip)]
    pub ca_pem: Option<Vec<u8>>,
    /// After each send, append a copy of the mail to this folder (e.g. "Sent"), so it shows in
    /// the mailbox like mail sent from a mail client.
    pub sent_folder: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default = "implicit")]
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// XOAUTH2 instead of a password.
    pub oauth2: Option<super::oauth2::OAuth2Config>,
    /// Send timeout.
    #[serde(default = "default_smtp_timeout")]
    pub timeout: ConfigDuration,
    /// How long a session stays open for the next mail; then it is closed with QUIT. `0s`
    /// closes it after every mail.
    #[serde(default = "default_smtp_idle")]
    pub idle_timeout: ConfigDuration,
    /// A PEM file of extra trusted CA certificates.
    pub ca_file: Option<PathBuf>,
    /// Filled by validation: the certificates of `ca_file`.
    #[serde(skip)]
    pub ca_pem: Option<Vec<u8>>,
}

impl SmtpConfig {
    /// Reads `ca_file` into `ca_pem` (validation; `switchboard oauth2` reads the table alone).
    pub fn load_ca_file(&mut self) -> Result<(), String> {
        config::load_ca_file(self.ca_file.as_deref(), &mut self.ca_pem)
    }
}

fn default_imap_port() -> u16 {
    993
}
fn default_smtp_port() -> u16 {
    465
}
fn implicit() -> TlsMode {
    TlsMode::Implicit
}
fn default_folders() -> Vec<String> {
    vec!["INBOX".to_owned()]
}
fn default_import_existing() -> bool {
    true
}
fn default_after_import() -> String {
    "keep".to_owned()
}
fn default_poll() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(60))
}
fn default_idle() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(29 * 60))
}
fn default_unfetchable_retry() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(15 * 60))
}
fn default_imap_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(60))
}
fn default_smtp_idle() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(60))
}
fn default_smtp_timeout() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(60))
}

/// What happens to a mail on the server once it is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterImport {
    Keep,
    Seen,
    Move(String),
}

impl ImapConfig {
    /// Reads `ca_file` into `ca_pem` (validation; `switchboard oauth2` reads the table alone).
    pub fn load_ca_file(&mut self) -> Result<(), String> {
        config::load_ca_file(self.ca_file.as_deref(), &mut self.ca_pem)
    }

    pub fn after_import(&self) -> Option<AfterImport> {
        match self.after_import.as_str() {
            "keep" => Some(AfterImport::Keep),
            "seen" => Some(AfterImport::Seen),
            other => other.strip_prefix("move:").filter(|f| !f.is_empty()).map(|f| AfterImport::Move(f.to_owned())),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl EmailChannelConfig {
    /// The domain of our address (for Message-IDs).
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map_or("localhost", |(_, d)| d)
    }

    /// Reads our OpenPGP secret keys (`openpgp_secret_key`) and unlocks them with
    /// `openpgp_passphrase`; the problem, by key.
    fn load_openpgp_secret_keys(&mut self) -> Result<(), (String, String)> {
        let source = SecretSource {
            inline: &self.openpgp_secret_key,
            file: &self.openpgp_secret_key_file,
            env: &self.openpgp_secret_key_env,
        };
        let key = config::resolve_secret("openpgp_secret_key", source)?;
        let source = SecretSource {
            inline: &self.openpgp_passphrase,
            file: &self.openpgp_passphrase_file,
            env: &self.openpgp_passphrase_env,
        };
        let passphrase = config::resolve_secret("openpgp_passphrase", source)?;
        let Some(key) = key else {
            return match passphrase {
                Some(_) => Err(("openpgp_passphrase".into(), "is set, but openpgp_secret_key is not".into())),
                None => Ok(()),
            };
        };
        // Named by where it came from: the file's path, or the key.
        let name = match (&self.openpgp_secret_key_file, &self.openpgp_secret_key_env) {
            (Some(file), _) => ("openpgp_secret_key_file", file.display().to_string()),
            (_, Some(var)) => ("openpgp_secret_key_env", format!("${var}")),
            _ => ("openpgp_secret_key", "the key".to_owned()),
        };
        let keys = super::openpgp_decrypt::SecretKeys::load(key.expose(), passphrase.as_ref().map(Secret::expose))
            .map_err(|reason| (name.0.to_owned(), format!("{}: {reason}", name.1)))?;
        self.openpgp_secret_keys = keys;
        Ok(())
    }

    /// Reads the S/MIME signing identity (`smime_certificate_file` and its key) and checks that
    /// it can sign for us; the problems, by key.
    fn load_signing_identity(&mut self) -> Vec<(String, String)> {
        let source = SecretSource { inline: &self.smime_key, file: &self.smime_key_file, env: &self.smime_key_env };
        let key = match config::resolve_secret("smime_key", source) {
            Ok(key) => key,
            Err(problem) => return vec![problem],
        };
        let Some(file) = self.smime_certificate_file.clone() else {
            return match key {
                Some(_) => vec![("smime_certificate_file".into(), "is required with smime_key".into())],
                None => Vec::new(),
            };
        };
        let Some(key) = key else {
            return vec![("smime_key".into(), "is required with smime_certificate_file (or smime_key_file)".into())];
        };
        let pem = match std::fs::read(&file) {
            Ok(pem) => pem,
            Err(e) => return vec![("smime_certificate_file".into(), format!("cannot read {}: {e}", file.display()))],
        };
        if let Err(reason) = super::smime_sign::Signer::new(&pem, key.expose().as_bytes(), self.our_addresses()) {
            return vec![("smime_certificate_file".into(), format!("{}: {reason}", file.display()))];
        }
        self.smime_key = Some(key);
        self.smime_certificate_pem = Some(pem);
        Vec::new()
    }

    /// `address`, then the aliases.
    pub fn our_addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.address.as_str()).chain(self.aliases.iter().map(String::as_str))
    }

    /// The one of our addresses `address` is (perhaps with a `+token`), if it is one.
    pub fn own_address(&self, address: &str) -> Option<&str> {
        // Ours are kept in A-labels (see `validate`); a mail may name them in Unicode.
        let address = super::ascii_domain(address.trim());
        self.our_addresses().find(|ours| crate::stitch::email::is_own_address(&address, ours))
    }

    /// Whether `address` is ours: the channel's address or an alias, perhaps with a `+token`.
    pub fn owns(&self, address: &str) -> bool {
        self.own_address(address).is_some()
    }

    /// Whether `address` is one of `forwarders` (named, or at a named domain).
    pub fn is_forwarder(&self, address: &str) -> bool {
        // Asked of every mail: most channels name no forwarders.
        if self.forwarders.is_empty() {
            return false;
        }
        let address = super::ascii_domain(address.trim()).to_ascii_lowercase();
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        self.forwarders.iter().any(|f| if f.contains('@') { *f == address } else { *f == domain })
    }

    pub(crate) fn validate(&mut self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut add = |k: &str, r: String| problems.push((k.to_owned(), r));
        let is_address = |a: &str| match a.rsplit_once('@') {
            Some((local, domain)) => !local.is_empty() && (domain.contains('.') || domain == "localhost"),
            None => false,
        };
        if !is_address(&self.address) {
            add("address", format!("`{}` is not a mail address", self.address));
        }
        // Our addresses as mail names them (an internationalised domain in A-labels): what our
        // From and Message-IDs say, and what incoming To and Cc are compared with.
        self.address = super::ascii_domain(&self.address).into_owned();
        for alias in &mut self.aliases {
            *alias = super::ascii_domain(alias).into_owned();
        }
        if let Some(id) = &mut self.authserv_id {
            *id = id.trim().to_ascii_lowercase();
            if id.is_empty() || id.contains([';', ' ', '(', '"']) {
                add(
                    "authserv_id",
                    format!("`{id}` is not an authserv-id (a host name such as `mx.google.com`, or `*`)"),
                );
            }
        }
        match self.authserv_id.as_deref() {
            Some("none") => self.authserv_id = None,
            None => {
                self.authserv_id = self.imap.as_ref().and_then(|imap| known_authserv_id(&imap.host)).map(str::to_owned)
            }
            Some(_) => {}
        }
        for (i, alias) in self.aliases.iter().enumerate() {
            if !is_address(alias) {
                add(&format!("aliases[{i}]"), format!("`{alias}` is not a mail address"));
            } else if alias.contains('+') {
                add(&format!("aliases[{i}]"), "must not contain `+` (that is how reply tokens are added)".into());
            }
        }
        for (i, forwarder) in self.forwarders.iter_mut().enumerate() {
            let trimmed = forwarder.trim();
            *forwarder = match trimmed.contains('@') {
                true => super::ascii_domain(trimmed).into_owned(),
                false => idna::domain_to_ascii(trimmed).unwrap_or_else(|_| trimmed.to_owned()),
            }
            .to_ascii_lowercase();
            let domain = forwarder.rsplit_once('@').map_or(forwarder.as_str(), |(_, d)| d);
            if (forwarder.contains('@') && !is_address(forwarder)) || !domain.contains('.') || domain.contains(' ') {
                add(&format!("forwarders[{i}]"), format!("`{forwarder}` is neither a mail address nor a domain"));
            }
        }
        if self.max_mail_bytes < 16 * 1024 {
            add("max_mail_bytes", "must be at least 16384 (a mail's header alone can be that large)".into());
        }
        if self.imap.is_none() && self.smtp.is_none() {
            add("imap", "an email channel needs [channels.imap], [channels.smtp] or both".into());
        }
        if let Some(imap) = &mut self.imap {
            if imap.tls == TlsMode::None && !is_loopback(&imap.host) {
                add("imap.tls", format!("`none` is only allowed to a loopback host, not {}", imap.host));
            }
            if imap.timeout.0.is_zero() {
                add("imap.timeout", "must be longer than 0s".into());
            }
            if imap.folders.is_empty() {
                add("imap.folders", "must list at least one folder".into());
            }
            // INBOX is case-insensitive (RFC 3501 §5.1); other names are the server's.
            let same_folder =
                |a: &str, b: &str| a == b || (a.eq_ignore_ascii_case("inbox") && b.eq_ignore_ascii_case("inbox"));
            for (i, folder) in imap.folders.iter().enumerate() {
                if imap.folders[..i].iter().any(|earlier| same_folder(earlier, folder)) {
                    // Two sessions would import it, each moving the one checkpoint.
                    add(&format!("imap.folders[{i}]"), format!("`{folder}` is listed twice"));
                }
            }
            match imap.after_import() {
                None => {
                    add("imap.after_import", format!("`{}` must be keep, seen or move:<folder>", imap.after_import))
                }
                Some(AfterImport::Move(target)) if imap.folders.iter().any(|f| same_folder(f, &target)) => add(
                    "imap.after_import",
                    format!(
                        "moves mail into `{target}`, which the channel reads: every mail would be moved from it again"
                    ),
                ),
                Some(_) => {}
            }
            let source = SecretSource { inline: &imap.password, file: &imap.password_file, env: &imap.password_env };
            match (config::resolve_secret("imap.password", source), &mut imap.oauth2) {
                (Ok(Some(_)), Some(_)) => add("imap.oauth2", "set a password or an [oauth2] table, not both".into()),
                (Ok(Some(p)), None) => imap.password = Some(p),
                (Ok(None), Some(oauth2)) => {
                    for (k, r) in oauth2.validate() {
                        add(&format!("imap.oauth2.{k}"), r);
                    }
                }
                (Ok(None), None) => {
                    add("imap.password", "is required (password, password_file, password_env or [oauth2])".into())
                }
                (Err((k, r)), _) => add(&k, r),
            }
        }
        if let Some(smtp) = &mut self.smtp {
            if smtp.tls == TlsMode::None && !is_loopback(&smtp.host) {
                add("smtp.tls", format!("`none` is only allowed to a loopback host, not {}", smtp.host));
            }
            let source = SecretSource { inline: &smtp.password, file: &smtp.password_file, env: &smtp.password_env };
            match (config::resolve_secret("smtp.password", source), &mut smtp.oauth2) {
                (Ok(Some(_)), Some(_)) => add("smtp.oauth2", "set a password or an [oauth2] table, not both".into()),
                (Ok(Some(p)), None) => smtp.password = Some(p),
                (Ok(None), Some(oauth2)) => {
                    for (k, r) in oauth2.validate() {
                        add(&format!("smtp.oauth2.{k}"), r);
                    }
                }
                (Ok(None), None) => {}
                (Err((k, r)), _) => add(&k, r),
            }
            // Servers drop idle clients after 5 minutes or less (RFC 5321 §4.5.3.2.7).
            if smtp.idle_timeout.0 > std::time::Duration::from_secs(300) {
                add("smtp.idle_timeout", "must be at most 5m (servers drop idle clients by then)".into());
            }
            if (smtp.password.is_some() || smtp.oauth2.is_some()) && smtp.username.is_none() {
                add("smtp.username", "is required with a password or oauth2".into());
            }
        }
        if let Err(reason) = config::load_ca_file(self.smime_ca_file.as_deref(), &mut self.smime_ca_pem) {
            add("smime_ca_file", reason);
        } else if let (Some(file), Some(pem)) = (&self.smime_ca_file, &self.smime_ca_pem) {
            if let Err(reason) = super::tls::roots(Some(pem)) {
                add("smime_ca_file", format!("{}: {reason}", file.display()));
            }
        }
        if let Some(file) = &self.openpgp_keyring_file {
            let keys = std::fs::read(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))
                .and_then(|bytes| super::openpgp::keyring(&bytes).map_err(|e| format!("{}: {e}", file.display())));
            match keys {
                Ok(keys) => self.openpgp_keys = keys,
                Err(reason) => add("openpgp_keyring_file", reason),
            }
        }
        if let Err(reason) = config::load_ca_file(self.smime_recipients_file.as_deref(), &mut self.smime_recipients_pem)
        {
            add("smime_recipients_file", reason);
        }
        if self.smime_encrypt != EncryptWhen::Never && self.smime_certificate_file.is_none() {
            add(
                "smime_encrypt",
                "needs smime_certificate_file (the mail is signed with it and encrypted to it too)".into(),
            );
        }
        if let Err((key, reason)) = self.load_openpgp_secret_keys() {
            add(&key, reason);
        }
        for (k, r) in self.load_signing_identity() {
            add(&k, r);
        }
        if let Some(Err(reason)) = self.imap.as_mut().map(ImapConfig::load_ca_file) {
            add("imap.ca_file", reason);
        }
        if let Some(Err(reason)) = self.smtp.as_mut().map(SmtpConfig::load_ca_file) {
            add("smtp.ca_file", reason);
        }
        problems
    }
}
