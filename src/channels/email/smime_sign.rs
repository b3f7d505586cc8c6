//! S/MIME signing of the mail we send (RFC 8551 §3.5.2, clear-signed): with the channel's
//! `smime_certificate_file` and `smime_key`, each mail from an address the certificate names
//! goes out as `multipart/signed`, the mail's MIME body first and its CMS SignedData (RFC 5652)
//! beside it as `smime.p7s`. A customer's mail client shows it signed by us, and a client that
//! shows only text still reads the first part. Mail from an address the certificate does not
//! name (an alias of its own) goes out unsigned rather than signed by someone else.
//!
//! The signature covers the signed attributes (content type, signing time, the body's SHA-256
//! or SHA-384 digest), DER-encoded by the small writer below; the keys are ring's: RSA
//! (PKCS#1 v1.5 with SHA-256) and ECDSA P-256/P-384. The certificate chain travels in the
//! signature, so a recipient needs only the root. Validation (`Signer::new`) refuses a key that
//! is not the certificate's and a certificate that names none of the channel's addresses.

use lettre::message::header::{ContentDisposition, ContentTransferEncoding, ContentType};
use lettre::message::{MultiPart, SinglePart};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use sha2::{Digest, Sha256, Sha384};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ber::oid::{
    ECDSA_WITH_SHA256, ECDSA_WITH_SHA384, ID_CONTENT_TYPE, ID_DATA, ID_MESSAGE_DIGEST, ID_SIGNED_DATA, ID_SIGNING_TIME,
    RSA_ENCRYPTION, SHA256, SHA384,
};
use super::ber::{der, Element, CONTEXT_0, INTEGER, OCTET_STRING, OID, SEQUENCE, SET, UTC_TIME};
use super::smime;

/// ASN.1 NULL: rsaEncryption's parameters.
const NULL: &[u8] = &[0x05, 0x00];

/// The channel's signing identity: its certificate chain and private key.
pub struct Signer {
    /// The certificate first, then the intermediates, DER.
    chain: Vec<Vec<u8>>,
    /// The certificate's IssuerAndSerialNumber, DER: how the signature names its signer.
    issuer_and_serial: Vec<u8>,
    /// The mail addresses the certificate is for.
    addresses: Vec<String>,
    /// When the certificate expires (seconds since 1970).
    pub expires: Option<u64>,
    key: Key,
    rng: SystemRandom,
}

enum Key {
    Rsa(RsaKeyPair),
    /// With SHA-256 on P-256, SHA-384 on P-384.
    Ecdsa(EcdsaKeyPair, Hash),
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(bytes).to_vec(),
            Hash::Sha384 => Sha384::digest(bytes).to_vec(),
        }
    }

    fn oid(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => SHA256,
            Hash::Sha384 => SHA384,
        }
    }

    /// The `micalg` parameter of `multipart/signed` (RFC 8551 §3.5.3.2).
    fn micalg(self) -> &'static str {
        match self {
            Hash::Sha256 => "sha-256",
            Hash::Sha384 => "sha-384",
        }
    }
}

impl Signer {
    /// The signer of `certificate_pem` (the certificate, then any intermediates) and `key_pem`
    /// (PKCS#8, or PKCS#1 for RSA), for a channel with `our_addresses`; or why it cannot sign.
    pub fn new<'a>(
        certificate_pem: &[u8],
        key_pem: &[u8],
        our_addresses: impl IntoIterator<Item = &'a str>,
    ) -> Result<Signer, String> {
        let chain: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(certificate_pem)
            .map(|c| c.map(|c| c.to_vec()).map_err(|e| format!("a certificate cannot be read: {e}")))
            .collect::<Result<_, _>>()?;
        let first = chain.first().ok_or("holds no certificate")?;
        let certificate = Element::parse(first)
            .and_then(smime::certificate)
            .ok_or("the first certificate cannot be read as X.509")?;
        let addresses = certificate.mail_addresses();
        let ours: Vec<&str> = our_addresses.into_iter().collect();
        if !addresses.iter().any(|a| ours.iter().any(|o| a.eq_ignore_ascii_case(o))) {
            return Err(format!(
                "the certificate is for {}, not for {}",
                if addresses.is_empty() { "no mail address".to_owned() } else { addresses.join(", ") },
                ours.join(", ")
            ));
        }
        let issuer_and_serial = der(SEQUENCE, &[certificate.issuer, &der(INTEGER, &[certificate.serial])]);
        let rng = SystemRandom::new();
        let key = match PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("the key cannot be read: {e}"))? {
            PrivateKeyDer::Pkcs1(rsa) => Key::Rsa(RsaKeyPair::from_der(rsa.secret_pkcs1_der()).map_err(rejected)?),
            PrivateKeyDer::Pkcs8(pkcs8) => {
                let der = pkcs8.secret_pkcs8_der();
                let ecdsa = |alg, hash| EcdsaKeyPair::from_pkcs8(alg, der, &rng).map(|k| Key::Ecdsa(k, hash));
                RsaKeyPair::from_pkcs8(der)
                    .map(Key::Rsa)
                    .or_else(|_| ecdsa(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, Hash::Sha256))
                    .or_else(|_| ecdsa(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, Hash::Sha384))
                    .map_err(|_| "the key is neither RSA nor ECDSA on P-256 or P-384".to_owned())?
            }
            PrivateKeyDer::Sec1(_) => {
                return Err("an EC key must be PKCS#8 (`openssl pkcs8 -topk8 -nocrypt` converts it)".into())
            }
            _ => return Err("the key is of a kind not supported here".into()),
        };
        let expires = certificate.not_after.map(|t| t.as_secs());
        let signer = Signer { chain, issuer_and_serial, addresses, expires, key, rng };
        // The key must be the certificate's: a probe signed with it verifies with the
        // certificate's public key.
        let probe = b"switchboard S/MIME key check";
        let signed = signer.signature(probe)?;
        let der = CertificateDer::from(&signer.chain[0][..]);
        let end_entity =
            webpki::EndEntityCert::try_from(&der).map_err(|e| format!("the certificate cannot be used: {e}"))?;
        let algorithm = match &signer.key {
            Key::Rsa(_) => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            Key::Ecdsa(_, Hash::Sha256) => webpki::ring::ECDSA_P256_SHA256,
            Key::Ecdsa(_, Hash::Sha384) => webpki::ring::ECDSA_P384_SHA384,
        };
        end_entity
            .verify_signature(algorithm, probe, &signed)
            .map_err(|_| "the private key is not the certificate's".to_owned())?;
        Ok(signer)
    }

    /// Whether mail from `address` is signed: the certificate is for it.
    pub fn signs_for(&self, address: &str) -> bool {
        self.addresses.iter().any(|a| a.eq_ignore_ascii_case(address))
    }

    /// `body` (a mail's MIME body) signed: `multipart/signed` with `body` first and the
    /// signature second. `now_ms` is the signing time.
    pub fn sign(&self, body: MultiPart, now_ms: i64) -> Result<MultiPart, String> {
        let mut content = body.formatted();
        // The line break before the next boundary belongs to the boundary (RFC 2046 §5.1.1),
        // not to the signed part.
        if content.ends_with(b"\r\n") {
            content.truncate(content.len() - 2);
        }
        let cms = self.signed_data(&content, now_ms)?;
        let signature = SinglePart::builder()
            .header(ContentType::parse("application/pkcs7-signature; name=\"smime.p7s\"").expect("valid"))
            .header(ContentTransferEncoding::Base64)
            .header(ContentDisposition::attachment("smime.p7s"))
            .body(cms);
        Ok(MultiPart::signed("application/pkcs7-signature".into(), self.hash().micalg().into())
            .multipart(body)
            .singlepart(signature))
    }

    fn hash(&self) -> Hash {
        match &self.key {
            Key::Rsa(_) => Hash::Sha256,
            Key::Ecdsa(_, hash) => *hash,
        }
    }

    /// The CMS ContentInfo holding a detached SignedData over `content` (RFC 5652 §5).
    fn signed_data(&self, content: &[u8], now_ms: i64) -> Result<Vec<u8>, String> {
        let hash = self.hash();
        let digest_algorithm = der(SEQUENCE, &[&der(OID, &[hash.oid()])]);
        let attribute = |oid: &[u8], value: Vec<u8>| der(SEQUENCE, &[&der(OID, &[oid]), &der(SET, &[&value])]);
        let mut attributes = [
            attribute(ID_CONTENT_TYPE, der(OID, &[ID_DATA])),
            attribute(ID_SIGNING_TIME, der(UTC_TIME, &[utc_time(now_ms).as_bytes()])),
            attribute(ID_MESSAGE_DIGEST, der(OCTET_STRING, &[&hash.digest(content)])),
        ];
        // DER orders a SET OF by the encodings.
        attributes.sort();
        let parts: Vec<&[u8]> = attributes.iter().map(Vec::as_slice).collect();
        // Signed as a SET OF, stored as `[0] IMPLICIT`.
        let signed_attributes = der(SET, &parts);
        let signature = self.signature(&signed_attributes)?;
        let signature_algorithm = match &self.key {
            Key::Rsa(_) => der(SEQUENCE, &[&der(OID, &[RSA_ENCRYPTION]), NULL]),
            Key::Ecdsa(_, Hash::Sha256) => der(SEQUENCE, &[&der(OID, &[ECDSA_WITH_SHA256])]),
            Key::Ecdsa(_, Hash::Sha384) => der(SEQUENCE, &[&der(OID, &[ECDSA_WITH_SHA384])]),
        };
        let signer_info = der(
            SEQUENCE,
            &[
                &der(INTEGER, &[&[1]]),
                &self.issuer_and_serial,
                &digest_algorithm,
                &der(CONTEXT_0, &parts),
                &signature_algorithm,
                &der(OCTET_STRING, &[&signature]),
            ],
        );
        let certificates: Vec<&[u8]> = self.chain.iter().map(Vec::as_slice).collect();
        let signed_data = der(
            SEQUENCE,
            &[
                &der(INTEGER, &[&[1]]),
                &der(SET, &[&digest_algorithm]),
                &der(SEQUENCE, &[&der(OID, &[ID_DATA])]),
                &der(CONTEXT_0, &certificates),
                &der(SET, &[&signer_info]),
            ],
        );
        Ok(der(SEQUENCE, &[&der(OID, &[ID_SIGNED_DATA]), &der(CONTEXT_0, &[&signed_data])]))
    }

    /// The key's signature over `message`.
    fn signature(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let failed = |_| "the key failed to sign".to_owned();
        match &self.key {
            Key::Rsa(key) => {
                let mut out = vec![0; key.public().modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut out).map_err(failed)?;
                Ok(out)
            }
            Key::Ecdsa(key, _) => Ok(key.sign(&self.rng, message).map_err(failed)?.as_ref().to_vec()),
        }
    }
}

fn rejected(e: ring::error::KeyRejected) -> String {
    format!("the key cannot be used: {e}")
}

/// `YYMMDDHHMMSSZ` (UTCTime, for years 1950–2049 as RFC 5280 wants it there).
fn utc_time(ms: i64) -> String {
    let text = crate::model::time::rfc3339(ms); // 2026-11-30T12:00:05.000Z
    let digits: String = text.chars().filter(char::is_ascii_digit).collect(); // 20261130120005000
    format!("{}Z", &digits[2..14])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_take_the_short_and_the_long_form() {
        assert_eq!(der(OCTET_STRING, &[&[7; 3]]), [OCTET_STRING, 3, 7, 7, 7]);
        let long = der(OCTET_STRING, &[&[0; 300]]);
        assert_eq!(&long[..4], [OCTET_STRING, 0x82, 0x01, 0x2c]);
        assert_eq!(Element::parse(&long).map(|e| e.content.len()), Some(300));
        assert_eq!(utc_time(1_796_040_005_000), "261130120005Z");
    }
}
