//! S/MIME (RFC 8551): opaque-signed mail unwrapped, and signatures checked.
//!
//! **Opaque-signed mail** (§3.5.3): the whole mail is one `application/pkcs7-mime;
//! smime-type=signed-data` part, a CMS SignedData structure with the signed MIME entity inside.
//! Outlook sends signed mail this way when "clear text signed" is off, and so do some mail
//! gateways. A reader that does not look inside sees a mail with no text and one `smime.p7m`
//! file: Zammad (zammad#6376, #4742), osTicket (#883, #6806) and FreeScout (#2540) show such
//! mail as empty. Here the signed entity is taken out and read as the mail, under the mail's own
//! header (sender, subject, threading). Encrypted S/MIME (`enveloped-data`) is read with the
//! key of the certificate the channel signs with (`smime_decrypt`); without it, it stays a mail
//! with its `smime.p7m` file, which says it is encrypted (`MailEncryption`), so that a helpdesk
//! can tell why it has no text.
//!
//! **Signatures** of opaque-signed and clear-signed (`multipart/signed`, §3.5.2) mail are
//! checked, and the message says what was found (`MailSignature`), as a mail client shows its
//! badge: whether the content is as signed (the signed attributes' message digest, then the
//! signature over them with the key of the signer's certificate, RFC 5652 §5.4), and whether
//! that certificate is one a trusted CA issued for mail to the sender's address (RFC 8550: a
//! chain to the channel's `smime_ca_file` or to Mozilla's roots, at the signing time the
//! signature carries, with `emailProtection` where the certificate lists its usages). The
//! Mozilla roots built in are those `webpki-roots` carries for TLS: a public CA whose mail
//! certificates chain to a root of its own for S/MIME is trusted only once listed in
//! `smime_ca_file` (and is `untrusted` until then). Nothing is refused for a signature: a mail
//! client does not refuse one either. Revocation is not checked (no network is asked). The
//! mail's source, kept as fetched, holds the signature.
//!
//! The structures are read with `ber`; the signature algorithms and the chain are
//! `rustls-webpki`'s (ring), the same code that checks our TLS peers.

use std::time::Duration;

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio_rustls::rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use super::ber::oid::*;
use super::ber::{
    Element, BIT_STRING, BOOLEAN, CONTEXT_0, CONTEXT_0_PRIMITIVE, CONTEXT_1_PRIMITIVE, CONTEXT_2, CONTEXT_3,
    GENERALIZED_TIME, INTEGER, OCTET_STRING, OID, SEQUENCE, SET, UTC_TIME,
};
use super::config::EmailChannelConfig;
use super::openpgp;
use crate::model::{MailEncryption, MailSignature, SignatureStatus};

/// How far a signature's signing time may lie ahead of our clock before it is not believed
/// (and the certificate is checked at our time instead).
const SIGNING_TIME_AHEAD: Duration = Duration::from_secs(86_400);

/// The root part of `message` when it is an S/MIME structure (`application/pkcs7-mime`), with
/// its `smime-type` (lowercase) when it says one.
fn pkcs7_root<'a>(message: &'a Message<'_>) -> Option<(&'a MessagePart<'a>, Option<String>)> {
    let root = message.root_part();
    let content_type = root.content_type()?;
    let subtype = content_type.subtype()?;
    let is_pkcs7 = content_type.ctype().eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("pkcs7-mime") || subtype.eq_ignore_ascii_case("x-pkcs7-mime"));
    is_pkcs7.then(|| (root, content_type.attribute("smime-type").map(str::to_ascii_lowercase)))
}

/// Whether `ber` is a CMS ContentInfo of encrypted content (enveloped or auth-enveloped data).
fn is_encrypted(ber: &[u8]) -> bool {
    let content_type = Element::parse(ber).and_then(|e| e.children(SEQUENCE)?.next());
    content_type.is_some_and(|oid| oid.is_oid(ID_ENVELOPED_DATA) || oid.is_oid(ID_AUTH_ENVELOPED_DATA))
}

/// What an S/MIME-encrypted mail (`source`, its encrypted content `ber`) opens to with the
/// channel's S/MIME key (`smime_decrypt`): the mail it encrypts, or why it stays encrypted.
fn decrypted(ber: &[u8], source: &[u8], channel: &EmailChannelConfig) -> Opened {
    let flag =
        |decrypted, detail: &str| Some(MailEncryption { kind: "smime".into(), decrypted, detail: detail.into() });
    match super::smime_decrypt::decrypt(ber, channel) {
        None => Opened {
            encryption: flag(
                false,
                "encrypted to the recipient's certificate, whose key the gateway does not hold; the encrypted \
                 content is the file smime.p7m",
            ),
            ..Opened::default()
        },
        Some(Ok(entity)) => Opened {
            mail: Some(inner_mail(source, &entity)),
            encryption: flag(true, "decrypted with the key of smime_certificate_file"),
            ..Opened::default()
        },
        Some(Err(why)) => Opened { encryption: flag(false, &why), ..Opened::default() },
    }
}

/// The mail an opaque-signed or encrypted mail (`source`) carries: its own header section
/// without the `Content-*` fields of the signature or encryption part, followed by the signed
/// or decrypted `entity`. Of the entity's own header only the `Content-*` fields and its
/// subject are kept (a Thunderbird or K-9 mail hides its subject there): the sender,
/// recipients and threading stay the mail's, which the receiving server saw and authenticated.
/// A From inside, which nothing outside vouches for, could otherwise make a stranger's mail
/// ours.
pub(super) fn inner_mail(source: &[u8], entity: &[u8]) -> Vec<u8> {
    let mut mail = header_without_content_fields(source);
    // An entity with a header section of its own (the usual case) follows the mail's header
    // directly; its subject comes last, and so is the one read. One without (some Microsoft
    // clients sign the bare text) gets an empty line first, so that its first line is not read
    // as a header.
    if starts_with_header_field(entity) {
        let body_at = header_end(entity);
        mail.extend(header_fields(&entity[..body_at], |name| {
            name.get(..8).is_some_and(|n| n.eq_ignore_ascii_case(b"content-"))
                || name.eq_ignore_ascii_case(b"subject")
                || name.eq_ignore_ascii_case(b"mime-version")
        }));
        mail.extend_from_slice(&entity[body_at..]);
    } else {
        mail.extend_from_slice(b"\r\n");
        mail.extend_from_slice(entity);
    }
    mail
}

/// Where the header section of `entity` ends: at its empty line (which is the body's start),
/// or at its end.
fn header_end(entity: &[u8]) -> usize {
    let mut at = 0;
    for line in entity.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            return at;
        }
        at += line.len();
    }
    at
}

/// The fields of the header section `header` (with their folded lines) whose name `keep`
/// takes, each line ending in CRLF.
fn header_fields(header: &[u8], keep: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut kept = Vec::with_capacity(header.len());
    let mut keeping = true;
    for line in header.split_inclusive(|b| *b == b'\n') {
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            keeping = keep(name.trim_ascii());
        }
        if keeping {
            kept.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                kept.extend_from_slice(b"\r\n");
            }
        }
    }
    kept
}

/// The header section of `source` (up to, not including, the empty line that ends it), less
/// every `Content-*` field and its folded lines.
fn header_without_content_fields(source: &[u8]) -> Vec<u8> {
    let header = &source[..header_end(source)];
    header_fields(header, |name| !name.get(..8).is_some_and(|n| n.eq_ignore_ascii_case(b"content-")))
}

/// Whether `entity` begins with a header field (`Name: value`, RFC 5322 §2.2).
fn starts_with_header_field(entity: &[u8]) -> bool {
    let line = entity.split(|b| *b == b'\n').next().unwrap_or_default();
    match line.iter().position(|b| *b == b':') {
        Some(colon) if colon > 0 => line[..colon].iter().all(|b| (33..=126).contains(b)),
        _ => false,
    }
}

/// What S/MIME or OpenPGP makes of a mail as a whole (see `open`).
#[derive(Default)]
pub(super) struct Opened {
    /// The mail an opaque-signed or decrypted one carries, to be read instead of it
    /// (`inner_mail`).
    pub mail: Option<Vec<u8>>,
    /// What the signature of a mail signed as a whole says (S/MIME opaque or clear; PGP/MIME,
    /// checked by `openpgp`; signed and encrypted in one, by `openpgp_decrypt`).
    pub signature: Option<MailSignature>,
    /// That the mail is encrypted (S/MIME, which cannot be read here; PGP/MIME, which the
    /// channel's secret key may have opened).
    pub encryption: Option<MailEncryption>,
    /// The subject the carried mail's protected header gives (`openpgp_decrypt::protected_subject`).
    pub subject: Option<String>,
    /// When its S/MIME signature is valid: the sender's certificate, then the others the
    /// signature carries (DER). See `smime_encrypt::remember`.
    pub sender_certificates: Vec<Vec<u8>>,
}

/// What S/MIME makes of `message` (`source`, as parsed), its signature structure read once:
/// the mail it carries when it is opaque-signed, what its signature says, and whether it is
/// encrypted; a PGP/MIME-encrypted mail is opened with the channel's secret key
/// (`openpgp_decrypt`). The channel's
/// `smime_ca_file` is trusted besides Mozilla's roots, its `openpgp_keyring_file` for PGP/MIME.
pub(super) fn open(message: &Message<'_>, source: &[u8], channel: &EmailChannelConfig) -> Opened {
    // RFC 8551 §3.1: the certificate must name the address in the mail's From header.
    let from = message.from().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default();
    match pkcs7_root(message) {
        // Without smime-type (older clients leave it out) the structure's own type decides:
        // only signed data is a signature.
        Some((part, smime_type)) if smime_type.as_deref().is_none_or(|t| t == "signed-data") => {
            let data = signed_data(part.contents());
            if data.is_none() && smime_type.is_none() {
                return match is_encrypted(part.contents()) {
                    true => decrypted(part.contents(), source, channel),
                    false => Opened::default(),
                };
            }
            let mail = data.as_ref().and_then(|d| d.content.as_deref()).map(|entity| inner_mail(source, entity));
            let (signature, sender_certificates) = verify(data, None, from, channel.smime_ca_pem.as_deref());
            Opened { mail, signature: Some(signature), sender_certificates, ..Opened::default() }
        }
        Some((part, Some(smime_type))) if smime_type == "enveloped-data" || smime_type == "authenveloped-data" => {
            decrypted(part.contents(), source, channel)
        }
        Some(_) => Opened::default(),
        None => super::openpgp_decrypt::open(message, source, channel).unwrap_or_else(|| {
            let (signature, sender_certificates) = clear_signature(message, source, from, channel).unzip();
            Opened { signature, sender_certificates: sender_certificates.unwrap_or_default(), ..Opened::default() }
        }),
    }
}

/// What the signature of a clear-signed (`multipart/signed`) `message` says, if it is one, with
/// the sender's certificates when it is a valid S/MIME one (`verify_keeping_certificates`).
fn clear_signature(
    message: &Message<'_>,
    source: &[u8],
    from: &str,
    channel: &EmailChannelConfig,
) -> Option<(MailSignature, Vec<Vec<u8>>)> {
    let root = message.root_part();
    let content_type = root.content_type()?;
    if !content_type.ctype().eq_ignore_ascii_case("multipart")
        || !content_type.subtype().is_some_and(|s| s.eq_ignore_ascii_case("signed"))
    {
        return None;
    }
    let PartType::Multipart(parts) = &root.body else { return None };
    let (signed, signature) = (message.part(*parts.first()?)?, message.part(*parts.get(1)?)?);
    // The first part exactly as it travelled, its header included, up to the line break
    // before the boundary (RFC 1847 §2.1), with CRLF line ends (RFC 8551 §3.1.1, RFC 3156 §5).
    let content = || source.get(signed.offset_header as usize..signed.offset_end as usize).map(crlf_lines);
    match content_type.attribute("protocol")?.to_ascii_lowercase().as_str() {
        "application/pkcs7-signature" | "application/x-pkcs7-signature" => {
            let data = signed_data(signature.contents());
            Some(verify(data, Some(content()?), from, channel.smime_ca_pem.as_deref()))
        }
        "application/pgp-signature" => {
            let signature = openpgp::detached(message, &content()?, signature.contents(), from, &channel.openpgp_keys);
            Some((signature, Vec::new()))
        }
        _ => None,
    }
}

/// `bytes` with every bare LF made CRLF: mail as it travels, and as it was signed. (A mail read
/// from a file may have lost its CRs; IMAP servers send CRLF.)
fn crlf_lines(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut previous = 0u8;
    for &byte in bytes {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

/// The verdict on a CMS SignedData (`None`: one that cannot be read) over `detached` content
/// (clear-signed), or over the content it holds (opaque-signed), for a mail from `from`; and
/// when it is valid, the certificates a mail client keeps from it to encrypt to the sender
/// (`smime_encrypt::remember`): the signer's, then the others it carries (DER).
fn verify(
    data: Option<SignedData<'_>>,
    detached: Option<Vec<u8>>,
    from: &str,
    extra_ca_pem: Option<&[u8]>,
) -> (MailSignature, Vec<Vec<u8>>) {
    let unverifiable = |detail: &str| {
        let signature = MailSignature {
            kind: "smime".into(),
            status: SignatureStatus::Unverifiable,
            signer: None,
            detail: detail.into(),
        };
        (signature, Vec::new())
    };
    let Some(data) = data else { return unverifiable("the signature cannot be read") };
    let Some(content) = detached.or(data.content) else { return unverifiable("the signature holds no content") };
    let Some(info) = data.signer_infos.first().and_then(|e| signer_info(*e)) else {
        return unverifiable("the signature names no signer");
    };
    let certificates: Vec<Certificate<'_>> = data.certificates.iter().filter_map(|e| certificate(*e)).collect();
    let Some(signer_certificate) = certificates.iter().find(|c| c.is(info.sid)) else {
        return unverifiable("the signer's certificate is not in the signature");
    };
    let addresses = signer_certificate.mail_addresses();
    let sender_named = addresses.iter().any(|a| a.eq_ignore_ascii_case(from));
    let signer = addresses.iter().find(|a| a.eq_ignore_ascii_case(from)).or(addresses.first()).cloned();
    let verdict = |status, detail: String| {
        (MailSignature { kind: "smime".into(), status, signer: signer.clone(), detail }, Vec::new())
    };

    let Some(digest) = digest(info.digest_algorithm, &content) else {
        let detail = match info.digest_algorithm {
            SHA1 => "signed with SHA-1, which is no longer safe".to_owned(),
            other => format!("signed with a digest algorithm not supported here ({})", oid_text(other)),
        };
        return verdict(SignatureStatus::Unverifiable, detail);
    };
    // With signed attributes (every client writes them) the signature covers them, and they
    // carry the content's digest; without, it covers the content itself.
    let (signed_bytes, signing_time) = match info.signed_attributes {
        Some(attributes) => {
            match attribute(attributes, ID_MESSAGE_DIGEST).and_then(|v| (v.tag == OCTET_STRING).then_some(v.content)) {
                Some(signed_digest) if signed_digest == digest.as_slice() => {}
                Some(_) => return verdict(SignatureStatus::Invalid, "the mail was changed after it was signed".into()),
                None => {
                    return verdict(SignatureStatus::Invalid, "the signed attributes hold no message digest".into())
                }
            }
            // Signed as a DER SET OF, not as the [0] IMPLICIT it is stored under (§5.4).
            let mut der = attributes.raw.to_vec();
            der[0] = SET;
            (der, attribute(attributes, ID_SIGNING_TIME).and_then(time))
        }
        None => (content, None),
    };
    let der = CertificateDer::from(signer_certificate.der);
    let Ok(end_entity) = EndEntityCert::try_from(&der) else {
        return verdict(SignatureStatus::Unverifiable, "the signer's certificate cannot be read".into());
    };
    if info.signature_algorithm == RSASSA_PSS && !pss_salt_is_digest_length(info.pss_parameters, info.digest_algorithm)
    {
        let detail = "signed with RSA-PSS with a salt length other than the digest's, not supported here";
        return verdict(SignatureStatus::Unverifiable, detail.into());
    }
    let algorithms = signature_algorithms(info.signature_algorithm, info.digest_algorithm);
    let results: Vec<_> =
        algorithms.iter().map(|alg| end_entity.verify_signature(*alg, &signed_bytes, &info.signature)).collect();
    if !results.iter().any(Result::is_ok) {
        return match results.iter().any(|r| matches!(r, Err(webpki::Error::InvalidSignatureForPublicKey))) {
            true => verdict(SignatureStatus::Invalid, "the signature does not match the signer's certificate".into()),
            false => verdict(
                SignatureStatus::Unverifiable,
                format!(
                    "signed with an algorithm not supported here ({} with {})",
                    oid_text(info.signature_algorithm),
                    oid_text(info.digest_algorithm)
                ),
            ),
        };
    }

    // The content is as signed; now whose the key is. A signing time ahead of our clock is
    // not believed.
    let now = UnixTime::now();
    let at = signing_time.filter(|t| t.as_secs() <= now.as_secs() + SIGNING_TIME_AHEAD.as_secs()).unwrap_or(now);
    match chain_for_mail(&end_entity, signer_certificate, &certificates, extra_ca_pem, at) {
        Err(_) if signer_certificate.issuer == signer_certificate.subject.raw => {
            verdict(SignatureStatus::Untrusted, "the certificate is self-signed, not from a trusted CA".into())
        }
        Err(e) => verdict(SignatureStatus::Untrusted, untrusted(&e, at)),
        Ok(_) if sender_named => {
            let valid =
                verdict(SignatureStatus::Valid, format!("signed by {from} with a certificate from a trusted CA")).0;
            let others = certificates.iter().filter(|c| c.der != signer_certificate.der);
            (valid, std::iter::once(signer_certificate).chain(others).map(|c| c.der.to_vec()).collect())
        }
        Ok(_) if addresses.is_empty() => verdict(
            SignatureStatus::Untrusted,
            format!("the certificate names no mail address, so not the sender {from}"),
        ),
        Ok(_) => verdict(
            SignatureStatus::Untrusted,
            format!("the certificate is for {}, not the sender {from}", addresses.join(", ")),
        ),
    }
}

/// Whether `certificate` chains, through `others` (intermediates), to a trusted CA (the
/// Mozilla roots, and `extra_ca_pem`) for mail protection, now: a certificate we may encrypt to.
pub(super) fn trusted_now(
    certificate: &Certificate<'_>,
    others: &[Certificate<'_>],
    extra_ca_pem: Option<&[u8]>,
) -> bool {
    let der = CertificateDer::from(certificate.der);
    let Ok(end_entity) = EndEntityCert::try_from(&der) else { return false };
    chain_for_mail(&end_entity, certificate, others, extra_ca_pem, UnixTime::now()).is_ok()
}

/// Whether `end_entity` (`certificate`, parsed) chains at `at`, through `others`, to a trusted
/// CA (the Mozilla roots, and `extra_ca_pem`) for mail protection (emailProtection, when the
/// certificate names its uses).
fn chain_for_mail(
    end_entity: &EndEntityCert<'_>,
    certificate: &Certificate<'_>,
    others: &[Certificate<'_>],
    extra_ca_pem: Option<&[u8]>,
    at: UnixTime,
) -> Result<(), webpki::Error> {
    let intermediates: Vec<CertificateDer<'_>> =
        others.iter().filter(|c| c.der != certificate.der).map(|c| CertificateDer::from(c.der)).collect();
    // Validation refused an `smime_ca_file` with a certificate that cannot be an anchor.
    let anchors = super::tls::roots(extra_ca_pem).map(|store| store.roots).unwrap_or_default();
    let usage = KeyUsage::required_if_present(EKU_EMAIL_PROTECTION);
    end_entity
        .verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &anchors, &intermediates, at, usage, None, None)
        .map(|_| ())
}

/// Why a certificate chain was not accepted, for an operator.
fn untrusted(error: &webpki::Error, at: UnixTime) -> String {
    use webpki::Error::*;
    let when = crate::model::time::rfc3339(at.as_secs() as i64 * 1000);
    match error {
        UnknownIssuer => "the certificate is not from a trusted CA".into(),
        CertExpired { .. } | CertNotValidYet { .. } => {
            format!("the certificate was not valid when the mail was signed ({when})")
        }
        RequiredEkuNotFoundContext(_) => "the certificate is not for signing mail".into(),
        CaUsedAsEndEntity => "the certificate is a CA's, not a person's".into(),
        other => format!("the certificate is not trusted ({other})"),
    }
}

/// The digest of `content` with the algorithm `oid`, if it is one supported here.
fn digest(oid: &[u8], content: &[u8]) -> Option<Vec<u8>> {
    match oid {
        SHA256 => Some(Sha256::digest(content).to_vec()),
        SHA384 => Some(Sha384::digest(content).to_vec()),
        SHA512 => Some(Sha512::digest(content).to_vec()),
        _ => None,
    }
}

/// The webpki algorithms a SignerInfo's signature algorithm and digest algorithm may mean
/// (CMS often names only the key type, `rsaEncryption`, and the digest separately; an ECDSA
/// signature does not say its curve, which the certificate's key decides).
fn signature_algorithms(signature: &[u8], digest: &[u8]) -> Vec<&'static dyn SignatureVerificationAlgorithm> {
    use webpki::ring as alg;
    match (signature, digest) {
        (RSA_ENCRYPTION | SHA256_WITH_RSA, SHA256) => vec![alg::RSA_PKCS1_2048_8192_SHA256],
        (RSA_ENCRYPTION | SHA384_WITH_RSA, SHA384) => vec![alg::RSA_PKCS1_2048_8192_SHA384],
        (RSA_ENCRYPTION | SHA512_WITH_RSA, SHA512) => vec![alg::RSA_PKCS1_2048_8192_SHA512],
        (RSASSA_PSS, SHA256) => vec![alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY],
        (RSASSA_PSS, SHA384) => vec![alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY],
        (RSASSA_PSS, SHA512) => vec![alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY],
        (EC_PUBLIC_KEY | ECDSA_WITH_SHA256, SHA256) => vec![alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256],
        (EC_PUBLIC_KEY | ECDSA_WITH_SHA384, SHA384) => vec![alg::ECDSA_P256_SHA384, alg::ECDSA_P384_SHA384],
        (ED25519, _) => vec![alg::ED25519],
        // ECDSA with SHA-512 or on P-521, DSA, GOST…: ring verifies none of them.
        _ => Vec::new(),
    }
}

/// `1.2.840.113549.1.1.1` for an OID's encoded contents.
fn oid_text(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut value = 0u64;
    for &byte in oid {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.extend([first, value - first * 40]);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// A CMS SignedData (RFC 5652 §5.1), as far as it is read here.
struct SignedData<'a> {
    /// The encapsulated content; `None` for a detached signature (its content travels beside
    /// it, in `multipart/signed`).
    content: Option<Vec<u8>>,
    certificates: Vec<Element<'a>>,
    signer_infos: Vec<Element<'a>>,
}

/// The SignedData of a CMS `ContentInfo` (RFC 5652 §3) with id-data content, or `None`.
/// Lenient past the content: a damaged certificate or signer list leaves the content readable.
fn signed_data(ber: &[u8]) -> Option<SignedData<'_>> {
    let mut fields = Element::parse(ber)?.children(SEQUENCE)?;
    if !fields.next()?.is_oid(ID_SIGNED_DATA) {
        return None;
    }
    let signed_data = fields.next()?.children(CONTEXT_0)?.next()?;
    let mut fields = signed_data.children(SEQUENCE)?;
    let (version, digest_algorithms) = (fields.next()?, fields.next()?);
    if version.tag != INTEGER || digest_algorithms.tag != SET {
        return None;
    }
    let mut encapsulated = fields.next()?.children(SEQUENCE)?;
    if !encapsulated.next()?.is_oid(ID_DATA) {
        return None;
    }
    let content = match encapsulated.next() {
        Some(explicit) => Some(explicit.children(CONTEXT_0)?.next()?.octets()?),
        None => None,
    };
    let mut data = SignedData { content, certificates: Vec::new(), signer_infos: Vec::new() };
    for field in fields {
        if let Some(certificates) = field.children(CONTEXT_0) {
            data.certificates = certificates.filter(|c| c.tag == SEQUENCE).collect();
        } else if let Some(signer_infos) = field.children(SET) {
            data.signer_infos = signer_infos.collect();
        }
    }
    Some(data)
}

/// A SignerInfo (RFC 5652 §5.3), as far as it is read here.
struct SignerInfo<'a> {
    /// Which certificate is the signer's: an IssuerAndSerialNumber SEQUENCE, or `[0]` a
    /// subject key identifier.
    sid: Element<'a>,
    digest_algorithm: &'a [u8],
    signed_attributes: Option<Element<'a>>,
    signature_algorithm: &'a [u8],
    /// The signature algorithm's parameters when it is RSASSA-PSS.
    pss_parameters: Option<Element<'a>>,
    signature: Vec<u8>,
}

fn signer_info(element: Element<'_>) -> Option<SignerInfo<'_>> {
    let mut fields = element.children(SEQUENCE)?;
    if fields.next()?.tag != INTEGER {
        return None;
    }
    let sid = fields.next()?;
    let digest_algorithm = algorithm(fields.next()?)?;
    let mut next = fields.next()?;
    let signed_attributes = (next.tag == CONTEXT_0).then_some(next);
    if signed_attributes.is_some() {
        next = fields.next()?;
    }
    let signature_algorithm = algorithm(next)?;
    let pss_parameters = next.children(SEQUENCE)?.nth(1).filter(|_| signature_algorithm == RSASSA_PSS);
    let signature = fields.next()?.octets()?;
    Some(SignerInfo { sid, digest_algorithm, signed_attributes, signature_algorithm, pss_parameters, signature })
}

/// Whether RSASSA-PSS `parameters` (RFC 4055 §3.1) use a salt as long as the digest: what
/// ring verifies, and what Outlook and OpenSSL's `rsa_pss_saltlen:digest` write. OpenSSL's
/// default (the longest salt that fits) is not.
fn pss_salt_is_digest_length(parameters: Option<Element<'_>>, digest: &[u8]) -> bool {
    let digest_length = match digest {
        SHA256 => 32,
        SHA384 => 48,
        SHA512 => 64,
        _ => return false,
    };
    // saltLength is `[2] EXPLICIT INTEGER DEFAULT 20`.
    let salt = parameters.and_then(|p| p.children(SEQUENCE)).into_iter().flatten().find(|f| f.tag == CONTEXT_2);
    let length = match salt.and_then(|s| s.children(CONTEXT_2)?.next()) {
        Some(integer) if integer.tag == INTEGER && integer.content.len() <= 4 => {
            integer.content.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b))
        }
        Some(_) => return false,
        None => 20,
    };
    length == digest_length
}

/// An AlgorithmIdentifier's OID.
fn algorithm(element: Element<'_>) -> Option<&[u8]> {
    element.children(SEQUENCE)?.next().filter(|oid| oid.tag == OID).map(|oid| oid.content)
}

/// The first value of the signed attribute `oid` in `attributes` (a SET OF Attribute).
fn attribute<'a>(attributes: Element<'a>, oid: &[u8]) -> Option<Element<'a>> {
    attributes.children(CONTEXT_0)?.find_map(|attribute| {
        let mut fields = attribute.children(SEQUENCE)?;
        fields.next()?.is_oid(oid).then(|| fields.next()?.children(SET)?.next()).flatten()
    })
}

/// A UTCTime or GeneralizedTime in UTC (`YYMMDDHHMMSSZ`, `YYYYMMDDHHMMSSZ`).
fn time(element: Element<'_>) -> Option<UnixTime> {
    let text = std::str::from_utf8(element.content).ok()?.strip_suffix('Z')?;
    let (year, rest) = match element.tag {
        // RFC 5280 §4.1.2.5.1: 50–99 are 19xx.
        UTC_TIME => text
            .split_at_checked(2)
            .map(|(y, r)| (y.parse::<i64>().map(|y| y + if y < 50 { 2000 } else { 1900 }), r))?,
        GENERALIZED_TIME => text.split_at_checked(4).map(|(y, r)| (y.parse::<i64>(), r))?,
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |at: usize| rest[at..at + 2].parse::<u32>().ok();
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = crate::model::time::days_from_civil(year.ok()?, month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(seconds).ok()?)))
}

/// An X.509 certificate (RFC 5280 §4.1), as far as it is read here.
pub(super) struct Certificate<'a> {
    der: &'a [u8],
    /// The serial number's INTEGER contents.
    pub serial: &'a [u8],
    /// The issuer name, DER.
    pub issuer: &'a [u8],
    subject: Element<'a>,
    /// The SubjectPublicKeyInfo, DER.
    pub public_key: &'a [u8],
    extensions: Option<Element<'a>>,
    /// The end of its validity.
    pub not_after: Option<UnixTime>,
}

pub(super) fn certificate(element: Element<'_>) -> Option<Certificate<'_>> {
    let tbs = element.children(SEQUENCE)?.next()?;
    let mut fields = tbs.children(SEQUENCE)?.peekable();
    if fields.peek()?.tag == CONTEXT_0 {
        fields.next(); // version
    }
    let serial = fields.next().filter(|s| s.tag == INTEGER)?.content;
    let _signature = fields.next()?;
    let issuer = fields.next().filter(|i| i.tag == SEQUENCE)?.raw;
    let not_after = fields.next()?.children(SEQUENCE).and_then(|mut validity| time(validity.nth(1)?));
    let subject = fields.next().filter(|s| s.tag == SEQUENCE)?;
    let public_key = fields.next().filter(|k| k.tag == SEQUENCE)?.raw;
    let extensions = fields.find(|f| f.tag == CONTEXT_3).and_then(|e| e.children(CONTEXT_3)?.next());
    Some(Certificate { der: element.raw, serial, issuer, subject, public_key, extensions, not_after })
}

impl<'a> Certificate<'a> {
    /// Whether a SignerInfo's `sid` (or a RecipientInfo's `rid`, the same choice; or a key
    /// agreement's, whose key identifier is in a RecipientKeyIdentifier) names this certificate.
    pub fn is(&self, sid: Element<'_>) -> bool {
        let has_key_id = |id: &[u8]| {
            self.extension(ID_SUBJECT_KEY_IDENTIFIER)
                .and_then(Element::parse)
                .is_some_and(|key_id| key_id.tag == OCTET_STRING && key_id.content == id)
        };
        match sid.tag {
            SEQUENCE => {
                let Some(mut fields) = sid.children(SEQUENCE) else { return false };
                let (Some(issuer), Some(serial)) = (fields.next(), fields.next()) else { return false };
                issuer.raw == self.issuer && serial.tag == INTEGER && serial.content == self.serial
            }
            CONTEXT_0_PRIMITIVE => has_key_id(sid.content),
            CONTEXT_0 => sid
                .children(CONTEXT_0)
                .and_then(|mut fields| fields.next())
                .is_some_and(|key_id| key_id.tag == OCTET_STRING && has_key_id(key_id.content)),
            _ => false,
        }
    }

    /// The certificate, DER.
    pub fn der(&self) -> &'a [u8] {
        self.der
    }

    /// Whether its key usage extension, if it has one, allows the `bit` (RFC 5280 §4.2.1.3:
    /// 2 keyEncipherment, 4 keyAgreement).
    pub fn allows_key_usage(&self, bit: u8) -> bool {
        let Some(usage) = self.extension(ID_KEY_USAGE) else { return true };
        let bits = Element::parse(usage).filter(|u| u.tag == BIT_STRING).and_then(|u| u.content.get(1..));
        bits.is_some_and(|bits| bits.get(usize::from(bit / 8)).is_some_and(|byte| byte & (0x80 >> (bit % 8)) != 0))
    }

    /// The value (the extnValue's contents) of the extension `oid`.
    fn extension(&self, oid: &[u8]) -> Option<&'a [u8]> {
        self.extensions?.children(SEQUENCE)?.find_map(|extension| {
            let mut fields = extension.children(SEQUENCE)?;
            if !fields.next()?.is_oid(oid) {
                return None;
            }
            let value = fields.find(|f| f.tag != BOOLEAN)?;
            (value.tag == OCTET_STRING).then_some(value.content)
        })
    }

    /// The mail addresses the certificate is for: its subjectAltName's rfc822Names, then an
    /// emailAddress in its subject name (older CAs put it only there).
    pub fn mail_addresses(&self) -> Vec<String> {
        let mut addresses: Vec<String> = Vec::new();
        let names = self.extension(ID_SUBJECT_ALT_NAME).and_then(Element::parse);
        for name in names.and_then(|n| n.children(SEQUENCE)).into_iter().flatten() {
            if name.tag == CONTEXT_1_PRIMITIVE {
                addresses.extend(std::str::from_utf8(name.content).ok().map(str::to_owned));
            }
        }
        for set in self.subject.children(SEQUENCE).into_iter().flatten() {
            for pair in set.children(SET).into_iter().flatten() {
                let Some(mut fields) = pair.children(SEQUENCE) else { continue };
                if fields.next().is_some_and(|oid| oid.is_oid(ID_EMAIL_ADDRESS)) {
                    if let Some(address) = fields.next().and_then(|v| std::str::from_utf8(v.content).ok()) {
                        if !addresses.iter().any(|a| a.eq_ignore_ascii_case(address)) {
                            addresses.push(address.to_owned());
                        }
                    }
                }
            }
        }
        addresses
    }
}

#[cfg(test)]
mod tests {
    use super::super::ber::OCTET_STRING_CONSTRUCTED;
    use super::*;

    fn signed_content(ber: &[u8]) -> Option<Vec<u8>> {
        signed_data(ber)?.content
    }

    /// A hand-built SignedData with an indefinite-length outer structure and the content in two
    /// chunks of a constructed OCTET STRING, as `openssl cms -stream` writes it.
    #[test]
    fn indefinite_lengths_and_chunked_content_are_read() {
        let mut ber = vec![SEQUENCE, 0x80, OID, ID_SIGNED_DATA.len() as u8];
        ber.extend(ID_SIGNED_DATA);
        ber.extend([CONTEXT_0, 0x80, SEQUENCE, 0x80, INTEGER, 1, 1, SET, 0]);
        ber.extend([SEQUENCE, 0x80, OID, ID_DATA.len() as u8]);
        ber.extend(ID_DATA);
        ber.extend([CONTEXT_0, 0x80, OCTET_STRING_CONSTRUCTED, 0x80]);
        ber.extend([OCTET_STRING, 6]);
        ber.extend(b"Hello ");
        ber.extend([OCTET_STRING, 0x81, 5]);
        ber.extend(b"world");
        ber.extend([0, 0, 0, 0, 0, 0]); // the octet string, [0], encapContentInfo
        ber.extend([SET, 0, 0, 0, 0, 0, 0, 0]); // signerInfos; SignedData, [0], ContentInfo
        assert_eq!(signed_content(&ber).as_deref(), Some(&b"Hello world"[..]));
    }

    /// The SignedData of the opaque-signed fixture (made by `openssl cms -stream`).
    fn outlook_signed_data() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/email/smime-opaque-signed-outlook.eml");
        let source = std::fs::read(path).unwrap();
        let message = mail_parser::MessageParser::default().parse(&source).unwrap();
        message.root_part().contents().to_vec()
    }

    /// The signature part of a fixture signed by `openssl cms -stream`, damaged a hundred
    /// thousand ways (bytes changed, cut, doubled): never a panic, and a damaged signature
    /// still gives its content up while a damaged path to it does not.
    #[test]
    fn damaged_signatures_never_panic() {
        let ber = outlook_signed_data();
        let content = signed_content(&ber).unwrap();
        let (mut seed, mut read, mut unread) = (0x9e37_79b9_7f4a_7c15_u64, 0, 0);
        let mut random = |below: usize| (super::super::tests::xorshift(&mut seed) % below as u64) as usize;
        for _ in 0..100_000 {
            let mut damaged = ber.clone();
            match random(3) {
                0 => damaged[random(ber.len())] = random(256) as u8,
                1 => damaged.truncate(random(ber.len())),
                _ => {
                    let at = random(ber.len());
                    let copy = damaged[at..(at + random(64)).min(ber.len())].to_vec();
                    damaged.splice(at..at, copy);
                }
            }
            match signed_content(&damaged) {
                Some(_) => read += 1,
                None => unread += 1,
            }
        }
        assert!(content.starts_with(b"Content-Type: multipart/mixed"));
        assert!(read > 0 && unread > 0, "{read} read, {unread} not");
    }

    /// The same fixture's signature damaged five thousand ways and checked: never a panic, and
    /// never `valid` (the fixture's certificate is self-signed, so at best `untrusted`).
    #[test]
    fn damaged_signatures_are_checked_without_a_panic() {
        let ber = outlook_signed_data();
        let (whole, _) = verify(signed_data(&ber), None, "ann@customer.example", None);
        assert_eq!(whole.status, SignatureStatus::Untrusted, "{whole:?}");
        let data = signed_data(&ber).unwrap();
        let signer = certificate(data.certificates[0]).unwrap();
        assert_eq!(signer.mail_addresses(), ["ann@customer.example"]);
        let expires = signer.not_after.map(|t| crate::model::time::rfc3339(t.as_secs() as i64 * 1000));
        assert_eq!(expires.as_deref(), Some("2027-11-30T21:07:07.000Z"), "the certificate's notAfter");
        let mut seen = std::collections::BTreeMap::new();
        for (_, damaged) in super::super::tests::bit_flips(&ber, 5_000) {
            let (verdict, _) = verify(signed_data(&damaged), None, "ann@customer.example", None);
            assert_ne!(verdict.status, SignatureStatus::Valid, "{verdict:?}");
            *seen.entry(format!("{:?}", verdict.status)).or_insert(0) += 1;
        }
        assert!(seen.contains_key("Invalid") && seen.contains_key("Unverifiable"), "{seen:?}");
    }

    /// Older clients leave smime-type out: a signed structure is still a signature, an
    /// encrypted one is encrypted (rather than an unreadable signature).
    #[test]
    fn without_smime_type_the_structure_decides() {
        let fixture = |name: &str| {
            let path = format!("{}/tests/fixtures/email/{name}.eml", env!("CARGO_MANIFEST_DIR"));
            let source = std::fs::read_to_string(path).unwrap();
            let bare =
                source.replacen(" smime-type=signed-data;", "", 1).replacen(" smime-type=enveloped-data;", "", 1);
            assert_ne!(bare, source, "{name}");
            let message = mail_parser::MessageParser::default().parse(bare.as_bytes()).unwrap();
            let opened = open(&message, bare.as_bytes(), &super::super::tests::channel());
            (opened.signature.map(|s| s.status), opened.encryption.map(|e| e.kind))
        };
        assert_eq!(fixture("smime-opaque-signed-outlook"), (Some(SignatureStatus::Untrusted), None));
        assert_eq!(fixture("smime-encrypted"), (None, Some("smime".to_owned())));
    }

    #[test]
    fn signing_times_are_read_in_both_forms() {
        let at = |tag, text: &str| {
            let mut der = vec![tag, text.len() as u8];
            der.extend(text.as_bytes());
            time(Element::parse(&der).unwrap()).map(|t| crate::model::time::rfc3339(t.as_secs() as i64 * 1000))
        };
        assert_eq!(at(UTC_TIME, "261130120005Z").as_deref(), Some("2026-11-30T12:00:05.000Z"));
        assert_eq!(at(GENERALIZED_TIME, "20261130120005Z").as_deref(), Some("2026-11-30T12:00:05.000Z"));
        assert_eq!(at(UTC_TIME, "491231235959Z").as_deref(), Some("2049-12-31T23:59:59.000Z"));
        // 1950 is before 1970; a local time, a bad month and a short text are no time.
        for (tag, text) in [(UTC_TIME, "500101000000Z"), (UTC_TIME, "261130120005"), (UTC_TIME, "261330120005Z")] {
            assert_eq!(at(tag, text), None, "{text}");
        }
        assert_eq!(at(GENERALIZED_TIME, "2026Z"), None);
        assert_eq!(oid_text(RSASSA_PSS), "1.2.840.113549.1.1.10");
        assert_eq!(oid_text(SHA1), "1.3.14.3.2.26");
    }

    #[test]
    fn the_mails_header_keeps_all_but_its_content_fields() {
        let source = b"From: ann@example.com\r\nContent-Type: application/pkcs7-mime;\r\n smime-type=signed-data\r\nSubject: Hi\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqG\r\n";
        assert_eq!(header_without_content_fields(source), b"From: ann@example.com\r\nSubject: Hi\r\n");
        assert!(starts_with_header_field(b"Content-Type: text/plain\r\n\r\nHi"));
        assert!(!starts_with_header_field(b"Dear Sir, my order: 1234"));
    }
}
