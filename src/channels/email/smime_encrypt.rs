//! The mail we send, S/MIME-encrypted to its recipients' certificates (`smime_encrypt`).
//!
//! A customer whose Outlook or Thunderbird encrypts its mail to our certificate
//! (`smime_decrypt`) expects the answer encrypted too: it usually quotes what they wrote. With
//! `smime_encrypt = "when_possible"` a mail goes out encrypted when every recipient (To, Cc, Bcc) has a
//! certificate in `smime_recipients_file`, and in clear otherwise; with `"always"` it is not
//! sent then (`message.failed`, `smime_no_certificate`, naming the recipient). When the channel
//! also encrypts with OpenPGP, that is tried first.
//!
//! A recipient's certificate comes from their own signed mail, as Outlook and Thunderbird keep
//! it: the certificate of each mail whose S/MIME signature is valid (a trusted CA issued it for
//! the sender's address) is kept in the channel's state for that address (`remember`), the one
//! valid longest when several came. The operator may add certificates in
//! `smime_recipients_file`. Of these, one is used that names the address
//! (`Certificate::mail_addresses`), chains now to a trusted CA (the Mozilla roots or
//! `smime_ca_file`; through the intermediates kept beside it) for mail protection, has a key
//! we can encrypt to (RSA, or EC P-256/P-384) and a key usage allowing it; the one valid
//! longest when several do.
//!
//! The form is what every S/MIME client reads (RFC 8551 §3.3): `application/pkcs7-mime;
//! smime-type=enveloped-data`, CMS EnvelopedData, the content AES-256-CBC. The content key goes
//! to an RSA key by PKCS#1 v1.5 key transport (what Outlook writes and every client reads), to
//! an EC key by ephemeral-static ECDH with the X9.63 KDF over SHA-256 and AES-256 key wrap
//! (RFC 5753). The mail is also encrypted to our own certificate (`smime_certificate_file`), so
//! that the copy in the Sent folder stays readable, when its key usage allows (a signing-only
//! certificate is left out, and the log says so), and signed inside with it, as Outlook does.
//!
//! Bcc: EnvelopedData names each certificate it is encrypted to, so a Bcc recipient's would
//! show them to the others. Each Bcc recipient gets a copy of their own, encrypted to their
//! certificate and ours, sent to them alone; the mail for To and Cc is encrypted to theirs
//! (`SmtpOutbound::protect`). As for To and Cc, each must have a certificate.
//! The subject and addresses travel in the clear: Outlook shows no protected header.

use lettre::message::header::{ContentDisposition, ContentTransferEncoding, ContentType};
use lettre::message::{Body, SinglePart};
use rand::RngCore;
use rsa::pkcs8::DecodePublicKey;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::ber::oid::*;
use super::ber::{
    der, Element, BIT_STRING, CONTEXT_0, CONTEXT_0_PRIMITIVE, CONTEXT_1, INTEGER, OCTET_STRING, OID, SEQUENCE, SET,
};
use super::config::{EmailChannelConfig, EncryptWhen};
use super::openpgp_encrypt::Refusal;
use super::smime::{self, Certificate};
use crate::model::MailEncryption;
use crate::pipeline::ChannelState;

/// RFC 5280 §4.2.1.3 key usage bits.
const KEY_ENCIPHERMENT: u8 = 2;
const KEY_AGREEMENT: u8 = 4;

/// Encrypts the mail a channel sends with S/MIME, by its policy.
pub(super) struct SmimeEncryptor {
    policy: EncryptWhen,
    /// Where the certificates of senders' signed mail are kept (`remember`).
    state: ChannelState,
    /// The certificates of `smime_recipients_file`, DER.
    certificates: Vec<Vec<u8>>,
    /// `smime_ca_file`: CAs trusted besides the Mozilla roots.
    ca_pem: Option<Vec<u8>>,
    /// Our own certificate (`smime_certificate_file`'s first), DER.
    own: Option<Vec<u8>>,
}

/// The certificates a mail is encrypted to (`SmimeEncryptor::certificates`), DER.
pub(super) struct RecipientCertificates {
    certificates: Vec<Vec<u8>>,
    /// Their addresses, for the message's `encryption`.
    whose: String,
}

/// A recipient's public key, by what it can do.
enum RecipientKey {
    Rsa(Box<rsa::RsaPublicKey>),
    P256(p256::PublicKey),
    P384(p384::PublicKey),
}

impl RecipientKey {
    /// The key of `certificate`, if it is one we encrypt to and its key usage allows it.
    fn of(certificate: &Certificate<'_>) -> Option<RecipientKey> {
        let spki = certificate.public_key;
        if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(spki) {
            return certificate.allows_key_usage(KEY_ENCIPHERMENT).then(|| RecipientKey::Rsa(Box::new(key)));
        }
        if !certificate.allows_key_usage(KEY_AGREEMENT) {
            return None;
        }
        if let Ok(key) = p256::PublicKey::from_public_key_der(spki) {
            return Some(RecipientKey::P256(key));
        }
        p384::PublicKey::from_public_key_der(spki).ok().map(RecipientKey::P384)
    }
}

impl SmimeEncryptor {
    /// None when the channel does not encrypt with S/MIME.
    pub fn new(config: &EmailChannelConfig, state: ChannelState) -> Option<SmimeEncryptor> {
        let pem = |pem: &Option<Vec<u8>>| -> Vec<Vec<u8>> {
            let pem = pem.as_deref().unwrap_or_default();
            CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).map(|c| c.to_vec()).collect()
        };
        if config.smime_encrypt == EncryptWhen::Never {
            return None;
        }
        // Ours is encrypted to when it can be: a signing-only certificate (an EC one whose key
        // usage is digitalSignature alone) leaves the Sent copy unreadable to us, but must not
        // stop every mail.
        let own = pem(&config.smime_certificate_pem).into_iter().next().filter(|der| {
            let usable = Element::parse(der).and_then(smime::certificate).is_some_and(|c| RecipientKey::of(&c).is_some());
            if !usable {
                tracing::warn!(channel = %config.id, "smime_certificate_file's certificate cannot be encrypted to (its key or key usage): S/MIME-encrypted mail is not encrypted to us too, and its Sent copy stays unreadable here");
            }
            usable
        });
        Some(SmimeEncryptor {
            policy: config.smime_encrypt,
            state,
            certificates: pem(&config.smime_recipients_pem),
            ca_pem: config.smime_ca_pem.clone(),
            own,
        })
    }

    pub fn policy(&self) -> EncryptWhen {
        self.policy
    }

    /// The certificates a mail to `recipients` is encrypted to; why not, when one has none.
    pub async fn certificates(&self, recipients: &[&str]) -> Result<RecipientCertificates, Refusal> {
        let mut known = Vec::new();
        for address in recipients {
            known.extend(kept(&self.state, address).await);
        }
        let parsed: Vec<Certificate<'_>> = self
            .certificates
            .iter()
            .chain(&known)
            .filter_map(|der| Element::parse(der).and_then(smime::certificate))
            .collect();
        let mut chosen = Vec::new();
        for address in recipients {
            let usable = parsed
                .iter()
                .filter(|c| c.mail_addresses().iter().any(|a| a.eq_ignore_ascii_case(address)))
                .filter(|c| RecipientKey::of(c).is_some())
                .filter(|c| smime::trusted_now(c, &parsed, self.ca_pem.as_deref()))
                .max_by_key(|c| c.not_after.map(|t| t.as_secs()));
            match usable {
                Some(certificate) => chosen.push(certificate.der().to_vec()),
                None => {
                    return Err((
                        "smime_no_certificate",
                        format!(
                            "no usable S/MIME certificate for {address} (from their validly signed mail, or in \
                             smime_recipients_file: one that names the address, from a trusted CA, valid now, with \
                             an RSA or EC P-256/P-384 key)"
                        ),
                    ))
                }
            }
        }
        Ok(RecipientCertificates { certificates: chosen, whose: recipients.join(", ") })
    }

    /// `entity` (the MIME entity to send: the body, signed or not) as an S/MIME-encrypted part
    /// for `recipients` and us, with what the sent message says of it.
    pub fn encrypt(
        &self,
        entity: &[u8],
        recipients: RecipientCertificates,
    ) -> Result<(SinglePart, MailEncryption), String> {
        let mut content_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut content_key);
        let mut infos = Vec::new();
        for der in recipients.certificates.iter().chain(&self.own) {
            let certificate = Element::parse(der).and_then(smime::certificate).ok_or("a certificate cannot be read")?;
            let key = RecipientKey::of(&certificate).ok_or("a certificate's key cannot be encrypted to")?;
            infos.push(recipient_info(&certificate, &key, &content_key)?);
        }
        let enveloped = enveloped_data(infos, &content_key, entity);
        let body = Body::new_with_encoding(enveloped, ContentTransferEncoding::Base64)
            .map_err(|_| "the encrypted mail cannot be encoded")?;
        let part = SinglePart::builder()
            .header(
                ContentType::parse("application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"")
                    .expect("valid"),
            )
            .header(ContentDisposition::attachment("smime.p7m"))
            .body(body);
        let ours = if self.own.is_some() { ", and to ours" } else { "" };
        let detail = format!("sent S/MIME-encrypted to the certificates of {}{ours}", recipients.whose);
        Ok((part, MailEncryption { kind: "smime".into(), decrypted: false, detail }))
    }
}

/// The `channel_state` key under which the certificates of `address`'s signed mail are kept.
fn state_key(address: &str) -> String {
    format!("smime:certificates:{}", address.to_lowercase())
}

/// The certificates kept for `address` (`remember`), DER; none when the store cannot say.
async fn kept(state: &ChannelState, address: &str) -> Vec<Vec<u8>> {
    let value = match state.get(&state_key(address)).await {
        Ok(value) => value.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(channel = state.channel_id(), address, error = %e, "the kept S/MIME certificates cannot be read");
            String::new()
        }
    };
    let engine = &base64::engine::general_purpose::STANDARD;
    value.split(' ').filter_map(|c| base64::Engine::decode(engine, c).ok()).filter(|c| !c.is_empty()).collect()
}

/// Keeps `certificates` (the sender's first, then the intermediates its signature carried) of
/// `address`'s validly signed mail, for the mail we encrypt to them: what Outlook and
/// Thunderbird do with a signed mail. A certificate that expires sooner than the one kept does
/// not replace it (an old mail imported late), and the same one is not written again.
pub(super) async fn remember(state: &ChannelState, address: &str, certificates: &[Vec<u8>]) {
    let expiry =
        |der: &[u8]| Element::parse(der).and_then(smime::certificate).and_then(|c| c.not_after).map(|t| t.as_secs());
    let Some(new) = certificates.first().and_then(|c| expiry(c)) else { return };
    let old = kept(state, address).await;
    if old.first().and_then(|c| expiry(c)).is_some_and(|old| old >= new) {
        return;
    }
    let engine = &base64::engine::general_purpose::STANDARD;
    let value = certificates.iter().map(|c| base64::Engine::encode(engine, c)).collect::<Vec<_>>().join(" ");
    match state.set(&state_key(address), &value).await {
        Ok(()) => tracing::info!(channel = state.channel_id(), address, "kept the S/MIME certificate of a validly signed mail: mail to this address can be encrypted to it (smime_encrypt)"),
        Err(e) => tracing::warn!(channel = state.channel_id(), address, error = %e, "the S/MIME certificate of a signed mail could not be kept"),
    }
}

/// A ContentInfo of EnvelopedData: `entity` encrypted with AES-256-CBC under `content_key`,
/// for the RecipientInfos `infos`.
fn enveloped_data(mut infos: Vec<Vec<u8>>, content_key: &[u8; 32], entity: &[u8]) -> Vec<u8> {
    let mut iv = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    let encrypted = aes256_cbc(content_key, &iv, entity);
    let algorithm = der(SEQUENCE, &[&der(OID, &[AES256_CBC]), &der(OCTET_STRING, &[&iv])]);
    let content = der(SEQUENCE, &[&der(OID, &[ID_DATA]), &algorithm, &der(CONTEXT_0_PRIMITIVE, &[&encrypted])]);
    // Version 2 with a key agreement among the recipients, else 0 (RFC 5652 §6.1).
    let version = if infos.iter().any(|i| i[0] == CONTEXT_1) { 2 } else { 0 };
    // A DER SET OF is in the order of its encodings.
    infos.sort();
    let infos: Vec<&[u8]> = infos.iter().map(Vec::as_slice).collect();
    let enveloped = der(SEQUENCE, &[&[INTEGER, 1, version], &der(SET, &infos), &content]);
    der(SEQUENCE, &[&der(OID, &[ID_ENVELOPED_DATA]), &der(CONTEXT_0, &[&enveloped])])
}

/// The RecipientInfo handing `content_key` to `certificate`'s `key`, which names it by issuer
/// and serial number: key transport to RSA, key agreement with EC.
fn recipient_info(certificate: &Certificate<'_>, key: &RecipientKey, content_key: &[u8]) -> Result<Vec<u8>, String> {
    let failed = |e: &dyn std::fmt::Display| format!("the mail could not be encrypted: {e}");
    let rid = der(SEQUENCE, &[certificate.issuer, &der(INTEGER, &[certificate.serial])]);
    let mut rng = rand::rngs::OsRng;
    let (ephemeral, shared) = match key {
        RecipientKey::Rsa(public) => {
            let encrypted = public.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, content_key).map_err(|e| failed(&e))?;
            let algorithm = der(SEQUENCE, &[&der(OID, &[RSA_ENCRYPTION]), &[0x05, 0x00]]);
            return Ok(der(SEQUENCE, &[&[INTEGER, 1, 0], &rid, &algorithm, &der(OCTET_STRING, &[&encrypted])]));
        }
        RecipientKey::P256(public) => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let secret = p256::ecdh::EphemeralSecret::random(&mut rng);
            let point = secret.public_key().to_encoded_point(false).as_bytes().to_vec();
            (point, secret.diffie_hellman(public).raw_secret_bytes().to_vec())
        }
        RecipientKey::P384(public) => {
            use p384::elliptic_curve::sec1::ToEncodedPoint;
            let secret = p384::ecdh::EphemeralSecret::random(&mut rng);
            let point = secret.public_key().to_encoded_point(false).as_bytes().to_vec();
            (point, secret.diffie_hellman(public).raw_secret_bytes().to_vec())
        }
    };
    let wrap = der(SEQUENCE, &[&der(OID, &[AES256_WRAP])]);
    let kek = super::smime_decrypt::key_encryption_key(DH_STD_SHA256_KDF, &shared, &wrap, None, 32)
        .expect("a scheme smime_decrypt reads");
    let kek = aes_kw::KekAes256::try_from(&kek[..]).map_err(|e| failed(&e))?;
    let wrapped = kek.wrap_vec(content_key).map_err(|e| failed(&e))?;
    // originator [0] { originatorKey [1] { id-ecPublicKey, the ephemeral point } }
    let public_key =
        der(CONTEXT_1, &[&der(SEQUENCE, &[&der(OID, &[EC_PUBLIC_KEY])]), &der(BIT_STRING, &[&[0], &ephemeral])]);
    let originator = der(CONTEXT_0, &[&public_key]);
    let algorithm = der(SEQUENCE, &[&der(OID, &[DH_STD_SHA256_KDF]), &wrap]);
    let keys = der(SEQUENCE, &[&der(SEQUENCE, &[&rid, &der(OCTET_STRING, &[&wrapped])])]);
    Ok(der(CONTEXT_1, &[&[INTEGER, 1, 3], &originator, &algorithm, &keys]))
}

/// `data` encrypted with AES-256 in CBC mode from `iv`, PKCS#7-padded (RFC 5652 §6.3).
fn aes256_cbc(key: &[u8; 32], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    use aes::cipher::{BlockEncrypt, KeyInit};
    let cipher = aes::Aes256::new(key.into());
    let pad = 16 - data.len() % 16;
    let mut out = Vec::with_capacity(data.len() + pad);
    out.extend_from_slice(data);
    out.resize(data.len() + pad, pad as u8);
    let mut previous = *iv;
    for block in out.chunks_mut(16) {
        for (b, p) in block.iter_mut().zip(previous) {
            *b ^= p;
        }
        let block = aes::cipher::generic_array::GenericArray::from_mut_slice(block);
        cipher.encrypt_block(block);
        previous.copy_from_slice(block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The throwaway certificates of `smime_decrypt`'s tests (RSA, and EC P-384) with their
    /// keys: what we encrypt to each (key transport, key agreement), our own decryption reads
    /// back. (openssl reading it is the integration test's.)
    #[test]
    fn what_we_encrypt_is_read_back_with_the_recipients_key() {
        let fixture = |name: &str| {
            std::fs::read(format!("{}/tests/fixtures/smime-decrypt/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        };
        let entity = b"Content-Type: text/plain; charset=utf-8\r\n\r\nThe fix ships on Monday.\r\n";
        for (certificate, key) in [("support.pem", "support.key"), ("support-p384.pem", "support-p384.key")] {
            let (pem, key) = (fixture(certificate), String::from_utf8(fixture(key)).unwrap());
            let der = CertificateDer::pem_slice_iter(&pem).next().unwrap().unwrap();
            let certificate = smime::certificate(Element::parse(&der).unwrap()).unwrap();
            let key_of = RecipientKey::of(&certificate).unwrap();
            let mut content_key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut content_key);
            let info = recipient_info(&certificate, &key_of, &content_key).unwrap();
            let enveloped = enveloped_data(vec![info], &content_key, entity);
            assert_eq!(super::super::smime_decrypt::decrypt_with(&enveloped, &pem, &key).unwrap(), entity);
        }
    }

    /// A kept certificate is replaced only by one valid longer, and survives a reopened store.
    #[tokio::test]
    async fn the_certificate_valid_longest_is_kept() {
        let der = |name: &str| {
            let pem =
                std::fs::read(format!("{}/tests/fixtures/smime-decrypt/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            CertificateDer::pem_slice_iter(&pem).next().unwrap().unwrap().to_vec()
        };
        // Valid until 2036, and until 2126.
        let (sooner, later) = (der("support-p384.pem"), der("support.pem"));
        let dir = tempfile::tempdir().unwrap();
        let state = ChannelState::new(crate::store::Store::open(dir.path()).unwrap(), "support");
        assert!(kept(&state, "Ann@Example.org").await.is_empty());
        remember(&state, "ann@example.org", std::slice::from_ref(&sooner)).await;
        assert_eq!(kept(&state, "Ann@Example.org").await, std::slice::from_ref(&sooner));
        remember(&state, "ann@example.org", &[later.clone(), sooner.clone()]).await;
        assert_eq!(kept(&state, "ann@example.org").await, [later.clone(), sooner.clone()]);
        // An older mail imported late does not bring the sooner one back.
        remember(&state, "ann@example.org", std::slice::from_ref(&sooner)).await;
        drop(state);
        let store = crate::store::Store::open(dir.path()).unwrap();
        let state = ChannelState::new(store.clone(), "support");
        assert_eq!(kept(&state, "ann@example.org").await, [later, sooner]);
        // Another channel keeps its own.
        assert!(kept(&ChannelState::new(store, "sales"), "ann@example.org").await.is_empty());
    }

    /// Our own certificate is encrypted to when its key and key usage allow it; a signing-only
    /// one (keyUsage digitalSignature alone) is left out rather than failing every mail.
    #[tokio::test]
    async fn our_certificate_is_a_recipient_only_when_it_can_be() {
        let dir = tempfile::tempdir().unwrap();
        let state = ChannelState::new(crate::store::Store::open(dir.path()).unwrap(), "support");
        let mut config = crate::channels::email::tests::channel();
        config.smime_encrypt = EncryptWhen::WhenPossible;
        let fixture = |name: &str| {
            std::fs::read(format!("{}/tests/fixtures/smime-decrypt/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        };
        config.smime_certificate_pem = Some(fixture("support-p384.pem"));
        assert!(SmimeEncryptor::new(&config, state.clone()).unwrap().own.is_some());
        config.smime_certificate_pem = Some(fixture("support-signing-only.pem"));
        assert!(SmimeEncryptor::new(&config, state).unwrap().own.is_none());
    }

    #[test]
    fn cbc_round_trips_every_padding_length() {
        let (key, iv) = ([9u8; 32], [3u8; 16]);
        for length in 0..40 {
            let data: Vec<u8> = (0..length as u8).collect();
            let encrypted = aes256_cbc(&key, &iv, &data);
            assert_eq!(encrypted.len(), (length / 16 + 1) * 16);
            let decrypted = super::super::smime_decrypt::aes_cbc(&key, &iv, &encrypted).unwrap();
            assert_eq!(decrypted, data);
        }
    }
}
