//! S/MIME-encrypted mail (RFC 8551 §3.3, CMS EnvelopedData; AuthEnvelopedData, RFC 5083) read
//! with the channel's own S/MIME key (`smime_certificate_file` and `smime_key`).
//!
//! A channel that signs its mail (`smime_sign`) hands its certificate to every customer: Outlook,
//! Apple Mail and Thunderbird keep it and may then encrypt their replies to it. Without the key
//! such a reply is an empty message with an `smime.p7m` file; with it, it is read as the mail it
//! encrypts (`smime::inner_mail`), under the mail's own header, and a signature inside (Outlook
//! signs, then encrypts) is checked as any other.
//!
//! What is read:
//! - key transport to our certificate's RSA key (PKCS#1 v1.5, which Outlook and openssl write
//!   by default, or RSAES-OAEP with SHA-1 or SHA-256);
//! - key agreement to our certificate's P-256 or P-384 key (RFC 5753: ephemeral-static ECDH,
//!   standard or cofactor, the X9.63 KDF over SHA-1 (openssl's default) to SHA-512, the key
//!   wrapped with AES (RFC 3394) or Triple-DES (RFC 3217, openssl's for Triple-DES content));
//! - our certificate named by issuer and serial number or by subject key identifier;
//! - content encrypted with AES-128/192/256-CBC, Triple-DES-CBC (older Outlook) or
//!   AES-128/256-GCM.
//!
//! The message says what was done (`MailEncryption`, kind `smime`), or why not: encrypted to
//! other certificates, or not decryptable (changed on the way, another key). The mail's source
//! stays as fetched, encrypted. Replies go out encrypted by `smime_encrypt`, when the channel
//! says so.
//!
//! The RSA decryption is the `rsa` crate's (RustCrypto, already in the tree through rPGP), whose
//! PKCS#1 v1.5 decryption is not constant-time (RUSTSEC-2023-0071): an attacker who can time the
//! gateway's import of many crafted mails might learn of the key. ECDH is RustCrypto's `p256`
//! and `p384`, the AES key wrap `aes-kw` (all three rPGP's too). The CBC and GCM ciphers are
//! RustCrypto's `aes`/`des` and ring's.

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPrivateKey};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::ber::oid::*;
use super::ber::{
    der, Element, BIT_STRING, CONTEXT_0, CONTEXT_1, CONTEXT_2, INTEGER, OCTET_STRING, OID, SEQUENCE, SET,
};
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

pub(super) fn decrypt_with(ber: &[u8], certificate_pem: &[u8], key_pem: &str) -> Decrypted {
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

    let Some(ours_found) = recipients.children(SET).ok_or_else(unreadable)?.find_map(|r| to_us(r, &ours)) else {
        return Err("encrypted to other certificates than smime_certificate_file's; the file smime.p7m keeps it".into());
    };
    let key =
        OurKey::parse(key_pem).ok_or_else(|| "encrypted to our certificate, whose key is not read here".to_owned())?;
    let content_key = match ours_found {
        ToUs::Transport { algorithm, encrypted_key } => unwrap_key(&key, algorithm, encrypted_key)?,
        ToUs::Agreement(agreement) => agree(&key, &agreement)?,
    };

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

/// The channel's S/MIME private key (`smime_key`), as its certificate's algorithm uses it: RSA
/// by key transport, P-256 and P-384 by key agreement.
enum OurKey {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
}

impl OurKey {
    /// From PEM: PKCS#8, or PKCS#1 (RSA) or SEC 1 (EC).
    fn parse(pem: &str) -> Option<OurKey> {
        if let Ok(key) = RsaPrivateKey::from_pkcs8_pem(pem).or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem)) {
            return Some(OurKey::Rsa(Box::new(key)));
        }
        if let Ok(key) = p256::SecretKey::from_pkcs8_pem(pem).or_else(|_| p256::SecretKey::from_sec1_pem(pem)) {
            return Some(OurKey::P256(key));
        }
        let key = p384::SecretKey::from_pkcs8_pem(pem).or_else(|_| p384::SecretKey::from_sec1_pem(pem)).ok()?;
        Some(OurKey::P384(key))
    }
}

/// How a RecipientInfo naming our certificate hands us the content-encryption key.
enum ToUs<'a> {
    /// KeyTransRecipientInfo: encrypted to our RSA key.
    Transport { algorithm: Element<'a>, encrypted_key: &'a [u8] },
    /// KeyAgreeRecipientInfo (`[1]`): wrapped with a key agreed between the sender's ephemeral
    /// key and our EC key.
    Agreement(Agreement<'a>),
}

/// A KeyAgreeRecipientInfo's fields (RFC 5652 §6.2.2) for our key.
struct Agreement<'a> {
    /// OriginatorIdentifierOrKey: the sender's ephemeral public key (`[1]` originatorKey).
    originator: Element<'a>,
    /// The user keying material, when the sender chose one.
    ukm: Option<&'a [u8]>,
    /// The key agreement scheme, with the key wrap algorithm as its parameter.
    algorithm: Element<'a>,
    encrypted_key: &'a [u8],
}

/// How `recipient` (a RecipientInfo) gives the content key to `ours`; None when it names
/// another certificate, or is of a kind not read (passwords, pre-shared keys).
fn to_us<'a>(recipient: Element<'a>, ours: &smime::Certificate<'_>) -> Option<ToUs<'a>> {
    match recipient.tag {
        SEQUENCE => {
            let mut parts = recipient.children(SEQUENCE)?.skip(1);
            let (rid, algorithm, encrypted_key) = (parts.next()?, parts.next()?, parts.next()?);
            ours.is(rid).then_some(ToUs::Transport { algorithm, encrypted_key: encrypted_key.content })
        }
        CONTEXT_1 => {
            let mut fields = recipient.children(CONTEXT_1)?.skip(1);
            let originator = fields.next().filter(|o| o.tag == CONTEXT_0)?;
            let mut next = fields.next()?;
            let mut ukm = None;
            if next.tag == CONTEXT_1 {
                ukm = Some(next.children(CONTEXT_1)?.next().filter(|u| u.tag == OCTET_STRING)?.content);
                next = fields.next()?;
            }
            let (algorithm, keys) = (next, fields.next()?);
            keys.children(SEQUENCE)?.find_map(|key| {
                let mut parts = key.children(SEQUENCE)?;
                let (rid, encrypted_key) = (parts.next()?, parts.next().filter(|k| k.tag == OCTET_STRING)?);
                ours.is(rid).then_some(ToUs::Agreement(Agreement {
                    originator,
                    ukm,
                    algorithm,
                    encrypted_key: encrypted_key.content,
                }))
            })
        }
        _ => None,
    }
}

/// The content-encryption key, unwrapped with the key-encryption key that ECDH between the
/// sender's ephemeral key and ours, and the scheme's X9.63 KDF, agree on (RFC 5753 §3.1.2).
fn agree(key: &OurKey, agreement: &Agreement<'_>) -> Result<Vec<u8>, String> {
    let failed = || "it cannot be decrypted with our key (another key, or damaged on the way)".to_owned();
    let not_read = |what: &str| format!("encrypted to our certificate with {what}, which is not read here");
    let mut algorithm = agreement.algorithm.children(SEQUENCE).into_iter().flatten();
    let scheme = algorithm.next().filter(|o| o.tag == OID).ok_or_else(failed)?.content;
    let wrap = algorithm.next().filter(|w| w.tag == SEQUENCE).ok_or_else(failed)?;
    let wrap_oid = wrap.children(SEQUENCE).and_then(|mut w| w.next()).filter(|o| o.tag == OID).ok_or_else(failed)?;
    let kek_length = match wrap_oid.content {
        AES128_WRAP => 16,
        AES192_WRAP | DES_EDE3_WRAP => 24,
        AES256_WRAP => 32,
        _ => return Err(not_read("a key wrap algorithm")),
    };
    // originator [0] EXPLICIT: originatorKey [1] IMPLICIT { algorithm, publicKey BIT STRING }.
    let public = agreement
        .originator
        .children(CONTEXT_0)
        .and_then(|mut o| o.next())
        .and_then(|k| k.children(CONTEXT_1)?.nth(1))
        .filter(|p| p.tag == BIT_STRING)
        .and_then(|p| p.content.strip_prefix(&[0]))
        .ok_or_else(failed)?;
    // Z: the shared point's x coordinate.
    let shared = match key {
        OurKey::P256(ours) => {
            let public = p256::PublicKey::from_sec1_bytes(public).map_err(|_| failed())?;
            p256::ecdh::diffie_hellman(ours.to_nonzero_scalar(), public.as_affine()).raw_secret_bytes().to_vec()
        }
        OurKey::P384(ours) => {
            let public = p384::PublicKey::from_sec1_bytes(public).map_err(|_| failed())?;
            p384::ecdh::diffie_hellman(ours.to_nonzero_scalar(), public.as_affine()).raw_secret_bytes().to_vec()
        }
        OurKey::Rsa(_) => return Err("encrypted by key agreement to our certificate, whose key is RSA".into()),
    };
    let kek = key_encryption_key(scheme, &shared, wrap.raw, agreement.ukm, kek_length)
        .ok_or_else(|| not_read("a key agreement scheme"))?;
    let unwrapped = match wrap_oid.content {
        AES128_WRAP => {
            aes_kw::KekAes128::try_from(&kek[..]).ok().and_then(|k| k.unwrap_vec(agreement.encrypted_key).ok())
        }
        AES192_WRAP => {
            aes_kw::KekAes192::try_from(&kek[..]).ok().and_then(|k| k.unwrap_vec(agreement.encrypted_key).ok())
        }
        AES256_WRAP => {
            aes_kw::KekAes256::try_from(&kek[..]).ok().and_then(|k| k.unwrap_vec(agreement.encrypted_key).ok())
        }
        _ => triple_des_unwrap(&kek, agreement.encrypted_key),
    };
    unwrapped.ok_or_else(failed)
}

/// The key-encryption key of a key agreement (RFC 5753 §7.2): the `scheme`'s KDF over the
/// shared secret Z and the ECC-CMS-SharedInfo, made of the key `wrap` algorithm as the message
/// names it (DER), the user keying material, and the key's `length` in bits. None: a scheme
/// not read here.
pub(super) fn key_encryption_key(
    scheme: &[u8],
    shared: &[u8],
    wrap: &[u8],
    ukm: Option<&[u8]>,
    length: usize,
) -> Option<Vec<u8>> {
    let ukm = ukm.map(|ukm| der(CONTEXT_0, &[&der(OCTET_STRING, &[ukm])])).unwrap_or_default();
    let bits = der(CONTEXT_2, &[&der(OCTET_STRING, &[&(length as u32 * 8).to_be_bytes()])]);
    let shared_info = der(SEQUENCE, &[wrap, &ukm, &bits]);
    Some(match scheme {
        DH_STD_SHA1_KDF | DH_COFACTOR_SHA1_KDF => x963_kdf::<sha1::Sha1>(shared, &shared_info, length),
        DH_STD_SHA224_KDF | DH_COFACTOR_SHA224_KDF => x963_kdf::<sha2::Sha224>(shared, &shared_info, length),
        DH_STD_SHA256_KDF | DH_COFACTOR_SHA256_KDF => x963_kdf::<sha2::Sha256>(shared, &shared_info, length),
        DH_STD_SHA384_KDF | DH_COFACTOR_SHA384_KDF => x963_kdf::<sha2::Sha384>(shared, &shared_info, length),
        DH_STD_SHA512_KDF | DH_COFACTOR_SHA512_KDF => x963_kdf::<sha2::Sha512>(shared, &shared_info, length),
        _ => return None,
    })
}

/// ANSI X9.63's KDF (SEC 1 §3.6.1): `length` bytes of Hash(Z ‖ counter ‖ SharedInfo), the
/// counter a 32-bit big-endian number from 1.
fn x963_kdf<D: sha2::Digest>(shared: &[u8], shared_info: &[u8], length: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(length + 64);
    for counter in 1u32.. {
        if out.len() >= length {
            break;
        }
        out.extend(
            D::new().chain_update(shared).chain_update(counter.to_be_bytes()).chain_update(shared_info).finalize(),
        );
    }
    out.truncate(length);
    out
}

/// A Triple-DES content key unwrapped as RFC 3217 §3 wraps it (openssl's choice for a
/// Triple-DES mail to an EC certificate): two CBC passes around a byte reversal, and an SHA-1
/// checksum of the key. None: the checksum does not match.
fn triple_des_unwrap(kek: &[u8], wrapped: &[u8]) -> Option<Vec<u8>> {
    use aes::cipher::KeyInit;
    const IV: [u8; 8] = [0x4a, 0xdd, 0xa2, 0x2c, 0x79, 0xe8, 0x21, 0x05];
    let cipher = des::TdesEde3::new_from_slice(kek).ok()?;
    if wrapped.len() != 40 {
        return None;
    }
    let mut reversed = cbc_blocks(&cipher, &IV, wrapped)?;
    reversed.reverse();
    let (iv, encrypted) = reversed.split_at(8);
    let key_and_check = cbc_blocks(&cipher, iv, encrypted)?;
    let (key, check) = key_and_check.split_at(24);
    let digest = <sha1::Sha1 as sha2::Digest>::digest(key);
    bool::from(subtle::ConstantTimeEq::ct_eq(&digest[..8], check)).then(|| key.to_vec())
}

/// The content-encryption key, decrypted from `encrypted` with our RSA key by the key
/// transport `algorithm` (an AlgorithmIdentifier).
fn unwrap_key(key: &OurKey, algorithm: Element<'_>, encrypted: &[u8]) -> Result<Vec<u8>, String> {
    let OurKey::Rsa(key) = key else {
        return Err("encrypted by key transport to our certificate, whose key is not RSA".into());
    };
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

pub(super) fn aes_cbc(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
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
    let mut out = cbc_blocks(cipher, iv, data)?;
    let pad = usize::from(*out.last()?);
    if pad == 0 || pad > size || !out[out.len() - pad..].iter().all(|b| usize::from(*b) == pad) {
        return None;
    }
    out.truncate(out.len() - pad);
    Some(out)
}

/// `data` (whole blocks) decrypted in CBC mode with `cipher` from `iv`, as it is: no padding.
fn cbc_blocks<C: aes::cipher::BlockDecrypt + aes::cipher::BlockSizeUser>(
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

    /// A throwaway P-384 certificate and key of ours, and the same text encrypted to it by key
    /// agreement, as `openssl cms -encrypt` makes it: AES-256 with the KDF over SHA-384;
    /// openssl's defaults (Triple-DES, its key wrapped by RFC 3217, the KDF over SHA-1); and
    /// AES-128-GCM with cofactor ECDH, the KDF over SHA-256, and our certificate named by its
    /// subject key identifier (`-keyid`).
    const P384_CERTIFICATE: &[u8] = include_bytes!("../../../tests/fixtures/smime-decrypt/support-p384.pem");
    const P384_KEY: &str = include_str!("../../../tests/fixtures/smime-decrypt/support-p384.key");
    const P384_MAILS: [&[u8]; 3] = [
        include_bytes!("../../../tests/fixtures/smime-decrypt/p384-sha384-aes256.der"),
        include_bytes!("../../../tests/fixtures/smime-decrypt/p384-3des.der"),
        include_bytes!("../../../tests/fixtures/smime-decrypt/p384-cofactor-keyid-gcm.der"),
    ];

    #[test]
    fn key_agreement_to_our_ec_certificate_is_decrypted() {
        for ber in P384_MAILS {
            assert_eq!(decrypt_with(ber, P384_CERTIFICATE, P384_KEY).unwrap(), ENTITY.as_bytes());
        }
        // Not ours: the RSA certificate is not named, and the EC mail is not decrypted with it.
        let error = decrypt_with(P384_MAILS[0], CERTIFICATE, KEY).unwrap_err();
        assert!(error.starts_with("encrypted to other certificates"), "{error}");
        // Ours, with another key of the same curve: the key wrap's check refuses it.
        let other = p384::SecretKey::random(&mut rand::rngs::OsRng);
        let other = p384::pkcs8::EncodePrivateKey::to_pkcs8_pem(&other, Default::default()).unwrap();
        for ber in P384_MAILS {
            let error = decrypt_with(ber, P384_CERTIFICATE, &other).unwrap_err();
            assert!(error.contains("cannot be decrypted"), "{error}");
        }
    }

    /// Damaged copies: the key wrap's check (AES, Triple-DES) or GCM's tag refuses what a flip
    /// changed, so no copy yields a changed plaintext from a wrapped key or an authenticated
    /// content; nothing panics.
    #[test]
    fn damaged_key_agreements_do_not_panic() {
        for ber in P384_MAILS {
            for (at, damaged) in bit_flips(ber, 60) {
                if let Ok(plaintext) = decrypt_with(&damaged, P384_CERTIFICATE, P384_KEY) {
                    // CBC content has no integrity check; a flip there may decrypt to garbage.
                    if ber == P384_MAILS[2] {
                        assert_eq!(plaintext, ENTITY.as_bytes(), "a flip at {at} changed the plaintext");
                    }
                }
            }
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
