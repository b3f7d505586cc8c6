//! OpenPGP signatures checked against the channel's keyring (`openpgp_keyring_file`).
//!
//! Two forms reach a helpdesk: **PGP/MIME** (RFC 3156, `multipart/signed` with
//! `application/pgp-signature`: Thunderbird, Enigmail, GpgOL, Mailvelope), whose detached
//! signature covers the first part exactly as it travelled, header included, with CRLF line
//! ends; and **inline** (the cleartext signature framework, RFC 9580 §7: mutt, older Enigmail),
//! whose signature covers the text between its armor lines. An inline-signed text then reads
//! as what it signs, without the armor (`InlineSigned::text`).
//!
//! The same keys serve the mail we send encrypted (`encryption_key`, for `openpgp_encrypt`).
//!
//! OpenPGP has no CA: a key is trusted because someone decided to. Here that is the operator,
//! who exports the customers' public keys into the keyring file (`gpg --export --armor`), as a
//! Zammad admin imports them into its PGP integration. The verdict (`MailSignature`, kind
//! `openpgp`) reads as a mail client's:
//! - `valid`: the text is as signed, by a key in the keyring whose user ID names the sender's
//!   address, not revoked, and not expired when it signed;
//! - `untrusted`: as signed, by a keyring key that is revoked, was expired, has self-signatures
//!   that do not verify, is a subkey not for signing, or names other addresses; by the key the
//!   mail itself carries in its Autocrypt header (Thunderbird, K-9/FairEmail and Delta Chat send
//!   one), which nothing but the mail vouches for; and an inline signature with unsigned text
//!   around it (a list's footer: only part of what is shown was signed);
//! - `invalid`: changed after signing, or not made by the key it names (a keyring key, or the
//!   Autocrypt one: a mail altered on the way is told without any keyring);
//! - `unverifiable`: no key for it in the keyring or the mail (or no keyring), SHA-1 or weaker, a signature
//!   that cannot be read, or inline text in a charset other than UTF-8 (it was signed in its
//!   own charset's bytes, which are not kept apart from the source).
//!
//! Nothing is refused for a signature. Keys are not fetched from key servers: no network is
//! asked, and a key server's key says no more about who owns it than an Autocrypt one. rPGP
//! (`pgp`) reads the packets and checks the signatures.

use std::io::Cursor;

use mail_parser::{Message, MimeHeaders};
use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, Timestamp};

use crate::model::{MailEncryption, MailSignature, SignatureStatus};

/// The armor line that opens a block of public keys.
const KEY_BLOCK: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
/// The armor lines of the cleartext signature framework.
const SIGNED_MESSAGE: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE_END: &str = "-----END PGP SIGNATURE-----";
/// The armor line of an encrypted message, alone and at the start of a line (every mail's text
/// is searched for it: no string is built per mail).
pub(super) const ENCRYPTED: &str = "-----BEGIN PGP MESSAGE-----";
const ENCRYPTED_LINE: &str = "\n-----BEGIN PGP MESSAGE-----";

/// The public keys in a keyring file's `bytes`: binary (`gpg --export`) or ASCII-armored
/// (`gpg --export --armor`), one block or several one after another. An error names what is
/// wrong, for `switchboard check`.
pub fn keyring(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("holds no OpenPGP public key".into());
    }
    let text = std::str::from_utf8(bytes).ok().filter(|t| t.trim_start().starts_with("-----BEGIN"));
    if text.is_some_and(|t| t.contains("PRIVATE KEY BLOCK")) {
        return Err("holds a secret key: export the public keys alone (gpg --export --armor)".into());
    }
    let blocks: Vec<&[u8]> = match text {
        Some(text) => armor_blocks(text, KEY_BLOCK).map(str::as_bytes).collect(),
        None => vec![bytes],
    };
    let mut keys = Vec::new();
    for block in blocks {
        let (parsed, _) = SignedPublicKey::from_reader_many(Cursor::new(block))
            .map_err(|e| format!("cannot be read as OpenPGP public keys: {e}"))?;
        for key in parsed {
            let key = key.map_err(|e| format!("key {} cannot be read: {e}", keys.len() + 1))?;
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err("holds no OpenPGP public key".into());
    }
    Ok(keys)
}

/// The armored blocks of `text` that open with the armor line `begin`, each from its armor line
/// to the next one's: files that several exports were written into one after another.
pub fn armor_blocks<'a>(text: &'a str, begin: &str) -> impl Iterator<Item = &'a str> {
    let starts: Vec<usize> = text.match_indices(begin).map(|(at, _)| at).collect();
    let ends: Vec<usize> = starts.iter().skip(1).copied().chain([text.len()]).collect();
    starts.into_iter().zip(ends).map(move |(start, end)| &text[start..end])
}

/// The verdict on a PGP/MIME signature (`armored`, the `application/pgp-signature` part) over
/// `signed` (the first part's exact bytes, CRLF line ends), for a mail from `from`.
pub fn detached(
    message: &Message<'_>,
    signed: &[u8],
    armored: &[u8],
    from: &str,
    keys: &[SignedPublicKey],
) -> MailSignature {
    match DetachedSignature::from_armor_single(Cursor::new(armored)) {
        Ok((signature, _)) => verdict(&[signature.signature], signed, from, keys, || carried_key(message, from)),
        Err(e) => unverifiable(format!("the signature cannot be read: {e}")),
    }
}

/// Where an inline signature (the cleartext signature framework) is in `text`: the byte range
/// of the block from its first armor line to its last, and whether anything but blank lines
/// lies outside it.
fn cleartext_block(text: &str) -> Option<(usize, usize, bool)> {
    let start = text.find(SIGNED_MESSAGE)?;
    // The armor line must be a line of its own.
    if !text[..start].is_empty() && !text[..start].ends_with('\n') {
        return None;
    }
    let end = start + text[start..].find(SIGNATURE_END)? + SIGNATURE_END.len();
    let outside = !text[..start].trim().is_empty() || !text[end..].trim().is_empty();
    Some((start, end, outside))
}

/// An inline signature found in a text (`inline`).
pub struct InlineSigned {
    pub signature: MailSignature,
    /// The text with the signed block shown as what it signs, as a mail client shows it:
    /// without the armor lines, the armor headers and the signature, dash-escaping undone
    /// (RFC 9580 §7.1). None when the block cannot be read.
    pub text: Option<String>,
}

/// The verdict on the inline signature in `text` (`message`'s text, decoded), for a mail from
/// `from`, and the text as it reads without the signature's armor.
pub fn inline(message: &Message<'_>, text: &str, from: &str, keys: &[SignedPublicKey]) -> Option<InlineSigned> {
    let (start, end, outside) = cleartext_block(text)?;
    let block = &text[start..end];
    // It was signed in the bytes of its charset, which decoding made UTF-8.
    let utf8 = message.text_bodies().all(|part| {
        let charset = part.content_type().and_then(|c| c.attribute("charset")).unwrap_or("us-ascii");
        ["utf-8", "utf8", "us-ascii", "ascii"].iter().any(|c| charset.eq_ignore_ascii_case(c))
    });
    let unread = |detail: String| Some(InlineSigned { signature: unverifiable(detail), text: None });
    if !utf8 && !block.is_ascii() {
        return unread("the signed text is not in UTF-8, and it was signed in its own charset's bytes".into());
    }
    let cleartext = match CleartextSignedMessage::from_string(block) {
        Ok((cleartext, _)) => cleartext,
        Err(e) => return unread(format!("the signature cannot be read: {e}")),
    };
    let signed = cleartext.signed_text();
    let carried = || carried_key(message, from);
    let mut signature = verdict(cleartext.signatures(), signed.as_bytes(), from, keys, carried);
    if outside {
        unsigned_text_around(&mut signature, "signed");
    }
    let unescaped: String =
        cleartext.text().split_inclusive('\n').map(|line| line.strip_prefix("- ").unwrap_or(line)).collect();
    let text = format!("{}{}{}", &text[..start], unescaped, &text[end..]);
    Some(InlineSigned { signature, text: Some(text) })
}

/// A `valid` verdict on an inline block (`kind`: signed, encrypted) that has text around it,
/// which the signature does not cover, made `untrusted`: only part of what is shown was signed
/// (a list's footer, or anyone's words above it).
pub fn unsigned_text_around(signature: &mut MailSignature, kind: &str) {
    if signature.status == SignatureStatus::Valid {
        signature.status = SignatureStatus::Untrusted;
        signature.detail = format!("{}; text outside the {kind} block was not signed", signature.detail);
    }
}

/// That `message` is OpenPGP-encrypted, which cannot be read here (the channel holds no secret
/// key; with one, `openpgp_decrypt` reads it first):
/// PGP/MIME (RFC 3156 §4, `multipart/encrypted`), or an inline `PGP MESSAGE` block in its
/// `text`.
pub fn encryption(message: &Message<'_>, text: Option<&str>) -> Option<MailEncryption> {
    let inline = || text.is_some_and(|t| t.starts_with(ENCRYPTED) || t.contains(ENCRYPTED_LINE));
    let detail = if is_pgp_mime_encrypted(message) {
        "encrypted to the recipient's OpenPGP key, which the gateway does not hold; the encrypted content is attached"
    } else if inline() {
        "the text is encrypted to the recipient's OpenPGP key, which the gateway does not hold"
    } else {
        return None;
    };
    Some(MailEncryption { kind: "openpgp".into(), decrypted: false, detail: detail.into() })
}

/// Whether `message` is PGP/MIME-encrypted (RFC 3156 §4: `multipart/encrypted` with protocol
/// `application/pgp-encrypted`).
pub fn is_pgp_mime_encrypted(message: &Message<'_>) -> bool {
    message.root_part().content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case("multipart")
            && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("encrypted"))
            && c.attribute("protocol").is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-encrypted"))
    })
}

/// The verdict on the `signatures` an encrypted message held over what it decrypted to
/// (`data`), for `message`, a mail from `from` (see `openpgp_decrypt`).
pub fn embedded(
    message: &Message<'_>,
    signatures: &[Signature],
    data: &[u8],
    from: &str,
    keys: &[SignedPublicKey],
) -> MailSignature {
    verdict(signatures, data, from, keys, || carried_key(message, from))
}

/// The key `message` carries for its sender `from` in its Autocrypt header (see
/// `autocrypt_keydata`). Nothing vouches for it but the mail: a signature it checks is at best
/// `untrusted`, but a mail changed on the way is told `invalid` without a keyring.
fn carried_key(message: &Message<'_>, from: &str) -> Option<SignedPublicKey> {
    SignedPublicKey::from_bytes(Cursor::new(autocrypt_keydata(message, from)?)).ok()
}

/// The key data of `message`'s Autocrypt header for its sender `from` (Autocrypt Level 1
/// §2.1: `addr=…; [prefer-encrypt=mutual;] keydata=…`), as Thunderbird, K-9/FairEmail and
/// Delta Chat send it, undecoded as a key. None when there is no such header, more than one,
/// one for another address, one with an attribute the spec does not know (those must be
/// ignored), or key data that is not base64.
pub fn autocrypt_keydata(message: &Message<'_>, from: &str) -> Option<Vec<u8>> {
    let mut headers = message.headers().iter().filter(|h| h.name.as_str().eq_ignore_ascii_case("autocrypt"));
    let (header, None) = (headers.next()?, headers.next()) else { return None };
    let raw = message.raw_message().get(header.offset_start as usize..header.offset_end as usize)?;
    let (mut addr, mut keydata) = (None, None);
    for attribute in std::str::from_utf8(raw).ok()?.split(';') {
        let (name, value) = attribute.split_once('=')?;
        match name.trim() {
            "addr" => addr = Some(value.trim()),
            "keydata" => keydata = Some(value),
            "prefer-encrypt" => {}
            other if other.starts_with('_') => {}
            _ => return None,
        }
    }
    if !addr?.eq_ignore_ascii_case(from) {
        return None;
    }
    let keydata: String = keydata?.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, keydata).ok()
}

/// The verdict on `signatures` (one, usually) over `data`: the first one a keyring key made
/// decides, else the first one the `carried` key (Autocrypt, read only then) made, which is
/// checked but never trusted, else the first.
fn verdict(
    signatures: &[Signature],
    data: &[u8],
    from: &str,
    keys: &[SignedPublicKey],
    carried: impl FnOnce() -> Option<SignedPublicKey>,
) -> MailSignature {
    let Some(first) = signatures.first() else { return unverifiable("the signature cannot be read".into()) };
    let in_keyring = made_by(signatures, keys);
    let only_carried = in_keyring.is_none();
    let carried = if only_carried { carried() } else { None };
    let found = in_keyring.or_else(|| made_by(signatures, carried.as_slice()));
    let Some((signature, (certificate, key))) = found else {
        let issuer = issuer(first);
        return unverifiable(if keys.is_empty() {
            format!("signed with key {issuer}; no openpgp_keyring_file to check it against")
        } else {
            format!("signed with key {issuer}, which is not in openpgp_keyring_file")
        });
    };
    if !matches!(signature.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
        return unverifiable("not a signature over a document".into());
    }
    match signature.hash_alg() {
        Some(HashAlgorithm::Sha1) => return unverifiable("signed with SHA-1, which is no longer safe".into()),
        Some(
            HashAlgorithm::Sha256
            | HashAlgorithm::Sha384
            | HashAlgorithm::Sha512
            | HashAlgorithm::Sha224
            | HashAlgorithm::Sha3_256
            | HashAlgorithm::Sha3_512,
        ) => {}
        other => {
            let name = other.map(|h| h.to_string()).unwrap_or_else(|| "an unknown digest".into());
            return unverifiable(format!("signed with {name}, which is not accepted"));
        }
    }
    let fingerprint = format!("{:X}", key.fingerprint());
    let as_signed = match key {
        SigningKey::Primary(k) => signature.verify(k, data),
        SigningKey::Subkey(k) => signature.verify(k, data),
    };
    if as_signed.is_err() {
        return MailSignature {
            kind: "openpgp".into(),
            status: SignatureStatus::Invalid,
            signer: None,
            detail: format!("the mail was changed after it was signed, or key {fingerprint} did not sign it"),
        };
    }
    let addresses = user_addresses(certificate);
    let signer = addresses.iter().find(|a| a.eq_ignore_ascii_case(from)).or(addresses.first()).cloned();
    let signed_at = signature.created().unwrap_or_else(Timestamp::now);
    let distrust = if certificate.verify_bindings().is_err() {
        Some("the key's self-signatures do not verify".to_owned())
    } else if let Some(revoked) = revocation(certificate, &key) {
        Some(revoked)
    } else if let Some(expired) = expiry(&key).filter(|at| *at < signed_at.as_secs() as u64) {
        Some(format!("the key had expired when it signed ({})", crate::model::time::rfc3339(expired as i64 * 1000)))
    } else if !key.may_sign() {
        Some("the key is not for signing".to_owned())
    } else if !addresses.iter().any(|a| a.eq_ignore_ascii_case(from)) {
        let named = if addresses.is_empty() { "no address".to_owned() } else { addresses.join(", ") };
        Some(format!("the key is for {named}, not the sender {from}"))
    } else if only_carried {
        Some(format!(
            "signed by {from} with key {fingerprint}, which only the mail itself vouches for (its Autocrypt \
             header): it is not in openpgp_keyring_file"
        ))
    } else {
        None
    };
    MailSignature {
        kind: "openpgp".into(),
        status: if distrust.is_some() { SignatureStatus::Untrusted } else { SignatureStatus::Valid },
        signer,
        detail: distrust.unwrap_or_else(|| format!("signed by {from} with key {fingerprint}")),
    }
}

fn unverifiable(detail: String) -> MailSignature {
    MailSignature { kind: "openpgp".into(), status: SignatureStatus::Unverifiable, signer: None, detail }
}

/// The key a signature names (issuer fingerprint, else key ID), as its fingerprint or key ID
/// in capitals.
fn issuer(signature: &Signature) -> String {
    match (signature.issuer_fingerprint().first(), signature.issuer_key_id().first()) {
        (Some(fingerprint), _) => format!("{fingerprint:X}"),
        (None, Some(id)) => id.as_ref().iter().map(|b| format!("{b:02X}")).collect(),
        (None, None) => "(unnamed)".into(),
    }
}

/// A key of a keyring certificate: one that may have made a signature, or that mail may be
/// encrypted to.
enum SigningKey<'a> {
    Primary(&'a SignedPublicKey),
    Subkey(&'a SignedPublicSubKey),
}

impl SigningKey<'_> {
    fn fingerprint(&self) -> pgp::types::Fingerprint {
        match self {
            SigningKey::Primary(k) => k.fingerprint(),
            SigningKey::Subkey(k) => k.fingerprint(),
        }
    }

    /// A subkey signs only when its binding says so (key flags); a primary key's own use is
    /// not restricted here (GnuPG's default primary key signs).
    fn may_sign(&self) -> bool {
        match self {
            SigningKey::Primary(_) => true,
            SigningKey::Subkey(k) => newest(&k.signatures, SignatureType::SubkeyBinding).is_some_and(|b| {
                b.key_flags().sign()
                    || !b
                        .config()
                        .is_some_and(|c| c.hashed_subpackets().any(|p| matches!(p.data, SubpacketData::KeyFlags(_))))
            }),
        }
    }
}

/// The first of `signatures` that a key of `keys` made, with that key and its certificate.
type Made<'a> = (&'a Signature, (&'a SignedPublicKey, SigningKey<'a>));
fn made_by<'a>(signatures: &'a [Signature], keys: &'a [SignedPublicKey]) -> Option<Made<'a>> {
    signatures.iter().find_map(|s| signing_key(s, keys).map(|k| (s, k)))
}

/// The keyring key that `signature` names (by fingerprint or key ID), with its certificate.
fn signing_key<'a>(
    signature: &Signature,
    keys: &'a [SignedPublicKey],
) -> Option<(&'a SignedPublicKey, SigningKey<'a>)> {
    let (fingerprints, ids) = (signature.issuer_fingerprint(), signature.issuer_key_id());
    let names = |fingerprint: pgp::types::Fingerprint, id: pgp::types::KeyId| {
        fingerprints.iter().any(|f| **f == fingerprint) || ids.iter().any(|i| **i == id)
    };
    keys.iter().find_map(|certificate| {
        if names(certificate.fingerprint(), certificate.legacy_key_id()) {
            return Some((certificate, SigningKey::Primary(certificate)));
        }
        let subkey = certificate.public_subkeys.iter().find(|s| names(s.fingerprint(), s.legacy_key_id()))?;
        Some((certificate, SigningKey::Subkey(subkey)))
    })
}

/// The subkey of a certificate in `keys` to encrypt mail to `address` with: of a certificate
/// whose user ID names the address, whose self-signatures verify, and that is neither revoked
/// nor expired, the newest subkey its binding allows to encrypt that is itself neither. None:
/// there is none.
pub fn encryption_key<'a>(keys: &'a [SignedPublicKey], address: &str) -> Option<&'a SignedPublicSubKey> {
    let now = Timestamp::now().as_secs() as u64;
    let alive = |certificate, key: &SigningKey<'_>| {
        revocation(certificate, key).is_none() && expiry(key).is_none_or(|at| at > now)
    };
    keys.iter()
        .filter(|c| user_addresses(c).iter().any(|a| a.eq_ignore_ascii_case(address)))
        .filter(|c| c.verify_bindings().is_ok() && alive(c, &SigningKey::Primary(c)))
        .flat_map(|c| c.public_subkeys.iter().map(move |s| (c, s)))
        .filter(|(c, s)| may_encrypt(&s.signatures) && alive(c, &SigningKey::Subkey(s)))
        .max_by_key(|(_, s)| s.created_at().as_secs())
        .map(|(_, s)| s)
}

/// Whether a subkey's newest binding (among its `signatures`) allows it to encrypt.
pub fn may_encrypt(signatures: &[Signature]) -> bool {
    newest(signatures, SignatureType::SubkeyBinding)
        .is_some_and(|b| b.key_flags().encrypt_comms() || b.key_flags().encrypt_storage())
}

/// The newest of `signatures` of type `kind`.
fn newest(signatures: &[Signature], kind: SignatureType) -> Option<&Signature> {
    signatures.iter().filter(|s| s.typ() == Some(kind)).max_by_key(|s| s.created().map(Timestamp::as_secs))
}

/// Why `key` of `certificate` is revoked, if it is: a key revocation of the certificate, or a
/// subkey revocation of the subkey (their signatures are checked by `verify_bindings`).
fn revocation(certificate: &SignedPublicKey, key: &SigningKey<'_>) -> Option<String> {
    let revoked = match key {
        SigningKey::Primary(_) => certificate.details.revocation_signatures.first(),
        SigningKey::Subkey(k) => certificate
            .details
            .revocation_signatures
            .first()
            .or_else(|| newest(&k.signatures, SignatureType::SubkeyRevocation)),
    }?;
    let reason = revoked.revocation_reason_string().map(|r| String::from_utf8_lossy(r).into_owned());
    Some(match reason.filter(|r| !r.trim().is_empty()) {
        Some(reason) => format!("the key was revoked ({})", reason.trim()),
        None => "the key was revoked".to_owned(),
    })
}

/// When `key` expires (Unix seconds), if it does: its creation plus the key expiration time of
/// its newest self-signature (a user ID's certification or a direct signature for the primary
/// key, the binding for a subkey).
fn expiry(key: &SigningKey<'_>) -> Option<u64> {
    let (created, lifetime) = match key {
        SigningKey::Primary(k) => {
            let self_signatures =
                k.details.users.iter().flat_map(|u| &u.signatures).chain(&k.details.direct_signatures);
            let newest = self_signatures
                .filter(|s| s.issuer_fingerprint().is_empty() || s.issuer_fingerprint().contains(&&k.fingerprint()))
                .max_by_key(|s| s.created().map(Timestamp::as_secs))?;
            (k.created_at(), newest.key_expiration_time()?)
        }
        SigningKey::Subkey(k) => {
            (k.created_at(), newest(&k.signatures, SignatureType::SubkeyBinding)?.key_expiration_time()?)
        }
    };
    (lifetime.as_secs() > 0).then(|| created.as_secs() as u64 + lifetime.as_secs() as u64)
}

/// The mail addresses `certificate`'s user IDs name (`Ann <ann@example.com>`, or a bare
/// address).
pub(super) fn user_addresses(certificate: &SignedPublicKey) -> Vec<String> {
    let mut addresses: Vec<String> = certificate
        .details
        .users
        .iter()
        .filter_map(|user| user.id.as_str())
        .filter_map(|id| match (id.rfind('<'), id.rfind('>')) {
            (Some(open), Some(close)) if open < close => Some(id[open + 1..close].trim()),
            _ => Some(id.trim()).filter(|id| id.contains('@') && !id.contains(' ')),
        })
        .filter(|address| address.contains('@'))
        .map(str::to_owned)
        .collect();
    addresses.dedup();
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ann's Ed25519 key (`gpg --export --armor`) and a text she clear-signed with it.
    const ANN_KEY: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEaw4OABYJKwYBBAHaRw8BAQdAf8+MtN2bTdJdMc06LDO/my5qZg/QLfQiUHBG
wOQvbVu0IkFubiBFeGFtcGxlIDxhbm5AY3VzdG9tZXIuZXhhbXBsZT6IkAQTFggA
OBYhBNKv3NFVek/JgzEcwDnOqR5SyX/BBQJrDg4AAhsDBQsJCAcCBhUKCQgLAgQW
AgMBAh4BAheAAAoJEDnOqR5SyX/BAGcA/RYV6FjIcfUMulMQb+bHw0NJNkh2qENk
WtEv+ZThvELUAP91N1v5tboopnVWouwMbWrqo1QgOKRpUDbQNxOvcGknDQ==
=AYpL
-----END PGP PUBLIC KEY BLOCK-----
";
    const ANN_SIGNED: &str = "-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

Hello,

please send the invoice for order 7.
-----BEGIN PGP SIGNATURE-----

iHUEARYIAB0WIQTSr9zRVXpPyYMxHMA5zqkeUsl/wQUCaw4OPAAKCRA5zqkeUsl/
wXJWAP9rcLf6B1kWS/T784Db4F6RdPZhjDOJh/dkJ3NB9sROQgEA0wQxwKEYyIaK
I4K1VGa6V4wen9qxf84erX8mn11MtQY=
=P17s
-----END PGP SIGNATURE-----";
    const ANN: &str = "ann@customer.example";

    #[test]
    fn an_inline_signature_is_checked_against_the_keyring() {
        let keys = keyring(ANN_KEY.as_bytes()).unwrap();
        let status = |text: &str, utf8: bool, from: &str, keys: &[SignedPublicKey]| {
            let charset = if utf8 { "utf-8" } else { "iso-8859-1" };
            let mail = format!("From: {from}\r\nContent-Type: text/plain; charset={charset}\r\n\r\n{text}");
            let message = mail_parser::MessageParser::default().parse(mail.as_bytes()).unwrap();
            inline(&message, text, from, keys).map(|s| s.signature.status)
        };
        use SignatureStatus::*;
        assert_eq!(status(ANN_SIGNED, true, ANN, &keys), Some(Valid));
        assert_eq!(status(&ANN_SIGNED.replace("\n", "\r\n"), true, ANN, &keys), Some(Valid));
        assert_eq!(status(&ANN_SIGNED.replace("order 7", "order 8"), true, ANN, &keys), Some(Invalid));
        assert_eq!(status(ANN_SIGNED, true, "bob@customer.example", &keys), Some(Untrusted));
        assert_eq!(status(&format!("{ANN_SIGNED}\n-- \nfooter"), true, ANN, &keys), Some(Untrusted));
        assert_eq!(status(ANN_SIGNED, true, ANN, &[]), Some(Unverifiable));
        assert_eq!(status(&ANN_SIGNED.replace("order 7", "order 7 für"), false, ANN, &keys), Some(Unverifiable));
        assert_eq!(status("Hello", true, ANN, &keys), None);
        // The text reads as what was signed, with what lies around it: no armor, no signature.
        let mail = format!("From: {ANN}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{ANN_SIGNED}");
        let message = mail_parser::MessageParser::default().parse(mail.as_bytes()).unwrap();
        let text = format!("Hello,\n{ANN_SIGNED}\n-- \nfooter");
        let shown = inline(&message, &text, ANN, &keys).unwrap().text.unwrap();
        assert!(!shown.contains("-----") && !shown.contains("Hash:"), "{shown}");
        assert!(shown.starts_with("Hello,\n") && shown.ends_with("\n-- \nfooter"), "{shown}");
        // Two copies of the key, in two blocks, make one keyring.
        assert_eq!(keyring(format!("{ANN_KEY}\n{ANN_KEY}").as_bytes()).unwrap().len(), 2);
    }

    /// Without a keyring, the key the mail carries in its Autocrypt header checks the signature:
    /// `untrusted` at best (only the mail vouches for it), `invalid` when the text was changed.
    /// A header that breaks Autocrypt's rules is ignored.
    #[test]
    fn the_key_a_mail_carries_tells_an_altered_mail_but_is_not_trusted() {
        let keydata: String = ANN_KEY.lines().skip(2).take_while(|l| !l.starts_with('=')).collect();
        let folded: String =
            keydata.as_bytes().chunks(60).map(|c| format!("\r\n {}", std::str::from_utf8(c).unwrap())).collect();
        let verdict = |autocrypt: &[String], text: &str| {
            let headers: String = autocrypt.iter().map(|h| format!("Autocrypt: {h}\r\n")).collect();
            let mail = format!("From: Ann <{ANN}>\r\n{headers}Content-Type: text/plain; charset=utf-8\r\n\r\n{text}");
            let message = mail_parser::MessageParser::default().parse(mail.as_bytes()).unwrap();
            inline(&message, text, ANN, &[]).unwrap().signature
        };
        let header = format!("addr={ANN}; prefer-encrypt=mutual; keydata={folded}");
        let carried = verdict(std::slice::from_ref(&header), ANN_SIGNED);
        assert_eq!(carried.status, SignatureStatus::Untrusted, "{carried:?}");
        assert!(carried.detail.contains("only the mail itself vouches for"), "{carried:?}");
        assert_eq!(carried.signer.as_deref(), Some(ANN));
        let altered = verdict(std::slice::from_ref(&header), &ANN_SIGNED.replace("order 7", "order 8"));
        assert_eq!(altered.status, SignatureStatus::Invalid, "{altered:?}");
        assert_eq!(
            verdict(&[format!("addr={ANN}; _note=x; keydata={folded}")], ANN_SIGNED).status,
            SignatureStatus::Untrusted
        );
        for ignored in [
            vec![format!("addr=bob@customer.example; keydata={folded}")],
            vec![format!("addr={ANN}; colour=blue; keydata={folded}")],
            vec![header.clone(), header.clone()],
            vec![format!("addr={ANN}; keydata=!!!")],
        ] {
            assert_eq!(verdict(&ignored, ANN_SIGNED).status, SignatureStatus::Unverifiable, "{ignored:?}");
        }
    }

    /// Any damage to a signature packet gives a verdict, never a panic, and never `valid` unless
    /// it left what is signed and the signature's value as they were (the damage was in the
    /// unhashed subpackets, or in a number's bit count, which the signature does not cover).
    #[test]
    fn damaged_signatures_are_checked_without_a_panic() {
        use base64::Engine;
        let keys = keyring(ANN_KEY.as_bytes()).unwrap();
        let (message, _) = CleartextSignedMessage::from_string(ANN_SIGNED).unwrap();
        let text = message.signed_text();
        let armored: String = ANN_SIGNED.lines().skip(8).take_while(|l| !l.starts_with('=')).collect();
        let packet = base64::engine::general_purpose::STANDARD.decode(armored).unwrap();
        let parse = |bytes: &[u8]| DetachedSignature::from_bytes(Cursor::new(bytes.to_vec())).ok();
        let clean = parse(&packet).unwrap().signature;
        // What a signature's verdict may rest on: all but its unhashed subpackets.
        let covered = |s: &Signature| {
            let mut config = s.config().cloned();
            if let Some(c) = config.as_mut() {
                c.unhashed_subpackets.clear();
            }
            (config, s.signature().cloned(), s.signed_hash_value())
        };
        assert_eq!(
            verdict(std::slice::from_ref(&clean), text.as_bytes(), ANN, &keys, || None).status,
            SignatureStatus::Valid
        );
        let mut read = 0;
        // (Few: each read one is verified, and an unoptimised Ed25519 takes milliseconds.)
        for (at, damaged) in super::super::tests::bit_flips(&packet, 1_000) {
            if let Some(signature) = parse(&damaged) {
                read += 1;
                let found = verdict(std::slice::from_ref(&signature.signature), text.as_bytes(), ANN, &keys, || None);
                if found.status == SignatureStatus::Valid {
                    assert!(covered(&signature.signature) == covered(&clean), "byte {at}: {found:?}");
                }
            }
        }
        assert!(read > 200, "only {read} damaged packets were read at all");
    }

    #[test]
    fn an_inline_signature_is_found_with_what_lies_around_it() {
        let block = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nHi\n-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----";
        let found =
            |text: &str| cleartext_block(text).map(|(start, end, outside)| (text[start..end].to_owned(), outside));
        assert_eq!(found(block), Some((block.to_owned(), false)));
        assert_eq!(found(&format!("\n\n{block}\n\n")), Some((block.to_owned(), false)));
        assert_eq!(found(&format!("{block}\n--\nList footer\n")), Some((block.to_owned(), true)));
        assert_eq!(found(&format!("Hello\n{block}")), Some((block.to_owned(), true)));
        assert_eq!(found(&format!("Quoted: {block}")), None);
        assert_eq!(found("-----BEGIN PGP SIGNED MESSAGE-----\nno end"), None);
    }

    #[test]
    fn a_keyring_that_is_no_keyring_is_named() {
        assert_eq!(keyring(b"").unwrap_err(), "holds no OpenPGP public key");
        assert!(keyring(b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxx\n-----END PGP PRIVATE KEY BLOCK-----\n")
            .unwrap_err()
            .contains("secret key"));
        assert!(keyring(b"hello, I am no key").is_err());
        assert!(keyring(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n-----END PGP PUBLIC KEY BLOCK-----\n").is_err());
    }
}
