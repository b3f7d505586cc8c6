//! The mail we send, OpenPGP-encrypted to its recipients' keys (`openpgp_encrypt`).
//!
//! A `security@` mailbox that reads encrypted reports (`openpgp_decrypt`) must not answer them
//! in clear: the answer usually quotes the report. With `openpgp_encrypt = "when_possible"` a
//! mail goes out encrypted when every recipient (To, Cc and Bcc) has a key in
//! `openpgp_keyring_file`, or one their mail carried in its Autocrypt header (`autocrypt`;
//! the keyring's is preferred), and in clear otherwise; with `"always"` a mail with a recipient
//! without one is not sent at all (`message.failed`, `openpgp_no_key`, naming the recipient).
//!
//! The form is PGP/MIME (RFC 3156 §4), which Thunderbird, K-9/FairEmail, GpgOL and Mailvelope
//! read: `multipart/encrypted` with the "Version: 1" control part and the encrypted MIME body
//! (text, HTML, files) as `encrypted.asc`, SEIPD v1 with AES-256 (what GnuPG 2.2 reads). The
//! recipients' keys are the newest encryption subkey of a certificate whose user ID names the
//! address, not revoked nor expired, whose self-signatures verify (`openpgp::encryption_key`).
//! A Bcc recipient's key ID is hidden (an anonymous recipient), so the others do not learn that
//! one was there. With our own secret key (`openpgp_secret_key`) the mail is also encrypted to
//! it, so that the copy in the Sent folder stays readable to us, and signed with it inside the
//! encryption. An encrypted mail is not S/MIME-signed.
//!
//! Its addresses travel in the clear, as SMTP needs them; its subject need not, and by default
//! (`openpgp_encrypt_subject`) does not. The encrypted part carries the mail's header fields,
//! subject included, marked `protected-headers="v1"`: the form Thunderbird writes and
//! Thunderbird, K-9/FairEmail and mutt show in place of the outer ones (and `openpgp_decrypt`
//! reads), while the outer subject says only "..." (`HIDDEN_SUBJECT`). A report's subject
//! ("SQL injection in /login") tells as much as its text.

use lettre::message::header::{self, ContentDisposition, ContentType, Header, Headers};
use lettre::message::{MultiPart, SinglePart};
use pgp::composed::{ArmorOptions, MessageBuilder, SignedPublicKey, SignedPublicSubKey, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::Password;

use super::config::{EmailChannelConfig, EncryptWhen};
use super::{autocrypt, openpgp};
use crate::model::MailEncryption;
use crate::pipeline::ChannelState;

/// Encrypts the mail a channel sends, by its policy.
pub(super) struct Encryptor {
    policy: EncryptWhen,
    keyring: Vec<SignedPublicKey>,
    /// Our own key: encrypted to, and signing.
    own: Option<SignedSecretKey>,
    /// The subject goes inside, and the outside says `HIDDEN_SUBJECT` (`openpgp_encrypt_subject`).
    hides_subject: bool,
    /// Where the keys of recipients' Autocrypt headers are kept.
    state: ChannelState,
}

/// The outer subject of a mail whose subject is encrypted: Thunderbird's, which the mail
/// clients that show the protected subject replace, and others show as it is.
pub(super) const HIDDEN_SUBJECT: &str = "...";

/// Why a mail was not encrypted when it had to be, or could not be: (code, reason).
pub(super) type Refusal = (&'static str, String);

/// The recipients' keys a mail is encrypted to (`Encryptor::keys`).
pub(super) struct RecipientKeys {
    /// To and Cc: named in the mail.
    named: Vec<SignedPublicSubKey>,
    /// Bcc: anonymous recipients.
    anonymous: Vec<SignedPublicSubKey>,
    /// Their addresses, for the message's `encryption`.
    whose: String,
}

impl Encryptor {
    /// None when the channel does not encrypt.
    pub fn new(config: &EmailChannelConfig, state: ChannelState) -> Option<Encryptor> {
        (config.openpgp_encrypt != EncryptWhen::Never).then(|| Encryptor {
            policy: config.openpgp_encrypt,
            keyring: config.openpgp_keys.clone(),
            own: config.openpgp_secret_keys.first().cloned(),
            hides_subject: config.openpgp_encrypt_subject,
            state,
        })
    }

    /// Whether an encrypted mail's outer subject is `HIDDEN_SUBJECT`.
    pub fn hides_subject(&self) -> bool {
        self.hides_subject
    }

    pub fn policy(&self) -> EncryptWhen {
        self.policy
    }

    /// The keys a mail to `recipients` (whose keys are named in the message) and to the
    /// `hidden` ones (Bcc: whose are not) is encrypted to: each one's in the keyring, else the
    /// one kept from their Autocrypt header; why not, when one has neither.
    pub async fn keys(&self, recipients: &[&str], hidden: &[&str]) -> Result<RecipientKeys, Refusal> {
        let mut keys = Vec::new();
        let mut whose = Vec::new();
        for address in recipients.iter().chain(hidden) {
            if let Some(key) = openpgp::encryption_key(&self.keyring, address) {
                keys.push(key.clone());
                whose.push(address.to_string());
                continue;
            }
            let autocrypt = autocrypt::key(&self.state, address).await;
            match autocrypt
                .as_ref()
                .and_then(|certificate| openpgp::encryption_key(std::slice::from_ref(certificate), address))
            {
                Some(key) => {
                    keys.push(key.clone());
                    whose.push(format!("{address} (Autocrypt)"));
                }
                None => {
                    return Err((
                        "openpgp_no_key",
                        format!(
                        "no usable OpenPGP key for {address} in openpgp_keyring_file or from their Autocrypt header"
                    ),
                    ))
                }
            }
        }
        let anonymous = keys.split_off(recipients.len());
        Ok(RecipientKeys { named: keys, anonymous, whose: whose.join(", ") })
    }

    /// `body` (a mail's MIME body, under the mail's `header`) encrypted to `keys`, with what
    /// the sent message says of it. With `hides_subject`, `header` goes inside as protected
    /// headers.
    pub fn encrypt(
        &self,
        body: MultiPart,
        header: &Headers,
        keys: RecipientKeys,
    ) -> Result<(MultiPart, MailEncryption), Refusal> {
        let body = if self.hides_subject { protected(body, header) } else { body };
        let armored =
            self.encrypted(&body.formatted(), &keys.named, &keys.anonymous).map_err(|e| ("openpgp_encrypt", e))?;
        let control = SinglePart::builder()
            .header(ContentType::parse("application/pgp-encrypted").expect("valid"))
            .body(String::from("Version: 1\r\n"));
        let encrypted = SinglePart::builder()
            .header(ContentType::parse("application/octet-stream; name=\"encrypted.asc\"").expect("valid"))
            .header(ContentDisposition::inline_with_name("encrypted.asc"))
            .body(armored.replace("\r\n", "\n").replace('\n', "\r\n"));
        let mail = MultiPart::encrypted("application/pgp-encrypted".into()).singlepart(control).singlepart(encrypted);
        let ours = if self.own.is_some() { ", and to ours, which signed it" } else { "" };
        let detail = format!("sent OpenPGP-encrypted to the keys of {}{ours}", keys.whose);
        Ok((mail, MailEncryption { kind: "openpgp".into(), decrypted: false, detail }))
    }

    /// `plaintext` as an armored OpenPGP message to the `named` and `anonymous` keys and ours,
    /// signed with ours.
    fn encrypted(
        &self,
        plaintext: &[u8],
        named: &[SignedPublicSubKey],
        anonymous: &[SignedPublicSubKey],
    ) -> Result<String, String> {
        let mut rng = rand::rngs::OsRng;
        let failed = |e: pgp::errors::Error| format!("the mail could not be encrypted: {e}");
        let mut builder =
            MessageBuilder::from_bytes("", plaintext.to_vec()).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
        for key in named {
            builder.encrypt_to_key(&mut rng, key).map_err(failed)?;
        }
        for key in anonymous {
            builder.encrypt_to_key_anonymous(&mut rng, key).map_err(failed)?;
        }
        if let Some(own) = &self.own {
            for subkey in own.secret_subkeys.iter().filter(|s| openpgp::may_encrypt(&s.signatures)) {
                builder.encrypt_to_key(&mut rng, subkey.key.public_key()).map_err(failed)?;
            }
            builder.sign(&own.primary_key, Password::empty(), HashAlgorithm::Sha256);
        }
        builder.to_armored_string(rng, ArmorOptions::default()).map_err(failed)
    }
}

/// `body` carrying the mail's header fields (`header`), marked as its protected headers
/// (`protected-headers="v1"`): what a mail client shows of an encrypted mail in place of the
/// outer fields, the subject above all. Bcc stays out, as it stays out of the outer header.
fn protected(mut body: MultiPart, header: &Headers) -> MultiPart {
    fn copy<H: Header>(from: &Headers, to: &mut Headers) {
        if let Some(field) = from.get::<H>() {
            to.set(field);
        }
    }
    let content_type =
        format!("{}; protected-headers=\"v1\"", body.headers().get_raw("Content-Type").unwrap_or_default());
    let fields = body.headers_mut();
    fields.set(ContentType::parse(&content_type).expect("a multipart content type with one more parameter"));
    copy::<header::Date>(header, fields);
    copy::<header::From>(header, fields);
    copy::<header::To>(header, fields);
    copy::<header::Cc>(header, fields);
    copy::<header::ReplyTo>(header, fields);
    copy::<header::Subject>(header, fields);
    copy::<header::MessageId>(header, fields);
    copy::<header::InReplyTo>(header, fields);
    copy::<header::References>(header, fields);
    body
}
