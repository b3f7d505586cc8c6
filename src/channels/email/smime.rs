//! S/MIME opaque-signed mail (RFC 8551 §3.5.3): the whole mail is one `application/pkcs7-mime;
//! smime-type=signed-data` part, a CMS SignedData structure with the signed MIME entity inside.
//! Outlook sends signed mail this way when "clear text signed" is off, and so do some mail
//! gateways. A reader that does not look inside sees a mail with no text and one `smime.p7m`
//! file: Zammad (zammad#6376, #4742), osTicket (#883, #6806) and FreeScout (#2540) show such
//! mail as empty.
//!
//! Here the signed entity is taken out and read as the mail, under the mail's own header
//! (sender, subject, threading). The signature is not verified: no certificate store is kept,
//! as a mail client does not refuse an unverified signature either. The mail's source, kept as
//! fetched, still holds the signature. Encrypted S/MIME (`enveloped-data`) cannot be read
//! without the recipient's key and stays a mail with its `smime.p7m` file.
//!
//! CMS is BER: besides DER's definite lengths, Outlook and `openssl cms -stream` write
//! indefinite lengths and the content as a constructed OCTET STRING in chunks. A small BER
//! reader below walks exactly the path to the content and gives up (`None`) on anything else.

use mail_parser::{Message, MimeHeaders};

/// `1.2.840.113549.1.7.2`, id-signedData, as encoded in an OID's contents.
const ID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// `1.2.840.113549.1.7.1`, id-data: the signed content is a MIME entity.
const ID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
/// Nesting a BER reader follows before it gives up (a hostile mail could nest for ever).
const MAX_DEPTH: u8 = 32;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const OCTET_STRING_CONSTRUCTED: u8 = 0x24;
/// `[0] EXPLICIT`, constructed.
const CONTEXT_0: u8 = 0xa0;

/// The mail an opaque-signed `message` carries: its own header section without the `Content-*`
/// fields of the signature part, followed by the signed entity. `None` when `message` is no
/// opaque-signed mail or its signature part cannot be read (it is then read as it is).
pub(super) fn signed_mail(message: &Message<'_>, source: &[u8]) -> Option<Vec<u8>> {
    let root = message.root_part();
    let content_type = root.content_type()?;
    let subtype = content_type.subtype()?;
    let is_pkcs7 = content_type.ctype().eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("pkcs7-mime") || subtype.eq_ignore_ascii_case("x-pkcs7-mime"));
    // Without smime-type (older clients leave it out) the structure's own type decides.
    let signed = content_type.attribute("smime-type").is_none_or(|t| t.eq_ignore_ascii_case("signed-data"));
    if !is_pkcs7 || !signed {
        return None;
    }
    let entity = signed_content(root.contents())?;
    let mut mail = header_without_content_fields(source);
    // A signed entity with a header section of its own (the usual case) follows the mail's
    // header directly. One without (some Microsoft clients sign the bare text) gets an empty
    // line first, so that its first line is not read as a header.
    if !starts_with_header_field(&entity) {
        mail.extend_from_slice(b"\r\n");
    }
    mail.extend_from_slice(&entity);
    Some(mail)
}

/// The header section of `source` (up to, not including, the empty line that ends it), less
/// every `Content-*` field and its folded lines.
fn header_without_content_fields(source: &[u8]) -> Vec<u8> {
    let mut header = Vec::with_capacity(source.len().min(8192));
    let mut keep = true;
    for line in source.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let folded = matches!(line.first(), Some(b' ' | b'\t'));
        if !folded {
            keep = !line.get(..8).is_some_and(|name| name.eq_ignore_ascii_case(b"content-"));
        }
        if keep {
            header.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                header.extend_from_slice(b"\r\n");
            }
        }
    }
    header
}

/// Whether `entity` begins with a header field (`Name: value`, RFC 5322 §2.2).
fn starts_with_header_field(entity: &[u8]) -> bool {
    let line = entity.split(|b| *b == b'\n').next().unwrap_or_default();
    match line.iter().position(|b| *b == b':') {
        Some(colon) if colon > 0 => line[..colon].iter().all(|b| (33..=126).contains(b)),
        _ => false,
    }
}

/// The signed content of a CMS `ContentInfo` holding `SignedData` with id-data content
/// (RFC 5652 §3, §5.1, §5.2), or `None`.
fn signed_content(ber: &[u8]) -> Option<Vec<u8>> {
    let (content_info, _) = element(ber, 0)?;
    let mut fields = children(content_info, SEQUENCE, 0)?;
    let content_type = fields.next()?;
    if content_type.tag != OID || content_type.content != ID_SIGNED_DATA {
        return None;
    }
    let explicit = fields.next()?;
    let signed_data = children(explicit, CONTEXT_0, 1)?.next()?;
    let mut fields = children(signed_data, SEQUENCE, 2)?;
    let version = fields.next()?;
    let digest_algorithms = fields.next()?;
    if version.tag != INTEGER || digest_algorithms.tag != SET {
        return None;
    }
    let mut encapsulated = children(fields.next()?, SEQUENCE, 3)?;
    let e_content_type = encapsulated.next()?;
    if e_content_type.tag != OID || e_content_type.content != ID_DATA {
        return None;
    }
    // Absent: a detached signature, whose content travels beside it (multipart/signed).
    let e_content = children(encapsulated.next()?, CONTEXT_0, 4)?.next()?;
    let mut bytes = Vec::new();
    octets(e_content, 5, &mut bytes)?;
    Some(bytes)
}

/// One BER element: its tag (one byte: CMS uses no high tag numbers) and its contents, which
/// for an indefinite length run up to, not including, the end-of-contents octets.
#[derive(Clone, Copy, Debug)]
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
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
    match length {
        // Indefinite: constructed only; its elements up to the end-of-contents octets.
        0x80 => {
            if tag & 0x20 == 0 {
                return None;
            }
            let mut cursor = rest;
            while !cursor.starts_with(&[0, 0]) {
                cursor = element(cursor, depth + 1)?.1;
            }
            let content = &rest[..rest.len() - cursor.len()];
            Some((Element { tag, content }, &cursor[2..]))
        }
        short if short < 0x80 => split(tag, rest, usize::from(short)),
        long => {
            let count = usize::from(long & 0x7f);
            if count > 4 || rest.len() < count {
                return None;
            }
            let (digits, rest) = rest.split_at(count);
            let length = digits.iter().fold(0usize, |n, d| (n << 8) | usize::from(*d));
            split(tag, rest, length)
        }
    }
}

fn split(tag: u8, rest: &[u8], length: usize) -> Option<(Element<'_>, &[u8])> {
    (rest.len() >= length).then(|| {
        let (content, rest) = rest.split_at(length);
        (Element { tag, content }, rest)
    })
}

/// The elements inside `parent`, which must have tag `tag`.
fn children(parent: Element<'_>, tag: u8, depth: u8) -> Option<impl Iterator<Item = Element<'_>>> {
    (parent.tag == tag).then(|| {
        let mut cursor = parent.content;
        std::iter::from_fn(move || {
            let (child, rest) = element(cursor, depth + 1)?;
            cursor = rest;
            Some(child)
        })
    })
}

/// An OCTET STRING's bytes into `out`: primitive, or constructed of OCTET STRING chunks.
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

    /// Truncations, a missing end-of-contents, lengths past the end and endless nesting are
    /// no content, never a panic.
    #[test]
    fn broken_structures_are_no_content() {
        let mut nested = Vec::new();
        for _ in 0..1000 {
            nested.extend([SEQUENCE, 0x80]);
        }
        let mut lying = vec![SEQUENCE, 0x84, 0xff, 0xff, 0xff, 0xff];
        lying.extend([0; 16]);
        for ber in
            [&b""[..], &[SEQUENCE], &[SEQUENCE, 0x80, OID, 0x80], &nested, &lying, &[SEQUENCE, 0x85, 1, 1, 1, 1, 1]]
        {
            assert_eq!(signed_content(ber), None);
        }
    }

    /// The signature part of a fixture signed by `openssl cms -stream`, damaged a hundred
    /// thousand ways (bytes changed, cut, doubled): never a panic, and a damaged signature
    /// still gives its content up while a damaged path to it does not.
    #[test]
    fn damaged_signatures_never_panic() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/email/smime-opaque-signed-outlook.eml");
        let source = std::fs::read(path).unwrap();
        let message = mail_parser::MessageParser::default().parse(&source).unwrap();
        let ber = message.root_part().contents().to_vec();
        let content = signed_content(&ber).unwrap();
        let (mut seed, mut read, mut unread) = (0x9e37_79b9_7f4a_7c15_u64, 0, 0);
        let mut random = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
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

    #[test]
    fn the_mails_header_keeps_all_but_its_content_fields() {
        let source = b"From: ann@example.com\r\nContent-Type: application/pkcs7-mime;\r\n smime-type=signed-data\r\nSubject: Hi\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqG\r\n";
        assert_eq!(header_without_content_fields(source), b"From: ann@example.com\r\nSubject: Hi\r\n");
        assert!(starts_with_header_field(b"Content-Type: text/plain\r\n\r\nHi"));
        assert!(!starts_with_header_field(b"Dear Sir, my order: 1234"));
    }
}
