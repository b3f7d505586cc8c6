//! TNEF (`winmail.dat`, `application/ms-tnef`): Outlook's wrapper around a message's
//! attachments, and sometimes its only body, when it sends "Rich Text" through Exchange. Mail
//! clients other than Outlook, and every helpdesk we compare with (zammad#2403), show one opaque
//! `winmail.dat`; the files inside are read out here, per MS-OXTNEF, so that they reach the
//! helpdesk as attachments, and so is the body (`attBody`, or the `PR_BODY`, `PR_HTML` and
//! `PR_RTF_COMPRESSED` properties of `attMAPIProps`; RTF is read by `rtf.rs`).
//!
//! A stream is a signature, a key, and attributes: level (message or attachment), id, length,
//! value, checksum. An attachment starts with `attAttachRendData`; its bytes are in
//! `attAttachData` (or, for Outlook's newer writers, the `PR_ATTACH_DATA_OBJ` property), its
//! name in `attAttachTitle` (8.3) or, better, the `PR_ATTACH_LONG_FILENAME` property of its
//! `attAttachment` MAPI property list. Damaged input never panics: reading stops where the
//! stream stops making sense, and whole attachments read before that are kept.

use super::rtf;

const SIGNATURE: u32 = 0x223E_9F78;
const LEVEL_MESSAGE: u8 = 1;
const LEVEL_ATTACHMENT: u8 = 2;
const ATT_BODY: u32 = 0x0002_800C;
const ATT_MAPI_PROPS: u32 = 0x0006_9003;
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_DATA: u32 = 0x0006_800F;
const ATT_ATTACHMENT: u32 = 0x0006_9005;

const PR_ATTACH_DATA_OBJ: u16 = 0x3701;
const PR_ATTACH_FILENAME: u16 = 0x3704;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
const PR_ATTACH_MIME_TAG: u16 = 0x370E;
const PR_BODY: u16 = 0x1000;
const PR_RTF_COMPRESSED: u16 = 0x1009;
const PR_HTML: u16 = 0x1013;
/// The code page of the message's internet body (`PR_HTML`'s bytes).
const PR_INTERNET_CPID: u16 = 0x3FDE;

const PT_OBJECT: u16 = 0x000D;
const PT_STRING8: u16 = 0x001E;
const PT_UNICODE: u16 = 0x001F;
const PT_BINARY: u16 = 0x0102;
const PT_LONG: u16 = 0x0003;
/// A server entry id: bytes, like PT_BINARY.
const PT_SVREID: u16 = 0x00FB;
const MULTI_VALUED: u16 = 0x1000;

/// One file out of a TNEF stream.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TnefFile {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// Whether a MIME part is a TNEF stream, by its type or Outlook's file name for it.
pub fn is_tnef(content_type: &str, filename: Option<&str>) -> bool {
    content_type.eq_ignore_ascii_case("application/ms-tnef")
        || content_type.eq_ignore_ascii_case("application/vnd.ms-tnef")
        || filename.is_some_and(|f| f.eq_ignore_ascii_case("winmail.dat"))
}

/// What a TNEF stream carries: its files (those with content) and the message body, if any.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tnef {
    pub files: Vec<TnefFile>,
    /// The body as text, when the stream has one.
    pub text: Option<String>,
    /// The body as HTML, when the stream has one.
    pub html: Option<String>,
}

/// What a TNEF stream carries, or `None` when it is not one.
pub fn read(stream: &[u8]) -> Option<Tnef> {
    let mut reader = Reader(stream);
    if reader.u32()? != SIGNATURE {
        return None;
    }
    reader.u16()?; // the legacy key
    let mut files: Vec<Attachment> = Vec::new();
    let mut message = MessageAttributes::default();
    // An attribute cut short, or garbage after the last one, ends the stream.
    while let Some((level, id, value)) = reader.attribute() {
        if level == LEVEL_MESSAGE {
            match id {
                ATT_BODY => message.body = Some(ansi(value)),
                ATT_MAPI_PROPS => message.properties = properties(value),
                _ => {}
            }
            continue;
        }
        if level != LEVEL_ATTACHMENT {
            continue;
        }
        if id == ATT_ATTACH_REND_DATA || files.is_empty() {
            files.push(Attachment::default());
        }
        let file = files.last_mut().expect("one was pushed");
        match id {
            ATT_ATTACH_TITLE => file.title = Some(ansi(value)),
            ATT_ATTACH_DATA => file.data = Some(value.to_vec()),
            ATT_ATTACHMENT => file.properties = properties(value),
            _ => {}
        }
    }
    let (text, html) = message.body();
    Some(Tnef { files: files.into_iter().filter_map(Attachment::into_file).collect(), text, html })
}

/// What the attributes of one attachment said.
#[derive(Default)]
struct Attachment {
    /// The 8.3 name.
    title: Option<String>,
    data: Option<Vec<u8>>,
    properties: Properties,
}

/// What the message-level attributes said.
#[derive(Default)]
struct MessageAttributes {
    /// `attBody`: the body as plain text.
    body: Option<String>,
    properties: Properties,
}

/// A MAPI property list as read: each property's first value.
#[derive(Default)]
struct Properties(Vec<(u16, Value)>);

impl Properties {
    fn get(&self, id: u16) -> Option<&Value> {
        self.0.iter().find(|(pid, _)| *pid == id).map(|(_, v)| v)
    }

    fn text(&self, id: u16) -> Option<String> {
        match self.get(id)? {
            Value::Text(t) => Some(t.clone()).filter(|t| !t.trim().is_empty()),
            Value::Bytes(_) | Value::Number(_) => None,
        }
    }
}

impl MessageAttributes {
    /// The message's body as (text, HTML): `PR_BODY` or `attBody` as text, `PR_HTML` as HTML,
    /// and what the compressed RTF was written as where those say nothing.
    fn body(&self) -> (Option<String>, Option<String>) {
        let p = &self.properties;
        let mut text = p.text(PR_BODY).or_else(|| self.body.clone());
        let mut html = match (p.get(PR_HTML), p.get(PR_INTERNET_CPID)) {
            // In the code page the message names (Outlook's Polish HTML is in Windows-1250).
            (Some(Value::Bytes(bytes)), Some(Value::Number(page))) => Some(rtf::code_page(i64::from(*page))(bytes)),
            (Some(Value::Bytes(bytes)), _) => Some(super::mime::utf8_or_windows_1252(bytes.clone())),
            (Some(Value::Text(t)), _) => Some(t.clone()),
            _ => None,
        };
        let rtf = match p.get(PR_RTF_COMPRESSED) {
            Some(Value::Bytes(compressed)) => rtf::decompress(compressed).and_then(|rtf| rtf::body(&rtf)),
            _ => None,
        };
        match rtf {
            Some(rtf::Body::Html(h)) => html = html.or(Some(h)),
            Some(rtf::Body::Text(t)) => text = text.or(Some(t)),
            None => {}
        }
        let readable = |s: Option<String>| s.filter(|s| super::mime::readable(s));
        (readable(text), readable(html))
    }
}

impl Attachment {
    fn into_file(self) -> Option<TnefFile> {
        let p = &self.properties;
        let filename = p
            .text(PR_ATTACH_LONG_FILENAME)
            .or_else(|| p.text(PR_ATTACH_FILENAME))
            .or_else(|| self.title.clone().filter(|t| !t.trim().is_empty()));
        let content_type = p.text(PR_ATTACH_MIME_TAG).map(|t| t.to_ascii_lowercase());
        let bytes = match (&self.data, p.get(PR_ATTACH_DATA_OBJ)) {
            (Some(data), _) if !data.is_empty() => data.clone(),
            (_, Some(Value::Bytes(object))) => object.clone(),
            _ => return None,
        };
        (!bytes.is_empty()).then_some(TnefFile { filename, content_type, bytes })
    }
}

/// A MAPI property value we use: text (names, MIME type, body), bytes (data, HTML, RTF) or a
/// number (the body's code page).
enum Value {
    Text(String),
    Bytes(Vec<u8>),
    Number(u32),
}

/// A MAPI property list (`attAttachment`, `attMAPIProps`): the properties read before any that
/// cannot be.
fn properties(list: &[u8]) -> Properties {
    let mut reader = Reader(list);
    let mut out = Vec::new();
    let Some(count) = reader.u32() else { return Properties(out) };
    for _ in 0..count {
        match property(&mut reader) {
            Some(Some(property)) => out.push(property),
            Some(None) => {}
            None => break,
        }
    }
    Properties(out)
}

/// One property: `Some(None)` for one read past (a type or id we do not use), `None` when the
/// list cannot be read on.
fn property(reader: &mut Reader<'_>) -> Option<Option<(u16, Value)>> {
    let kind = reader.u16()?;
    let id = reader.u16()?;
    if id >= 0x8000 {
        // A named property: its GUID and its name (a number, or a UTF-16 string).
        reader.take(16)?;
        if reader.u32()? == 0 {
            reader.u32()?;
        } else {
            let length = reader.u32()? as usize;
            reader.padded(length)?;
        }
    }
    let base = kind & !MULTI_VALUED;
    let variable = matches!(base, PT_STRING8 | PT_UNICODE | PT_BINARY | PT_OBJECT | PT_SVREID);
    let count = if variable || kind & MULTI_VALUED != 0 { reader.u32()? } else { 1 };
    let mut first = None;
    for _ in 0..count {
        let value = if variable {
            let length = reader.u32()? as usize;
            reader.padded(length)?
        } else {
            let size = match base {
                0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B => 4,
                0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => 8,
                0x0048 => 16,
                _ => return None,
            };
            reader.take(size)?
        };
        first.get_or_insert(value);
    }
    let Some(value) = first else { return Some(None) };
    let value = match base {
        PT_STRING8 => Value::Text(ansi(value)),
        PT_UNICODE => Value::Text(utf16(value)),
        // An object's value starts with the interface id it is stored as.
        PT_OBJECT => Value::Bytes(value.get(16..).unwrap_or_default().to_vec()),
        PT_BINARY | PT_SVREID => Value::Bytes(value.to_vec()),
        PT_LONG => Value::Number(u32::from_le_bytes(value.try_into().ok()?)),
        _ => return Some(None),
    };
    Some(Some((id, value)))
}

/// An 8-bit string up to its NUL, in Windows-1252 (Outlook's ANSI code page in the West).
fn ansi(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    super::mime::windows_1252(&bytes[..end])
}

/// A UTF-16LE string up to its NUL.
fn utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> =
        bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|u| *u != 0).collect();
    String::from_utf16_lossy(&units)
}

/// Little-endian reading that says `None` past the end instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    /// `n` bytes, and the padding that rounds them to a multiple of 4.
    fn padded(&mut self, n: usize) -> Option<&'a [u8]> {
        let value = self.take(n)?;
        self.take((4 - n % 4) % 4)?;
        Some(value)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// One attribute: level, id and value (the checksum is read past: Outlook's are not always
    /// right, and a wrong one says nothing a length check does not).
    fn attribute(&mut self) -> Option<(u8, u32, &'a [u8])> {
        let level = self.u8()?;
        let id = self.u32()?;
        let length = self.u32()? as usize;
        let value = self.take(length)?;
        self.u16()?;
        Some((level, id, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TNEF stream written by hand: attributes as (level, id, value).
    fn stream(attributes: &[(u8, u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = SIGNATURE.to_le_bytes().to_vec();
        out.extend_from_slice(&0x0237u16.to_le_bytes());
        for (level, id, value) in attributes {
            out.push(*level);
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
            let checksum = value.iter().fold(0u16, |sum, b| sum.wrapping_add(u16::from(*b)));
            out.extend_from_slice(&checksum.to_le_bytes());
        }
        out
    }

    /// A MAPI property list with one PT_UNICODE long file name.
    fn long_filename(name: &str) -> Vec<u8> {
        let mut text: Vec<u8> = name.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect();
        let length = text.len() as u32;
        text.resize(text.len().div_ceil(4) * 4, 0);
        let mut out = 1u32.to_le_bytes().to_vec();
        out.extend_from_slice(&PT_UNICODE.to_le_bytes());
        out.extend_from_slice(&PR_ATTACH_LONG_FILENAME.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&text);
        out
    }

    /// A MAPI property list of single values: (type, id, value as written).
    fn property_list(properties: &[(u16, u16, Vec<u8>)]) -> Vec<u8> {
        let mut out = (properties.len() as u32).to_le_bytes().to_vec();
        for (kind, id, value) in properties {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
            if *kind == PT_LONG {
                out.extend_from_slice(value);
                continue;
            }
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
            out.resize(out.len().div_ceil(4) * 4, 0);
        }
        out
    }

    /// The message's body: HTML in the code page `PR_INTERNET_CPID` names, text from `attBody`.
    #[test]
    fn the_body_comes_out_in_its_code_page() {
        let html = b"<p>Dzi\xeakuj\xea za zam\xf3wienie</p>".to_vec();
        let tnef = stream(&[
            (1, ATT_BODY, b"Dziekuje\0".to_vec()),
            (
                1,
                ATT_MAPI_PROPS,
                property_list(&[
                    (PT_LONG, PR_INTERNET_CPID, 1250u32.to_le_bytes().to_vec()),
                    (PT_BINARY, PR_HTML, html),
                ]),
            ),
        ]);
        let got = read(&tnef).unwrap();
        assert_eq!(got.html.as_deref(), Some("<p>Dziękuję za zamówienie</p>"));
        assert_eq!(got.text.as_deref(), Some("Dziekuje"));
        assert!(got.files.is_empty());
        // Without a code page: UTF-8 when it is, else Windows-1252.
        let tnef = stream(&[(1, ATT_MAPI_PROPS, property_list(&[(PT_BINARY, PR_HTML, "<p>Grüße</p>".into())]))]);
        assert_eq!(read(&tnef).unwrap().html.as_deref(), Some("<p>Grüße</p>"));
    }

    #[test]
    fn files_come_out_with_their_long_names_and_damage_is_survived() {
        let tnef = stream(&[
            (1, 0x0001_8004, b"Rechnung\0".to_vec()),
            (2, ATT_ATTACH_REND_DATA, vec![0; 14]),
            (2, ATT_ATTACH_TITLE, b"RECHNU~1.PDF\0".to_vec()),
            (2, ATT_ATTACH_DATA, b"%PDF-1.4".to_vec()),
            (2, ATT_ATTACHMENT, long_filename("Rechnung März.pdf")),
            (2, ATT_ATTACH_REND_DATA, vec![0; 14]),
            (2, ATT_ATTACH_DATA, b"no name".to_vec()),
        ]);
        let got = read(&tnef).unwrap().files;
        let names: Vec<_> = got.iter().map(|f| f.filename.as_deref()).collect();
        assert_eq!(names, [Some("Rechnung März.pdf"), None]);
        assert_eq!(got[0].bytes, b"%PDF-1.4");
        // Cut anywhere, it never panics and keeps the whole attachments before the cut.
        for end in 0..tnef.len() {
            let _ = read(&tnef[..end]);
        }
        let cut = read(&tnef[..tnef.len() - 3]).unwrap().files;
        assert_eq!(cut.len(), 1);
        assert_eq!(read(b"not a tnef stream at all"), None);
    }
}
