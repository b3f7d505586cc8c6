//! A small BER reader (X.690) for the CMS and X.509 structures S/MIME carries (`smime.rs`).
//!
//! CMS is BER: besides DER's definite lengths, Outlook and `openssl cms -stream` write
//! indefinite lengths and the content as a constructed OCTET STRING in chunks. Certificates and
//! signed attributes are DER, a subset. The reader walks only the paths its callers name and
//! gives up (`None`) on anything else: it never panics and never nests deeper than `MAX_DEPTH`,
//! whatever a hostile mail holds.

/// Nesting the reader follows before it gives up (a hostile mail could nest for ever).
const MAX_DEPTH: u8 = 32;

pub(super) const BOOLEAN: u8 = 0x01;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const OID: u8 = 0x06;
pub(super) const UTC_TIME: u8 = 0x17;
pub(super) const GENERALIZED_TIME: u8 = 0x18;
pub(super) const OCTET_STRING_CONSTRUCTED: u8 = 0x24;
pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const SET: u8 = 0x31;
/// `[0]`, primitive (IMPLICIT over a primitive type).
pub(super) const CONTEXT_0_PRIMITIVE: u8 = 0x80;
/// `[1]`, primitive: a GeneralName's rfc822Name.
pub(super) const CONTEXT_1_PRIMITIVE: u8 = 0x81;
/// `[1]`, constructed: a RecipientInfo's key agreement, its user keying material.
pub(super) const CONTEXT_1: u8 = 0xa1;
/// `[0]`, constructed (EXPLICIT, or IMPLICIT over a constructed type).
pub(super) const CONTEXT_0: u8 = 0xa0;
/// `[2]`, constructed: RSASSA-PSS's saltLength.
pub(super) const CONTEXT_2: u8 = 0xa2;
/// `[3]`, constructed: a certificate's extensions.
pub(super) const CONTEXT_3: u8 = 0xa3;

/// The object identifiers S/MIME reads and writes, as encoded in an OID's contents.
pub(super) mod oid {
    /// `1.2.840.113549.1.7.3`, id-envelopedData: content encrypted to its recipients.
    pub const ID_ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
    /// `1.2.840.113549.1.9.16.1.23`, id-ct-authEnvelopedData (AES-GCM, RFC 5083).
    pub const ID_AUTH_ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17];
    /// `1.2.840.113549.1.7.2`, id-signedData.
    pub const ID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    /// `1.2.840.113549.1.7.1`, id-data: the signed content is a MIME entity.
    pub const ID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    /// `1.2.840.113549.1.9.3`, the contentType signed attribute.
    pub const ID_CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
    /// `1.2.840.113549.1.9.4`, the messageDigest signed attribute.
    pub const ID_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
    /// `1.2.840.113549.1.9.5`, the signingTime signed attribute.
    pub const ID_SIGNING_TIME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05];
    /// `1.2.840.113549.1.9.1`, emailAddress in a certificate's subject name.
    pub const ID_EMAIL_ADDRESS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
    /// `2.5.29.17`, the subjectAltName extension.
    pub const ID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
    /// `2.5.29.14`, the subjectKeyIdentifier extension.
    pub const ID_SUBJECT_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1d, 0x0e];
    /// `2.5.29.15`, keyUsage.
    pub const ID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
    /// `1.3.6.1.5.5.7.3.4`, the emailProtection extended key usage.
    pub const EKU_EMAIL_PROTECTION: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04];

    pub const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    pub const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// `1.2.840.113549.1.1.7`, RSAES-OAEP (key transport, RFC 8017), and its mask function.
    pub const RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
    pub const MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
    /// Content encryption (RFC 3565, RFC 5084, RFC 3370): AES-CBC, AES-GCM, Triple-DES CBC.
    pub const AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
    pub const AES192_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16];
    pub const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
    pub const AES128_GCM: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x06];
    pub const AES256_GCM: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2e];
    pub const DES_EDE3_CBC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x07];
    /// Key agreement (RFC 5753 §7.1.4, ECDH with an ANSI X9.63 KDF over SHA-1, SHA-224,
    /// SHA-256, SHA-384 or SHA-512), standard and cofactor (the same on the NIST curves).
    pub const DH_STD_SHA1_KDF: &[u8] = &[0x2b, 0x81, 0x05, 0x10, 0x86, 0x48, 0x3f, 0x00, 0x02];
    pub const DH_COFACTOR_SHA1_KDF: &[u8] = &[0x2b, 0x81, 0x05, 0x10, 0x86, 0x48, 0x3f, 0x00, 0x03];
    pub const DH_STD_SHA224_KDF: &[u8] = &[0x2b, 0x81, 0x04, 0x01, 0x0b, 0x00];
    pub const DH_STD_SHA256_KDF: &[u8] = &[0x2b, 0x81, 0x04, 0x01, 0x0b, 0x01];
    pub const DH_STD_SHA384_KDF: &[u8] = &[0x2b, 0x81, 0x04, 0x01, 0x0b, 0x02];
    pub const DH_STD_SHA512_KDF: &[u8] = &[0x2b, 0x81, 0x04, 0x01, 0x0b, 0x03];
    pub const DH_COFACTOR_SHA224_KDF: &[u8] = &[0x2b, 0x81, 0x04, 0x01, 0x0e, 0x00];
    pub const DH_COFACTOR_SHA256_KDF: &[u8] = &[0x2b, 0x81, 0x04, 0x01, 0x0e, 0x01];
    pub const DH_COFACTOR_SHA384_KDF: &[u8] = &[0x2b, 0x81, 0x04, 0x01, 0x0e, 0x02];
    pub const DH_COFACTOR_SHA512_KDF: &[u8] = &[0x2b, 0x81, 0x04, 0x01, 0x0e, 0x03];
    /// Key wrap (RFC 3394 for AES, RFC 3217 for Triple-DES).
    pub const AES128_WRAP: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x05];
    pub const AES192_WRAP: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x19];
    pub const AES256_WRAP: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2d];
    pub const DES_EDE3_WRAP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x03, 0x06];
    pub const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    pub const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    pub const SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    pub const SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    pub const ECDSA_WITH_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
}

/// One BER element: its tag (one byte: CMS and X.509 use no high tag numbers), its contents
/// (for an indefinite length, up to and not including the end-of-contents octets), and its
/// whole encoding, tag and length included (what a signature over it covers).
#[derive(Clone, Copy, Debug)]
pub(super) struct Element<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

impl<'a> Element<'a> {
    /// The element at the start of `input` (whatever follows it is ignored).
    pub fn parse(input: &'a [u8]) -> Option<Element<'a>> {
        element(input, 0).map(|(element, _)| element)
    }

    /// The elements inside this one, which must have tag `tag`.
    pub fn children(self, tag: u8) -> Option<impl Iterator<Item = Element<'a>>> {
        (self.tag == tag).then(|| {
            let mut cursor = self.content;
            std::iter::from_fn(move || {
                let (child, rest) = element(cursor, 1)?;
                cursor = rest;
                Some(child)
            })
        })
    }

    /// Whether this is an OBJECT IDENTIFIER with the encoded value `oid`.
    pub fn is_oid(self, oid: &[u8]) -> bool {
        self.tag == OID && self.content == oid
    }

    /// An OCTET STRING's bytes: primitive, or constructed of OCTET STRING chunks.
    pub fn octets(self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        octets(self, 0, &mut out)?;
        Some(out)
    }

    /// The bytes of an OCTET STRING under an IMPLICIT context tag (`[0]`: CMS's encrypted
    /// content), primitive or in chunks as `octets` reads them.
    pub fn implicit_octets(self) -> Option<Vec<u8>> {
        let tag = if self.tag & 0x20 == 0 { OCTET_STRING } else { OCTET_STRING_CONSTRUCTED };
        Element { tag, ..self }.octets()
    }
}

/// A DER element: `tag`, the length, then `parts` one after another (what the CMS structures
/// we write are made of).
pub(super) fn der(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let length: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(length + 6);
    out.push(tag);
    match length {
        0..=0x7f => out.push(length as u8),
        _ => {
            let bytes = length.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// The element at the start of `input`, and what follows it.
fn element(input: &[u8], depth: u8) -> Option<(Element<'_>, &[u8])> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&length, rest) = rest.split_first()?;
    let (content, rest) = match length {
        // Indefinite: constructed only; its elements up to the end-of-contents octets.
        0x80 => {
            if tag & 0x20 == 0 {
                return None;
            }
            let mut cursor = rest;
            while !cursor.starts_with(&[0, 0]) {
                cursor = element(cursor, depth + 1)?.1;
            }
            (&rest[..rest.len() - cursor.len()], &cursor[2..])
        }
        short if short < 0x80 => split(rest, usize::from(short))?,
        long => {
            let count = usize::from(long & 0x7f);
            if count > 4 || rest.len() < count {
                return None;
            }
            let (digits, rest) = rest.split_at(count);
            let length = digits.iter().fold(0usize, |n, d| (n << 8) | usize::from(*d));
            split(rest, length)?
        }
    };
    let raw = &input[..input.len() - rest.len()];
    Some((Element { tag, content, raw }, rest))
}

fn split(rest: &[u8], length: usize) -> Option<(&[u8], &[u8])> {
    (rest.len() >= length).then(|| rest.split_at(length))
}

fn octets(string: Element<'_>, depth: u8, out: &mut Vec<u8>) -> Option<()> {
    match string.tag {
        OCTET_STRING => out.extend_from_slice(string.content),
        OCTET_STRING_CONSTRUCTED => {
            let mut cursor = string.content;
            while !cursor.is_empty() {
                let (chunk, rest) = element(cursor, depth + 1)?;
                octets(chunk, depth + 1, out)?;
                cursor = rest;
            }
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_element_knows_its_whole_encoding() {
        let input = [SEQUENCE, 0x80, INTEGER, 1, 7, 0, 0, OID, 1, 42];
        let sequence = Element::parse(&input).unwrap();
        assert_eq!(sequence.raw, &input[..7]);
        assert_eq!(sequence.content, &[INTEGER, 1, 7]);
        let integer = sequence.children(SEQUENCE).unwrap().next().unwrap();
        assert_eq!((integer.tag, integer.content, integer.raw), (INTEGER, &[7][..], &[INTEGER, 1, 7][..]));
        assert!(sequence.children(SET).is_none());
    }

    /// Truncations, a missing end-of-contents, lengths past the end and endless nesting are
    /// nothing, never a panic.
    #[test]
    fn broken_encodings_are_nothing() {
        let mut nested = Vec::new();
        for _ in 0..1000 {
            nested.extend([SEQUENCE, 0x80]);
        }
        let mut lying = vec![SEQUENCE, 0x84, 0xff, 0xff, 0xff, 0xff];
        lying.extend([0; 16]);
        for ber in
            [&b""[..], &[SEQUENCE], &[SEQUENCE, 0x80, OID, 0x80], &nested, &lying, &[SEQUENCE, 0x85, 1, 1, 1, 1, 1]]
        {
            assert!(Element::parse(ber).is_none(), "{ber:?}");
        }
        let chunked_badly = [OCTET_STRING_CONSTRUCTED, 4, INTEGER, 2, 1, 1];
        assert_eq!(Element::parse(&chunked_badly).unwrap().octets(), None);
    }
}
