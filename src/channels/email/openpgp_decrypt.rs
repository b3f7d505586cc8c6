//! OpenPGP-encrypted mail read with the channel's own secret key (`openpgp_secret_key`).
//!
//! A `security@` mailbox, a lawyer's or a clinic's publishes its key so that people can write to
//! it encrypted. Without the key a helpdesk shows such a mail as an empty message with an
//! `encrypted.asc` file (the mail is flagged, `openpgp::encryption`); with it, the gateway reads
//! the mail as what it encrypts, as Zammad's PGP integration does:
//! - **PGP/MIME** (RFC 3156 §4, `multipart/encrypted`; Thunderbird, K-9/FairEmail, GpgOL,
//!   Mailvelope): the decrypted MIME entity is read as the mail's body under the mail's own
//!   header (`smime::inner_mail`), like an S/MIME opaque-signed mail: the sender, recipients and
//!   threading stay those the receiving server saw and authenticated. The subject is the
//!   encrypted one when the mail carries one (`protected_subject`): Thunderbird sends "..." and
//!   K-9 "Encrypted Message" outside, and the real subject inside (`protected-headers="v1"`).
//! - **Inline** (`-----BEGIN PGP MESSAGE-----` in the text: mutt's traditional mode, Mailvelope
//!   in webmail): the block is replaced in the text by what it encrypts.
//! - **Files encrypted one by one** beside such a text or a clear one (Enigmail's and mutt's
//!   inline mode, Mailvelope's `.asc` files, a file encrypted by hand): `report.pdf.pgp` is
//!   read as `report.pdf` (`file`). A signature inside such a file is not checked.
//!
//! A signature inside is checked as any other (`openpgp`): one OpenPGP message both signed and
//! encrypted (GnuPG `--sign --encrypt`, K-9, Mailvelope) here, against the keyring; a PGP/MIME
//! signed entity inside the encryption (Thunderbird) as the clear-signed mail it is.
//!
//! The message says it was decrypted (`MailEncryption`, `decrypted: true`, with the key), or
//! why it was not: encrypted only to keys the gateway does not hold (named), or damaged. The
//! mail's source stays as fetched, encrypted; what it decrypts to goes where every message's
//! text goes (the event log, the webhook), which the operator accepts by configuring the key.
//! Replies are encrypted by `openpgp_encrypt`, when the channel says so.

use std::fmt;
use std::io::{Cursor, Read};

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};
use pgp::composed::{Deserializable, Esk, Message as PgpMessage, SignedSecretKey, TheRing};
use pgp::packet::Signature;
use pgp::types::{KeyDetails, Password};

use super::config::EmailChannelConfig;
use super::openpgp;
use super::smime::{self, Opened};
use crate::model::{MailEncryption, MailSignature};

const ENCRYPTED_END: &str = "-----END PGP MESSAGE-----";
/// The armor line that opens a block of secret keys.
const SECRET_KEY_BLOCK: &str = "-----BEGIN PGP PRIVATE KEY BLOCK-----";
/// How many layers of compression are opened (GnuPG writes one).
const COMPRESSION_LAYERS: usize = 3;

/// The channel's secret keys, unlocked when the configuration is loaded: a wrong passphrase
/// is told by `switchboard check`, not by the first encrypted mail, and no mail pays the key
/// derivation. Debug output names their fingerprints only.
#[derive(Clone, Default, PartialEq)]
pub struct SecretKeys(Vec<SignedSecretKey>);

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|k| format!("{:X}", k.fingerprint()))).finish()
    }
}

impl SecretKeys {
    /// The secret keys in `armored` (`gpg --export-secret-keys --armor`, one key or several, in
    /// one block or several one after another),
    /// unlocked with `passphrase` where they are protected. An error names what is wrong.
    pub fn load(armored: &str, passphrase: Option<&str>) -> Result<SecretKeys, String> {
        if !armored.contains(SECRET_KEY_BLOCK) {
            return Err(match armored.contains("PUBLIC KEY BLOCK") {
                true => "holds a public key, not a secret one: export it with gpg --export-secret-keys --armor".into(),
                false => "holds no ASCII-armored OpenPGP secret key (gpg --export-secret-keys --armor)".into(),
            });
        }
        let mut keys = Vec::new();
        for block in openpgp::armor_blocks(armored, SECRET_KEY_BLOCK) {
            let (parsed, _) = SignedSecretKey::from_armor_many(Cursor::new(block.as_bytes()))
                .map_err(|e| format!("cannot be read as OpenPGP secret keys: {e}"))?;
            for key in parsed {
                let mut key = key.map_err(|e| format!("key {} cannot be read: {e}", keys.len() + 1))?;
                unlock(&mut key, passphrase)?;
                if !can_decrypt(&key) {
                    return Err(format!("key {:X} has no key for encryption", key.fingerprint()));
                }
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err("holds no OpenPGP secret key".into());
        }
        Ok(SecretKeys(keys))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first key: ours, for the mail we send (`openpgp_encrypt`).
    pub fn first(&self) -> Option<&SignedSecretKey> {
        self.0.first()
    }
}

/// Takes the passphrase protection off `key`'s secret parts, in memory.
fn unlock(key: &mut SignedSecretKey, passphrase: Option<&str>) -> Result<(), String> {
    let fingerprint = format!("{:X}", key.fingerprint());
    let locked = key.primary_key.secret_params().is_encrypted()
        || key.secret_subkeys.iter().any(|s| s.key.secret_params().is_encrypted());
    if !locked {
        return Ok(());
    }
    let Some(passphrase) = passphrase else {
        return Err(format!("key {fingerprint} is protected by a passphrase: set openpgp_passphrase (or _file, _env)"));
    };
    let password = Password::from(passphrase);
    let wrong = |_| format!("the passphrase does not unlock key {fingerprint}");
    key.primary_key.remove_password(&password).map_err(wrong)?;
    for subkey in &mut key.secret_subkeys {
        subkey.key.remove_password(&password).map_err(wrong)?;
    }
    Ok(())
}

/// Whether `key` has a secret subkey its binding allows to encrypt, or is an RSA key (which
/// GnuPG's older default used for both).
fn can_decrypt(key: &SignedSecretKey) -> bool {
    let subkey = key.secret_subkeys.iter().any(|s| openpgp::may_encrypt(&s.signatures));
    subkey || matches!(key.algorithm(), pgp::crypto::public_key::PublicKeyAlgorithm::RSA)
}

/// What an OpenPGP message decrypted to.
struct Plaintext {
    data: Vec<u8>,
    /// The signatures inside it, over `data` (sign-and-encrypt in one message).
    signatures: Vec<Signature>,
    /// The fingerprint of our key that opened it.
    key: String,
}

/// Decrypts the OpenPGP message `encrypted` (armored, or binary) with `keys`, reading at most
/// `limit` bytes of what it decrypts to. The error says why not, for the message.
fn decrypt(encrypted: &[u8], keys: &SecretKeys, limit: u64) -> Result<Plaintext, String> {
    let armored = encrypted.trim_ascii_start().starts_with(b"-----BEGIN");
    let parsed = match armored {
        true => PgpMessage::from_armor(Cursor::new(encrypted)).map(|(m, _)| m),
        false => PgpMessage::from_bytes(Cursor::new(encrypted)),
    };
    let message = parsed.map_err(|e| format!("the encrypted content cannot be read: {e}"))?;
    let PgpMessage::Encrypted { esk, .. } = &message else {
        return Err("the encrypted content is no encrypted OpenPGP message".into());
    };
    let recipients = recipients(esk);
    let empty = Password::empty();
    let ring = TheRing {
        secret_keys: keys.0.iter().collect(),
        key_passwords: keys.0.iter().map(|_| &empty).collect(),
        ..TheRing::default()
    };
    let (mut message, result) = match message.decrypt_the_ring(ring, true) {
        Ok(opened) => opened,
        Err(pgp::errors::Error::MissingKey) => {
            return Err(format!(
                "encrypted to {recipients}, which openpgp_secret_key does not hold; the encrypted content is kept"
            ))
        }
        Err(e) => return Err(undecryptable(&e)),
    };
    let used = result.secret_keys.iter().position(|r| *r == pgp::composed::InnerRingResult::Ok).unwrap_or(0);
    let key = format!("{:X}", keys.0[used].fingerprint());
    for _ in 0..COMPRESSION_LAYERS {
        if !message.is_compressed() {
            break;
        }
        message = message.decompress().map_err(|e| format!("what it decrypts to cannot be read: {e}"))?;
    }
    let mut data = Vec::new();
    // An integrity failure (the content changed on the way) is an error of this read: no
    // plaintext of a changed message is used.
    (&mut message).take(limit + 1).read_to_end(&mut data).map_err(|e| undecryptable(&e))?;
    if data.len() as u64 > limit {
        return Err(format!("it decrypts to more than the channel's max_mail_bytes of {limit}; it is kept"));
    }
    let signatures = match &message {
        PgpMessage::Signed { reader, .. } => {
            (0..reader.num_signatures()).filter_map(|i| reader.signature(i).cloned()).collect()
        }
        _ => Vec::new(),
    };
    Ok(Plaintext { data, signatures, key })
}

/// Why a message to our key could not be decrypted, for the message: above all, when its
/// integrity check (SEIPD's modification detection code, or an AEAD tag) fails, which no
/// plaintext is taken from.
fn undecryptable(error: &dyn fmt::Display) -> String {
    let error = error.to_string();
    if error.contains("Modification Detection Code") || error.to_ascii_lowercase().contains("aead") {
        "it was changed or damaged on the way: its integrity check fails; the encrypted content is kept".into()
    } else {
        format!("it cannot be decrypted ({error}); the encrypted content is kept")
    }
}

/// The keys an encrypted message names as its recipients, for an operator: their key IDs
/// (a v6 message: fingerprints), or that they are hidden (`gpg --throw-keyids`).
fn recipients(esk: &[Esk]) -> String {
    let named: Vec<String> = esk
        .iter()
        .map(|e| match e {
            Esk::PublicKeyEncryptedSessionKey(k) => match (k.id(), k.fingerprint()) {
                (Ok(id), _) if !id.is_wildcard() => {
                    format!("key {}", id.as_ref().iter().map(|b| format!("{b:02X}")).collect::<String>())
                }
                (_, Ok(Some(fingerprint))) => format!("key {fingerprint:X}"),
                _ => "a hidden recipient".to_owned(),
            },
            Esk::SymKeyEncryptedSessionKey(_) => "a password".to_owned(),
        })
        .collect();
    if named.is_empty() {
        "no recipient".into()
    } else {
        named.join(", ")
    }
}

fn flag(decrypted: bool, detail: String) -> MailEncryption {
    MailEncryption { kind: "openpgp".into(), decrypted, detail }
}

/// The verdict on the signatures inside a decrypted message, if it was signed.
fn signature(
    plaintext: &Plaintext,
    message: &Message<'_>,
    from: &str,
    channel: &EmailChannelConfig,
) -> Option<MailSignature> {
    (!plaintext.signatures.is_empty())
        .then(|| openpgp::embedded(message, &plaintext.signatures, &plaintext.data, from, &channel.openpgp_keys))
}

/// What a PGP/MIME-encrypted `message` (`source`) opens to with the channel's secret key: the
/// mail it encrypts, and its signature when it was signed and encrypted in one; or, when it
/// cannot be opened, why. None: not PGP/MIME-encrypted, or no secret key.
pub(super) fn open(message: &Message<'_>, source: &[u8], channel: &EmailChannelConfig) -> Option<Opened> {
    if channel.openpgp_secret_keys.is_empty() || !openpgp::is_pgp_mime_encrypted(message) {
        return None;
    }
    let PartType::Multipart(parts) = &message.root_part().body else { return None };
    // RFC 3156 §4: the control part ("Version: 1"), then the encrypted one.
    let encrypted = parts.get(1).and_then(|id| message.part(*id))?;
    let from = message.from().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default();
    match decrypt(encrypted.contents(), &channel.openpgp_secret_keys, channel.max_mail_bytes) {
        Ok(plaintext) => Some(Opened {
            mail: Some(smime::inner_mail(source, &plaintext.data)),
            signature: signature(&plaintext, message, from, channel),
            encryption: Some(flag(true, format!("decrypted with key {} of openpgp_secret_key", plaintext.key))),
            ..Opened::default()
        }),
        Err(why) => Some(Opened { encryption: Some(flag(false, why)), ..Opened::default() }),
    }
}

/// The subject a decrypted or signed entity carries for the mail (`message`, as read by
/// `inner_mail`), when it declares its header protected (`protected-headers="v1"`, or RFC 9788's
/// `hp`): its root, or the signed part of a `multipart/signed` root (Thunderbird signs inside
/// the encryption). The root's own subject is the mail's already (`inner_mail` puts it last).
pub(super) fn protected_subject(message: &Message<'_>) -> Option<String> {
    let root = message.root_part();
    let signed = root.content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case("multipart") && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("signed"))
    });
    let PartType::Multipart(parts) = &root.body else { return None };
    let first = message.part(*parts.first()?).filter(|_| signed)?;
    declares_protected_headers(first).then(|| subject(first)).flatten()
}

/// Whether a mail that stayed encrypted shows only the placeholder its client puts outside for
/// the subject it encrypted (`subject_key`, normalized): Thunderbird's "...", K-9's "Encrypted
/// Message", RFC 9788's "[...]". Stitched by it, every such mail of one sender would join one
/// conversation.
pub(super) fn hides_its_subject(subject_key: &str, encryption: Option<&MailEncryption>) -> bool {
    encryption.is_some_and(|e| !e.decrypted) && ["...", "…", "[...]", "encrypted message"].contains(&subject_key)
}

/// Whether `part`'s content type says its header fields are the mail's, protected.
pub(super) fn declares_protected_headers(part: &MessagePart<'_>) -> bool {
    part.content_type().is_some_and(|c| c.attribute("protected-headers").is_some() || c.attribute("hp").is_some())
}

fn subject(part: &MessagePart<'_>) -> Option<String> {
    let header = part.headers().iter().rev().find(|h| h.name == mail_parser::HeaderName::Subject)?;
    header.value.as_text().map(str::to_owned)
}

/// Whether `contents` is an OpenPGP encrypted message: armored, or binary starting with a
/// public-key or symmetric-key encrypted session key packet (RFC 9580 §4.2, either header
/// format). PGP/MIME's control part ("Version: 1") is not.
pub(super) fn is_encrypted_message(contents: &[u8]) -> bool {
    let encrypted_session_key = |tag: u8| tag == 1 || tag == 3;
    match contents.first() {
        Some(&header) if header & 0xc0 == 0xc0 => encrypted_session_key(header & 0x3f),
        Some(&header) if header & 0xc0 == 0x80 => encrypted_session_key((header >> 2) & 0x0f),
        _ => contents.trim_ascii_start().starts_with(openpgp::ENCRYPTED.as_bytes()),
    }
}

/// A file encrypted on its own, decrypted (`file`).
pub(super) struct DecryptedFile {
    /// Its name without the encrypted file's extension (`report.pdf`).
    pub name: String,
    /// What its name says it holds (the encrypted file's type says nothing).
    pub content_type: &'static str,
    pub data: Vec<u8>,
    /// The fingerprint of our key that opened it.
    pub key: String,
}

/// A file encrypted on its own, named for it (`report.pdf.pgp`, `.gpg`, `.asc`), decrypted with
/// the channel's keys; or why not. None: no such file.
pub(super) fn file(
    filename: Option<&str>,
    contents: &[u8],
    channel: &EmailChannelConfig,
) -> Option<Result<DecryptedFile, String>> {
    let filename = filename?;
    let lower = filename.to_ascii_lowercase();
    let stem =
        [".pgp", ".gpg", ".asc"].iter().find_map(|ext| lower.ends_with(ext).then(|| &filename[..filename.len() - 4]));
    let stem = stem.filter(|stem| !stem.is_empty() && is_encrypted_message(contents))?;
    if channel.openpgp_secret_keys.is_empty() {
        return Some(Err("encrypted to an OpenPGP key; the channel has no openpgp_secret_key".into()));
    }
    Some(decrypt(contents, &channel.openpgp_secret_keys, channel.max_mail_bytes).map(|plaintext| DecryptedFile {
        name: stem.to_owned(),
        content_type: content_type_for(stem),
        data: plaintext.data,
        key: plaintext.key,
    }))
}

/// The content type a file named `name` most likely has: what an encrypted file lost.
fn content_type_for(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "zip" => "application/zip",
        "json" => "application/json",
        "xml" => "application/xml",
        "eml" => "message/rfc822",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// What the message says of the files `file` found: those decrypted, with the key, and those
/// not, with why. None when there were none.
pub(super) fn files_encryption(
    decrypted: &[String],
    key: Option<&str>,
    kept: &[(String, String)],
) -> Option<MailEncryption> {
    let mut said = Vec::new();
    if let Some(key) = key.filter(|_| !decrypted.is_empty()) {
        said.push(format!("the files {} were decrypted with key {key} of openpgp_secret_key", decrypted.join(", ")));
    }
    said.extend(kept.iter().map(|(name, why)| format!("{name}: {why}")));
    (!said.is_empty()).then(|| flag(!decrypted.is_empty(), said.join("; ")))
}

/// An inline-encrypted text decrypted (see `inline`).
pub(super) struct InlineDecryption {
    /// The text with the block replaced by what it encrypts; None when it could not be opened.
    pub text: Option<String>,
    pub signature: Option<MailSignature>,
    pub encryption: MailEncryption,
}

/// The inline `PGP MESSAGE` block in `text` (`message`'s text, decoded) decrypted with the
/// channel's secret key, for a mail from `from`. None: no block, or no secret key.
pub(super) fn inline(
    message: &Message<'_>,
    text: &str,
    from: &str,
    channel: &EmailChannelConfig,
) -> Option<InlineDecryption> {
    if channel.openpgp_secret_keys.is_empty() {
        return None;
    }
    let start = text.find(openpgp::ENCRYPTED).filter(|at| *at == 0 || text[..*at].ends_with('\n'))?;
    let end = start + text[start..].find(ENCRYPTED_END)? + ENCRYPTED_END.len();
    let plaintext = match decrypt(&text.as_bytes()[start..end], &channel.openpgp_secret_keys, channel.max_mail_bytes) {
        Ok(plaintext) => plaintext,
        Err(why) => return Some(InlineDecryption { text: None, signature: None, encryption: flag(false, why) }),
    };
    let mut signature = signature(&plaintext, message, from, channel);
    // Written in the text part's charset, which the armor does not change.
    let decoded = match String::from_utf8(plaintext.data) {
        Ok(decoded) => decoded,
        Err(e) => {
            let bytes = e.into_bytes();
            text_charset(message)
                .and_then(|charset| mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes()))
                .map(|decode| decode(&bytes))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    // As with an inline signature: text around the block was not signed.
    let outside = !text[..start].trim().is_empty() || !text[end..].trim().is_empty();
    if let Some(signature) = signature.as_mut().filter(|_| outside) {
        openpgp::unsigned_text_around(signature, "encrypted");
    }
    Some(InlineDecryption {
        text: Some(format!("{}{}{}", &text[..start], decoded.trim_end(), &text[end..])),
        signature,
        encryption: flag(true, format!("the text was decrypted with key {} of openpgp_secret_key", plaintext.key)),
    })
}

/// The charset of `message`'s first text part, as it says.
fn text_charset(message: &Message<'_>) -> Option<String> {
    let part = message.text_bodies().next()?;
    part.content_type().and_then(|c| c.attribute("charset")).map(str::to_owned)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::channels::email::tests::{bit_flips, channel};

    /// Our key as GnuPG exports it (`gpg --export-secret-keys --armor`: Ed25519 with a Curve25519
    /// encryption subkey, protected with "correct horse"), which the fuzz target reads with too.
    const SUPPORT_SECRET: &str = include_str!("../../../fuzz/secret-key.asc");
    /// "The admin panel at /admin accepts any password.\nGrüße, Ann\n", encrypted by GnuPG to
    /// our key, and to another one (subkey 4A390BFA77E49035).
    const TO_SUPPORT: &str = "-----BEGIN PGP MESSAGE-----

hF4Dv0SrKR4NTBkSAQdArRk8nLFSpcjlGte3ydbm7hDufKh2CXIbUBcwI2OPXz8w
UxwXPDe8lqP0i0re4XgAsDQ3SBy5v/4uQ2fAxNaim/+qMnmhpGSCfKXGNcQz+KuL
0noBSYwTM/5fCX82XENO9GD+O5MxlBHUgkgIaHOPme9+dMV1Tb6vieZZ/BzOsRPo
U2m9H1BgHJtwvm0/zxw1mQyLIW5xFW4x6oYUkSL0k1kEvd5ldgMouKDfZ/G7mf3+
luD2rWEZIf8QZpRbVQ987nWcdhnnr72CwkeNAA==
=wFi6
-----END PGP MESSAGE-----
";
    const TO_OTHER: &str = "-----BEGIN PGP MESSAGE-----

hF4DSjkL+nfkkDUSAQdAPUxHrSzW7mtS0kBv9UpzdA2ZLxa/CL2TvuUq08aKUTAw
bR7kUwF3ljvuV4cp0V5zSTPNWLCzpTNCElNWsksLmnDirrBDJh4WxIbdzo97Hv99
0noBp9aS+cSlOh+7j+znM5AevwD2VwBigNKYXBrPalw73BtI9xztyv2PFjhabILE
7nwxiO8eizMrcepQ0nP2X+vrAhdBZ0VRTEwXplWXf9YwumR/JoWRG2io38B1Mk9d
FkNhb5kN8sJZg57jOwpyJ6RUFrCY0xBPK5rPGQ==
=UXk+
-----END PGP MESSAGE-----
";
    /// The other key, unprotected (`gpg --export-secret-keys --armor other@example.org`).
    const OTHER_SECRET: &str = "-----BEGIN PGP PRIVATE KEY BLOCK-----

lFgEaw5McxYJKwYBBAHaRw8BAQdA0NQ3vov3C2gi8mQOeK6clygY2/RiIwf8YavM
Eas1Wn8AAQDCL7t12xe1rWloJ5hh79m5Ryaa2c3v+ddFFHetPsZxDBFStBlPdGhl
ciA8b3RoZXJAZXhhbXBsZS5vcmc+iJAEExYIADgWIQRRJtrR/PCIQCECTHW4u7fN
hyggWAUCaw5McwIbAwULCQgHAgYVCgkICwIEFgIDAQIeAQIXgAAKCRC4u7fNhygg
WDe5AP9gtpYMUeMw6FFycjGDEvz+G3dl+Ao/i+nC976ZBo4P0AEAxwlsphvLu5sz
9GfsfoHSmebpTKqrWfHv32DhVcsTOwmcXQRrDkxzEgorBgEEAZdVAQUBAQdAi290
7l5SrLIhV/ecL1yh6ZZdfzTuhvOHREdVgMVVVnoDAQgHAAD/QwKXg1udnoROs5qU
Wp7yNsKyQv8e7x9fBNpZBbyFgEAQRIh4BBgWCAAgFiEEUSba0fzwiEAhAkx1uLu3
zYcoIFgFAmsOTHMCGwwACgkQuLu3zYcoIFiFIwD+LYmh4tLlzvfnQ0BPcXanu3xs
Q2RS8rFFiQXB5NMZtiYA+wa7qyIqFgnXyXzG/qhY4/LU+q6FOpuxZXmo195DlOUJ
=HVQm
-----END PGP PRIVATE KEY BLOCK-----
";
    const PLAINTEXT: &str = "The admin panel at /admin accepts any password.\nGrüße, Ann\n";

    /// Our key, unlocked once: the passphrase's key derivation (GnuPG's 65 million bytes of
    /// SHA-1) takes seconds in a debug build.
    pub(in crate::channels::email) fn keys() -> SecretKeys {
        static KEYS: std::sync::OnceLock<SecretKeys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| SecretKeys::load(SUPPORT_SECRET, Some("correct horse")).unwrap()).clone()
    }

    #[test]
    fn a_message_to_our_key_is_decrypted_and_one_to_another_names_it() {
        let keys = keys();
        let plaintext = decrypt(TO_SUPPORT.as_bytes(), &keys, 1 << 20).unwrap();
        assert_eq!(String::from_utf8(plaintext.data).unwrap(), PLAINTEXT);
        assert_eq!(plaintext.key, "3D7A7AE2BD1F5CA5CE3A741A89EB3786148EE541");
        assert!(plaintext.signatures.is_empty());
        let refused = decrypt(TO_OTHER.as_bytes(), &keys, 1 << 20).err().unwrap();
        assert!(
            refused.starts_with("encrypted to key 4A390BFA77E49035, which openpgp_secret_key does not hold"),
            "{refused}"
        );
        // Both keys, exported one after the other into one file: each is read and unlocked.
        let both = SecretKeys::load(&format!("{SUPPORT_SECRET}{OTHER_SECRET}"), Some("correct horse")).unwrap();
        assert_eq!(both.0.len(), 2);
        assert_eq!(decrypt(TO_OTHER.as_bytes(), &both, 1 << 20).unwrap().data, PLAINTEXT.as_bytes());
        let too_big = decrypt(TO_SUPPORT.as_bytes(), &keys, 10).err().unwrap();
        assert!(too_big.contains("more than the channel's max_mail_bytes of 10"), "{too_big}");
        // Debug output names the key, never its secret.
        assert_eq!(format!("{keys:?}"), "[\"3D7A7AE2BD1F5CA5CE3A741A89EB3786148EE541\"]");
    }

    #[test]
    fn an_inline_block_is_replaced_by_what_it_encrypts() {
        let mut channel = channel();
        channel.openpgp_secret_keys = keys();
        let text = format!("Hello,\n\n{TO_SUPPORT}\n-- \nAnn\n");
        let mail = format!("From: ann@customer.example\r\nContent-Type: text/plain\r\n\r\n{text}");
        let message = mail_parser::MessageParser::default().parse(mail.as_bytes()).unwrap();
        let opened = inline(&message, &text, "ann@customer.example", &channel).unwrap();
        assert_eq!(opened.text.unwrap(), format!("Hello,\n\n{}\n\n-- \nAnn\n", PLAINTEXT.trim_end()));
        assert!(opened.encryption.decrypted && opened.signature.is_none());
        // Without our key, nothing is tried.
        channel.openpgp_secret_keys = SecretKeys::default();
        assert!(inline(&message, &text, "ann@customer.example", &channel).is_none());
    }

    #[test]
    fn a_secret_key_that_cannot_serve_is_named() {
        let error = |armored: &str, passphrase: Option<&str>| SecretKeys::load(armored, passphrase).err().unwrap();
        assert_eq!(
            error(SUPPORT_SECRET, Some("wrong")),
            "the passphrase does not unlock key 3D7A7AE2BD1F5CA5CE3A741A89EB3786148EE541"
        );
        assert!(error(SUPPORT_SECRET, None)
            .ends_with("is protected by a passphrase: set openpgp_passphrase (or _file, _env)"));
        let public = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEaw4OABYJKwYBBAHaRw8BAQdA\n-----END PGP PUBLIC KEY BLOCK-----\n";
        assert!(error(public, None).starts_with("holds a public key, not a secret one"));
        assert!(error("hello", None).starts_with("holds no ASCII-armored OpenPGP secret key"));
        let truncated = &SUPPORT_SECRET[..SUPPORT_SECRET.len() / 2];
        let truncated = format!("{truncated}\n-----END PGP PRIVATE KEY BLOCK-----\n");
        assert!(
            error(&truncated, Some("correct horse")).contains("cannot be read"),
            "{}",
            error(&truncated, Some("correct horse"))
        );
    }

    /// The fuzz seeds (encrypted by GnuPG to our key) as the channel reads them: a PGP/MIME mail
    /// as Thunderbird shapes it is its protected subject and text, without the header display
    /// part; an inline one is its text.
    #[test]
    fn encrypted_mails_read_as_what_they_encrypt() {
        let mut channel = channel();
        channel.openpgp_secret_keys = keys();
        let read =
            |channel: &EmailChannelConfig, mail: &[u8]| super::super::mime::to_raw_inbound(channel, mail.to_vec());
        let pgp_mime = read(&channel, include_bytes!("../../../fuzz/seeds/openpgp-mime-encrypted-support.eml"));
        assert_eq!(pgp_mime.subject.as_deref(), Some("Login bypass on the portal"));
        assert_eq!(pgp_mime.text.as_deref().map(str::trim_end), Some("The portal lets anyone in."));
        assert!(pgp_mime.attachments.is_empty(), "{:?}", pgp_mime.attachments);
        assert!(pgp_mime.encryption.is_some_and(|e| e.decrypted));
        let inline = read(&channel, include_bytes!("../../../fuzz/seeds/openpgp-inline-encrypted-support.eml"));
        assert_eq!(inline.text.as_deref().map(|t| t.replace("\r\n", "\n")), Some(format!("Hello,\n\n{PLAINTEXT}")));
        assert!(inline.encryption.is_some_and(|e| e.decrypted));
        // A file encrypted on its own (`gpg --encrypt report.pdf`), beside a text in clear.
        let file = include_bytes!("../../../fuzz/seeds/openpgp-file-encrypted-support.eml");
        let with_file = read(&channel, file);
        let attachment = &with_file.attachments[0];
        assert_eq!(
            (attachment.filename.as_deref(), attachment.content_type.as_str()),
            (Some("report.pdf"), "application/pdf")
        );
        assert_eq!(&attachment.bytes[..], b"%PDF-1.4\n%%EOF\n");
        assert_eq!(with_file.text.as_deref().map(str::trim_end), Some("The report is attached, encrypted."));
        assert!(with_file
            .encryption
            .as_ref()
            .is_some_and(|e| e.decrypted && e.detail.starts_with("the files report.pdf.pgp")));
        // Without the key, both stay encrypted and say so.
        channel.openpgp_secret_keys = SecretKeys::default();
        let flagged = read(&channel, include_bytes!("../../../fuzz/seeds/openpgp-mime-encrypted-support.eml"));
        assert_eq!(flagged.subject.as_deref(), Some("..."));
        let kept = read(&channel, file);
        assert_eq!(kept.attachments[0].filename.as_deref(), Some("report.pdf.pgp"));
        let kept = kept.encryption.unwrap();
        assert!(!kept.decrypted && kept.detail.contains("the channel has no openpgp_secret_key"), "{kept:?}");
        // Its placeholder subject stitches nothing; the real one does.
        assert_eq!(flagged.mail.as_ref().unwrap().subject_key, None);
        assert_eq!(pgp_mime.mail.as_ref().unwrap().subject_key.as_deref(), Some("login bypass on the portal"));
        assert!(flagged.encryption.is_some_and(|e| !e.decrypted));
    }

    /// What an encrypted message looks like, armored or binary, and what does not.
    #[test]
    fn encrypted_messages_are_told_by_their_first_packet() {
        let binary = include_bytes!("../../../fuzz/seeds/openpgp-file-encrypted-support.eml");
        let message = mail_parser::MessageParser::default().parse(&binary[..]).unwrap();
        let file = message.attachments().next().unwrap().contents().to_vec();
        assert_eq!(file[0], 0x84, "GnuPG writes an old-format public-key encrypted session key");
        assert!(is_encrypted_message(&file));
        assert!(is_encrypted_message(TO_SUPPORT.as_bytes()));
        assert!(is_encrypted_message(&[0xc1, 0x5e]));
        assert!(!is_encrypted_message(b"Version: 1\r\n"));
        assert!(!is_encrypted_message(OTHER_SECRET.as_bytes()));
        assert!(!is_encrypted_message(b"%PDF-1.4"));
        assert!(!is_encrypted_message(&[0x88, 0x00]), "a signature packet");
        assert!(!is_encrypted_message(&[]));
    }

    /// The placeholders mail clients put outside for an encrypted subject, and replies to them,
    /// are known as such while the mail stays encrypted.
    #[test]
    fn placeholder_subjects_are_known_for_what_they_are() {
        let undecrypted = MailEncryption { kind: "openpgp".into(), decrypted: false, detail: String::new() };
        for placeholder in ["...", "[...]", "Encrypted Message", "Re: ...", "AW: [...]"] {
            let key = crate::stitch::email::normalize_subject(placeholder);
            assert!(hides_its_subject(&key, Some(&undecrypted)), "{placeholder}");
        }
        assert!(!hides_its_subject("...", None));
        assert!(!hides_its_subject("invoice", Some(&undecrypted)));
    }

    /// A message damaged anywhere is refused whole, or (damage the armor's reader forgives:
    /// its checksum, a header line) read as it was: never a changed plaintext, and no panic.
    #[test]
    fn a_damaged_message_yields_no_changed_plaintext() {
        let keys = keys();
        let mut refused = 0;
        for (at, damaged) in bit_flips(TO_SUPPORT.as_bytes(), 400) {
            match decrypt(&damaged, &keys, 1 << 20) {
                Ok(plaintext) => {
                    assert_eq!(plaintext.data, PLAINTEXT.as_bytes(), "a flip at {at} changed the plaintext")
                }
                Err(_) => refused += 1,
            }
        }
        assert!(refused > 300, "only {refused} of 400 damaged copies refused");
    }
}
