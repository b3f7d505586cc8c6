//! S/MIME-encrypted mail (RFC 8551 §3.3, CMS EnvelopedData; AuthEnvelopedData, RFC 5083) read
//! with the channel's own S/MIME key (`smime_certificate_file` and `smime_key`).
//!
//! A channel that signs its mail (`smime_sign`) hands its certificate to every customer: Outlook,
//! Apple Mail and Thunderbird keep it and may then encrypt their replies to it. Without the key
//! such a reply is an empty message with an `smime.p7m` file; with it, it is read as the mail it
//! encrypts (`smime::inner_mail`), under the mail's own header, and a signature inside (Outlook
//! signs, then encrypts) is checked as any other.
//!
//! What is read: key transport to our certificate's RSA key (PKCS#1 v1.5, which Outlook and
//! openssl write by default, or RSAES-OAEP with SHA-1 or SHA-256), named by issuer and serial
//! number or by subject key identifier; content encrypted with AES-128/192/256-CBC,
//! Triple-DES-CBC (older Outlook) or AES-128/256-GCM. Key agreement (an EC certificate) is not
//! read, and says so. The message says what was done (`MailEncryption`, kind `smime`), or why
//! not: encrypted to other certificates, or not decryptable (changed on the way, another key).
//! The mail's source stays as fetched, encrypted.
//!
//! The RSA decryption is the `rsa` crate's (RustCrypto, already in the tree through rPGP), whose
//! PKCS#1 v1.5 decryption is not constant-time (RUSTSEC-2023-0071): an attacker who can time the
//! gateway's import of many crafted mails might learn of the key. The CBC and GCM ciphers are
//! RustCrypto's `aes`/`des` and ring's.

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPrivateKey};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::ber::oid::*;
use super::ber::{Element, CONTEXT_0, INTEGER, OCTET_STRING, SEQUENCE, SET};
use super::config::EmailChannelConfig;
use super::smime;

/// What decrypting an S/MIME-encrypted mail came to: the MIME entity it encrypts, or why not.
pub(super) type Decrypted = Result<Vec<u8>, String>;

/// `ber` (a CMS ContentInfo of enveloped or auth-enveloped data) decrypted with the channel's
/// S/MIME key; None when the channel has none.
pub(super) fn decrypt(ber: &[u8], channel: &EmailChannelConfig) -> Option<Decrypted> {
    let (pem, key) = (channel.smime_certificate_pem.as_deref()?, channel.smime_key.as_ref()?);
    Some(decrypt_with(ber, pem, key.expose()))
}

fn decrypt_with(ber: &[u8], certificate_pem: &[u8], key_pem: &str) -> Decrypted {
    let unreadable = || "the encrypted content cannot be read as CMS; the file smime.p7m keeps it".to_owned();
    let der = CertificateDer::pem_slice_iter(certificate_pem).next().and_then(Result::ok).ok_or_else(unreadable)?;
    let ours = Element::parse(&der).and_then(smime::certificate).ok_or_else(unreadable)?;
    let mut info = Element::parse(ber).and_then(|e| e.children(SEQUENCE)).ok_or_else(unreadable)?;
    let kind = info.next().ok_or_else(unreadable)?;
    let authenticated = kind.is_oid(ID_AUTH_ENVELOPED_DATA);
    let enveloped = info.next().and_then(|c| c.children(CONTEXT_0)?.next()).ok_or_else(unreadable)?;
    let mut fields = enveloped.children(SEQUENCE).ok_or_else(unreadable)?.filter(|f| f.tag != INTEGER).peekable();
    if fields.peek().is_some_and(|f| f.tag == CONTEXT_0) {
        fields.next(); // originatorInfo
    }
    let recipients = fields.next().filter(|r| r.tag == SET).ok_or_else(unreadable)?;
    let content = fields.next().filter(|c| c.tag == SEQUENCE).ok_or_else(unreadable)?;
    // AuthEnvelopedData: authAttrs [1] (authenticated as a DER SET OF), then the tag.
    let (aad, tag) = if authenticated {
        let mut rest: Vec<Element<'_>> = fields.collect();
        let attributes = rest.iter().position(|f| f.tag == 0xa1).map(|at| rest.remove(at));
        let aad = attributes.map(|a| [&[SET][..], &a.raw[1..]].concat()).unwrap_or_default();
        let tag = rest.into_iter().find(|f| f.tag == OCTET_STRING).ok_or_else(unreadable)?;
        (aad, Some(tag.content))
    } else {
        (Vec::new(), None)
    };

    let mut key_agreement = false;
    let mut ours_found = None;
    for recipient in recipients.children(SET).ok_or_else(unreadable)? {
        if recipient.tag != SEQUENCE {
            key_agreement |= recipient.tag == 0xa1;
            continue;
        }
        let mut parts = recipient.children(SEQUENCE).ok_or_else(unreadable)?.skip(1);
        let (Some(rid), Some(algorithm), Some(encrypted_key)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ours.is(rid) {
            ours_found = Some((algorithm, encrypted_key.content));
        }
    }
    let Some((algorithm, encrypted_key)) = ours_found else {
        return Err(if key_agreement {
            "encrypted by key agreement (to an EC certificate), which is not read here; the file smime.p7m keeps it"
                .into()
        } else {
            "encrypted to other certificates than smime_certificate_file's; the file smime.p7m keeps it".into()
        });
    };
    let key = RsaPrivateKey::from_pkcs8_pem(key_pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(key_pem))
        .map_err(|_| "encrypted to our certificate, whose key is not RSA: not read here".to_owned())?;
    let content_key = unwrap_key(&key, algorithm, encrypted_key)?;

    let mut content = content.children(SEQUENCE).ok_or_else(unreadable)?.skip(1);
    let algorithm = content.next().ok_or_else(unreadable)?;
    let encrypted = content.next().and_then(Element::implicit_octets).ok_or_else(unreadable)?;
    let mut algorithm = algorithm.children(SEQUENCE).ok_or_else(unreadable)?;
    let (cipher, parameters) = (algorithm.next().ok_or_else(unreadable)?, algorithm.next());
    let damaged =
        || "it cannot be decrypted: it was changed or damaged on the way; the file smime.p7m keeps it".to_owned();
    let iv = || parameters.filter(|p| p.tag == OCTET_STRING).map(|p| p.content).ok_or_else(unreadable);
    match cipher.content {
        AES128_CBC | AES192_CBC | AES256_CBC => aes_cbc(&content_key, iv()?, &encrypted).ok_or_else(damaged),
        DES_EDE3_CBC => {
            use aes::cipher::KeyInit;
            let cipher = des::TdesEde3::new_from_slice(&content_key).map_err(|_| damaged())?;
            cbc(&cipher, iv()?, &encrypted).ok_or_else(damaged)
        }
        AES128_GCM | AES256_GCM => {
            let nonce = parameters.and_then(|p| p.children(SEQUENCE)?.next()).filter(|n| n.tag == OCTET_STRING);
            let (nonce, tag) = (nonce.ok_or_else(unreadable)?.content, tag.ok_or_else(unreadable)?);
            aes_gcm(&content_key, nonce, &aad, &encrypted, tag).ok_or_else(damaged)
        }
        other => Err(format!(
            "encrypted with a cipher not read here ({}); the file smime.p7m keeps it",
            other.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )),
    }
}

/// The content-encryption key, decrypted from `encrypted` with our RSA key by the key
/// transport `algorithm` (an AlgorithmIdentifier).
fn unwrap_key(key: &RsaPrivateKey, algorithm: Element<'_>, encrypted: &[u8]) -> Result<Vec<u8>, String> {
    let failed = |_| "it cannot be decrypted with our key (another key, or damaged on the way)".to_owned();
    let mut algorithm = algorithm.children(SEQUENCE).into_iter().flatten();
    let oid = algorithm.next().filter(|o| o.tag == super::ber::OID).map(|o| o.content);
    match oid {
        Some(RSA_ENCRYPTION) => key.decrypt(Pkcs1v15Encrypt, encrypted).map_err(failed),
        Some(RSAES_OAEP) => {
            // RSAES-OAEP-params: [0] hash (SHA-1 by default), [1] mask generation (MGF1 with
            // SHA-1 by default).
            let parameters: Vec<Element<'_>> =
                algorithm.next().and_then(|p| p.children(SEQUENCE)).into_iter().flatten().collect();
            let hash_in = |tag: u8, inner: bool| {
                let field = parameters.iter().find(|p| p.tag == tag)?.children(tag)?.next()?;
                let mut identifier = field.children(SEQUENCE)?;
                let mut oid = identifier.next()?;
                if inner {
                    // MGF1's own parameter is the hash's AlgorithmIdentifier.
                    if !oid.is_oid(MGF1) {
                        return Some(&[][..]);
                    }
                    oid = identifier.next()?.children(SEQUENCE)?.next()?;
                }
                Some(oid.content)
            };
            let (hash, mask) = (hash_in(CONTEXT_0, false).unwrap_or(SHA1), hash_in(0xa1, true).unwrap_or(SHA1));
            let padding = match (hash, mask) {
                (SHA1, SHA1) => Oaep::new::<sha1::Sha1>(),
                (SHA256, SHA256) => Oaep::new::<sha2::Sha256>(),
                (SHA256, SHA1) => Oaep::new_with_mgf_hash::<sha2::Sha256, sha1::Sha1>(),
                _ => return Err("encrypted to our key with RSAES-OAEP parameters not read here".into()),
            };
            key.decrypt(padding, encrypted).map_err(failed)
        }
        _ => Err("encrypted to our certificate with a key transport not read here".into()),
    }
}

fn aes_cbc(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    use aes::cipher::KeyInit;
    match key.len() {
        16 => cbc(&aes::Aes128::new_from_slice(key).ok()?, iv, data),
        24 => cbc(&aes::Aes192::new_from_slice(key).ok()?, iv, data),
        32 => cbc(&aes::Aes256::new_from_slice(key).ok()?, iv, data),
        _ => None,
    }
}

/// `data` decrypted in CBC mode with `cipher` from `iv`, its PKCS#7 padding checked and taken
/// off (RFC 5652 §6.3). None: not whole blocks, or the padding is wrong (another key, or
/// changed on the way).
fn cbc<C: aes::cipher::BlockDecrypt + aes::cipher::BlockSizeUser>(
    cipher: &C,
    iv: &[u8],
    data: &[u8],
) -> Option<Vec<u8>> {
    let size = C::block_size();
    if data.is_empty() || !data.len().is_multiple_of(size) || iv.len() != size {
        return None;
    }
    let mut out = Vec::with_capacity(data.len());
    let mut previous = iv;
    for chunk in data.chunks(size) {
        let mut block = aes::cipher::generic_array::GenericArray::clone_from_slice(chunk);
        cipher.decrypt_block(&mut block);
        out.extend(block.iter().zip(previous).map(|(b, p)| b ^ p));
        previous = chunk;
    }
    let pad = usize::from(*out.last()?);
    if pad == 0 || pad > size || !out[out.len() - pad..].iter().all(|b| usize::from(*b) == pad) {
        return None;
    }
    out.truncate(out.len() - pad);
    Some(out)
}

/// `data` decrypted with AES-GCM (RFC 5084: a 12-byte nonce, a 16-byte tag over `aad` and the
/// ciphertext). None: the tag does not match.
fn aes_gcm(key: &[u8], nonce: &[u8], aad: &[u8], data: &[u8], tag: &[u8]) -> Option<Vec<u8>> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
    let algorithm = match key.len() {
        16 => &AES_128_GCM,
        32 => &AES_256_GCM,
        _ => return None,
    };
    let key = LessSafeKey::new(UnboundKey::new(algorithm, key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut in_out = [data, tag].concat();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut in_out).ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::email::tests::bit_flips;

    /// A throwaway certificate and key of ours (`openssl req -x509`), and "The admin panel
    /// accepts any password." encrypted to it by `openssl cms -encrypt`: AES-256-GCM
    /// (AuthEnvelopedData, DER) and AES-256-CBC streamed (BER: indefinite lengths, the content
    /// in chunks).
    const CERTIFICATE: &[u8] = include_bytes!("../../../tests/fixtures/smime-decrypt/support.pem");
    const KEY: &str = include_str!("../../../tests/fixtures/smime-decrypt/support.key");
    const GCM: &[u8] = include_bytes!("../../../tests/fixtures/smime-decrypt/gcm.der");
    const CBC_STREAMED: &[u8] = include_bytes!("../../../tests/fixtures/smime-decrypt/cbc-stream.der");
    const ENTITY: &str = "Content-Type: text/plain; charset=utf-8\r\n\r\nThe admin panel accepts any password.\r\n";

    #[test]
    fn both_forms_openssl_writes_are_decrypted() {
        for ber in [GCM, CBC_STREAMED] {
            assert_eq!(decrypt_with(ber, CERTIFICATE, KEY).unwrap(), ENTITY.as_bytes());
        }
    }

    /// The fuzz seeds (the same, as mails) read as the mail they encrypt, by a channel that
    /// signs with the certificate.
    #[test]
    fn an_encrypted_mail_reads_as_what_it_encrypts() {
        let mut channel = crate::channels::email::tests::channel();
        channel.smime_certificate_pem = Some(CERTIFICATE.to_vec());
        channel.smime_key = Some(crate::config::Secret::new(KEY));
        for seed in [
            &include_bytes!("../../../fuzz/seeds/smime-encrypted-support-gcm.eml")[..],
            include_bytes!("../../../fuzz/seeds/smime-encrypted-support-cbc-stream.eml"),
        ] {
            let raw = super::super::mime::to_raw_inbound(&channel, seed.to_vec());
            assert_eq!(raw.text.as_deref(), Some("The admin panel accepts any password.\r\n"));
            assert_eq!(raw.subject.as_deref(), Some("Report"));
            assert!(raw.attachments.is_empty() && raw.encryption.is_some_and(|e| e.decrypted && e.kind == "smime"));
        }
    }

    /// A damaged message is refused, or read as it was where the damage missed what is
    /// authenticated (GCM: never a changed plaintext), and never panics; CBC has no integrity
    /// check, so only the absence of a panic is asked of it.
    #[test]
    fn damaged_messages_do_not_panic_and_gcm_yields_no_changed_plaintext() {
        let mut refused = 0;
        // (An RSA decryption each: a debug build takes a while.)
        for (at, damaged) in bit_flips(GCM, 200) {
            match decrypt_with(&damaged, CERTIFICATE, KEY) {
                Ok(plaintext) => assert_eq!(plaintext, ENTITY.as_bytes(), "a flip at {at} changed the plaintext"),
                Err(_) => refused += 1,
            }
        }
        assert!(refused > 160, "only {refused} of 200 damaged copies refused");
        for (_, damaged) in bit_flips(CBC_STREAMED, 100) {
            let _ = decrypt_with(&damaged, CERTIFICATE, KEY);
        }
    }

    #[test]
    fn cbc_padding_is_checked() {
        use aes::cipher::{BlockEncrypt, KeyInit};
        let cipher = aes::Aes128::new_from_slice(&[7; 16]).unwrap();
        let iv = [1u8; 16];
        // One block of "hello" padded with eleven 11s, encrypted by hand.
        let mut block = aes::cipher::generic_array::GenericArray::clone_from_slice(&{
            let mut plain = [11u8; 16];
            plain[..5].copy_from_slice(b"hello");
            let mut xored = [0u8; 16];
            for i in 0..16 {
                xored[i] = plain[i] ^ iv[i];
            }
            xored
        });
        cipher.encrypt_block(&mut block);
        assert_eq!(cbc(&cipher, &iv, &block).unwrap(), b"hello");
        // An IV changed in its last byte changes the padding's length byte: refused.
        let mut changed = iv;
        changed[15] ^= 0x80;
        assert_eq!(cbc(&cipher, &changed, &block), None);
        assert_eq!(cbc(&cipher, &iv, &block[..15]), None);
        assert_eq!(cbc(&cipher, &iv, &[]), None);
    }
}
