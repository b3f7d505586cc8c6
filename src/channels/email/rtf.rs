//! Outlook's RTF message bodies, as `winmail.dat` (TNEF) carries them in `PR_RTF_COMPRESSED`:
//! decompressed (MS-OXRTFCP), then read back as what they were written as. Outlook wraps HTML
//! and plain text in RTF (`\fromhtml1`, `\fromtext`; MS-OXRTFEX): the HTML is in
//! `{\*\htmltag…}` groups and plain text, with the RTF that only renders it marked by
//! `\htmlrtf`. A body written as RTF (WordPad-style Outlook "Rich Text") becomes its text. A mail
//! whose only body is in `winmail.dat` otherwise reaches the helpdesk empty.
//!
//! 8-bit text is read in its font's character set (`\fcharset` in the font table: a Western
//! Outlook writes Polish in a `\fcharset238` font, Windows-1250, under `\ansicpg1252`), else in
//! the document's `\ansicpg`.
//!
//! Damaged input never panics: decompression stops where the data does, and reading RTF keeps
//! what it read.

use std::borrow::Cow;
use std::collections::HashMap;

use mail_parser::decoders::charsets::map::charset_decoder;

/// What an RTF body was written as.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    Html(String),
    Text(String),
}

/// MS-OXRTFCP 2.1.2.1: the dictionary's first bytes, which compressed data may refer to.
const PREBUFFER: &[u8] = b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx";
const COMPRESSED: u32 = 0x7546_5A4C; // "LZFu"
const UNCOMPRESSED: u32 = 0x414C_454D; // "MELA"
const DICTIONARY: usize = 4096;

/// The RTF in a `PR_RTF_COMPRESSED` value, or `None` when it is not one.
pub fn decompress(data: &[u8]) -> Option<Vec<u8>> {
    let field = |at: usize| Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?));
    let (compressed_size, raw_size, kind) = (field(0)? as usize, field(4)? as usize, field(8)?);
    // The compressed size counts from after its own field: the header's other 12 bytes, then data.
    let end = compressed_size.saturating_add(4).min(data.len());
    let input = data.get(16..end)?;
    let mut out = match kind {
        UNCOMPRESSED => input.to_vec(),
        COMPRESSED => lzfu(input, raw_size),
        _ => return None,
    };
    out.truncate(raw_size);
    Some(out)
}

/// MS-OXRTFCP 2.2.3: control bytes, each saying of the next eight items (low bit first)
/// whether it is a literal byte or a 16-bit reference (12-bit dictionary offset, 4-bit length
/// less 2) into a 4 KiB ring that everything written goes through. A reference to the write
/// position ends the data.
fn lzfu(input: &[u8], raw_size: usize) -> Vec<u8> {
    let mut dictionary = [0u8; DICTIONARY];
    dictionary[..PREBUFFER.len()].copy_from_slice(PREBUFFER);
    let mut write = PREBUFFER.len();
    // The declared size is the sender's word: memory follows the data actually there.
    let mut out = Vec::with_capacity(raw_size.min(input.len().saturating_mul(8)));
    let mut bytes = input.iter().copied();
    while let Some(control) = bytes.next() {
        for bit in 0..8 {
            if control & (1 << bit) == 0 {
                let Some(byte) = bytes.next() else { return out };
                out.push(byte);
                dictionary[write] = byte;
                write = (write + 1) % DICTIONARY;
                continue;
            }
            let (Some(high), Some(low)) = (bytes.next(), bytes.next()) else { return out };
            let reference = u16::from_be_bytes([high, low]);
            let offset = usize::from(reference >> 4);
            if offset == write {
                return out;
            }
            for k in 0..usize::from(reference & 0xF) + 2 {
                let byte = dictionary[(offset + k) % DICTIONARY];
                out.push(byte);
                dictionary[write] = byte;
                write = (write + 1) % DICTIONARY;
            }
        }
    }
    out
}

/// What `rtf` was written as: the HTML or text Outlook encapsulated in it, or the text of an
/// RTF document. `None` when it is not RTF or holds nothing.
pub fn body(rtf: &[u8]) -> Option<Body> {
    if !rtf.starts_with(b"{\\rtf") {
        return None;
    }
    let mode = encapsulation(rtf);
    let mut reader = Reader::new(mode);
    reader.read(rtf);
    let content = reader.finish();
    if content.trim().is_empty() {
        return None;
    }
    Some(match mode {
        Mode::Html => Body::Html(content),
        Mode::Text => Body::Text(content),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `\fromhtml1`: the HTML is what `\htmlrtf` does not hide, `\*\htmltag` groups included.
    Html,
    /// `\fromtext`, or an RTF document: the text.
    Text,
}

/// MS-OXRTFEX 2.1.3.1.1: `\fromhtml1` or `\fromtext` among the header's control words, before
/// any text or group but the font table.
fn encapsulation(rtf: &[u8]) -> Mode {
    let head = &rtf[..rtf.len().min(1024)];
    let head = head.windows(8).position(|w| w == b"\\fonttbl").map_or(head, |at| &head[..at]);
    let word = b"\\fromhtml1";
    let named =
        |(at, w): (usize, &[u8])| w == word && !head.get(at + word.len()).is_some_and(u8::is_ascii_alphanumeric);
    if head.windows(word.len()).enumerate().any(named) {
        Mode::Html
    } else {
        Mode::Text
    }
}

/// Groups whose content is never text: tables, metadata, pictures, field instructions.
const SKIPPED_DESTINATIONS: &[&[u8]] = &[
    b"fonttbl",
    b"colortbl",
    b"stylesheet",
    b"info",
    b"pict",
    b"object",
    b"header",
    b"headerl",
    b"headerr",
    b"headerf",
    b"footer",
    b"footerl",
    b"footerr",
    b"footerf",
    b"listtable",
    b"listoverridetable",
    b"rsidtbl",
    b"xmlnstbl",
    b"themedata",
    b"colorschememapping",
    b"datastore",
    b"latentstyles",
    b"generator",
    b"fldinst",
    b"filetbl",
    b"revtbl",
    b"pgdsctbl",
    b"author",
    b"operator",
    b"title",
    b"subject",
    b"keywords",
    b"comment",
    b"doccomm",
];

/// What a group sets, and its groups inherit.
#[derive(Clone, Copy)]
struct State {
    /// A destination whose content is not text.
    skip: bool,
    /// Inside `{\*\htmltag…}`: HTML, shown whatever `\htmlrtf` says.
    html_tag: bool,
    /// `\htmlrtf`: RTF that only renders the encapsulated content, not part of it.
    suppressed: bool,
    /// `\ucN`: characters after `\uN` that stand in for it in readers without Unicode.
    unicode_skip: usize,
    /// No control word read yet in this group (where a destination is named).
    fresh: bool,
    /// `\*` opened this group: an optional destination, skipped unless known.
    starred: bool,
    /// Inside `{\fonttbl…}`, where fonts are defined.
    font_table: bool,
    /// `\fN`: the font of the text; `None` until one is named (`\deffN` then).
    font: Option<i64>,
}

struct Reader {
    mode: Mode,
    stack: Vec<State>,
    state: State,
    out: String,
    /// 8-bit text not decoded yet (`\'hh` sequences of a multi-byte code page belong together).
    pending: Vec<u8>,
    /// The document's code page (`\ansicpg`), for text in a font without a character set.
    ansi: fn(&[u8]) -> String,
    /// The code page of each font the font table gives a character set (`\fcharset`, `\cpg`).
    font_code_pages: HashMap<i64, fn(&[u8]) -> String>,
    /// `\deffN`: the font of text before any `\fN`.
    default_font: Option<i64>,
    /// The font the font table is defining.
    defining: Option<i64>,
    /// Characters still to drop after a `\uN`.
    to_skip: usize,
}

impl Reader {
    fn new(mode: Mode) -> Reader {
        let state = State {
            skip: false,
            html_tag: false,
            suppressed: false,
            unicode_skip: 1,
            fresh: true,
            starred: false,
            font_table: false,
            font: None,
        };
        Reader {
            mode,
            stack: Vec::new(),
            state,
            out: String::new(),
            pending: Vec::new(),
            ansi: code_page(1252),
            font_code_pages: HashMap::new(),
            default_font: None,
            defining: None,
            to_skip: 0,
        }
    }

    /// The decoder of 8-bit text in the current font.
    fn decoder(&self) -> fn(&[u8]) -> String {
        let font = self.state.font.or(self.default_font);
        font.and_then(|f| self.font_code_pages.get(&f).copied()).unwrap_or(self.ansi)
    }

    fn emitting(&self) -> bool {
        let s = &self.state;
        !s.skip && (s.html_tag || !s.suppressed)
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let text = (self.decoder())(&self.pending);
            self.out.push_str(&text);
            self.pending.clear();
        }
    }

    fn push_str(&mut self, s: &str) {
        if self.emitting() {
            self.flush();
            self.out.push_str(s);
        }
    }

    /// One character of text (a byte of the document's code page).
    fn byte(&mut self, byte: u8) {
        if self.to_skip > 0 {
            self.to_skip -= 1;
        } else if self.emitting() {
            self.pending.push(byte);
        }
    }

    fn finish(mut self) -> String {
        self.flush();
        self.out
    }

    fn read(&mut self, rtf: &[u8]) {
        let mut at = 0;
        while at < rtf.len() {
            match rtf[at] {
                b'{' => {
                    self.stack.push(self.state);
                    self.state.fresh = true;
                    self.state.starred = false;
                    at += 1;
                }
                b'}' => {
                    self.flush(); // the group's text, in the group's font
                    match self.stack.pop() {
                        Some(outer) => self.state = outer,
                        None => return, // the document's last brace
                    }
                    at += 1;
                }
                b'\\' => at = self.control(rtf, at),
                // Line breaks are the source's, not the text's (`\par` is); other control
                // bytes are no text either (a NUL often ends Outlook's RTF).
                b'\r' | b'\n' => at += 1,
                byte if byte < 0x20 && byte != b'\t' => at += 1,
                byte => {
                    self.state.fresh = false;
                    self.byte(byte);
                    at += 1;
                }
            }
        }
    }

    /// The control word or symbol at `at` (a backslash); returns where the next token starts.
    fn control(&mut self, rtf: &[u8], at: usize) -> usize {
        let Some(&next) = rtf.get(at + 1) else { return rtf.len() };
        if !next.is_ascii_alphabetic() {
            return self.symbol(rtf, at + 1, next);
        }
        let name_end = (at + 1..rtf.len()).find(|i| !rtf[*i].is_ascii_alphabetic()).unwrap_or(rtf.len());
        let name = &rtf[at + 1..name_end];
        let mut end = name_end;
        if rtf.get(end) == Some(&b'-') && rtf.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        let digits_end = (end..rtf.len()).find(|i| !rtf[*i].is_ascii_digit()).unwrap_or(rtf.len());
        let parameter = std::str::from_utf8(&rtf[name_end..digits_end]).ok().and_then(|p| p.parse::<i64>().ok());
        end = digits_end;
        if rtf.get(end) == Some(&b' ') {
            end += 1; // the delimiter
        }
        if name == b"bin" {
            // Raw bytes follow, as many as the parameter says.
            let n = usize::try_from(parameter.unwrap_or(0)).unwrap_or(0);
            return end.saturating_add(n).min(rtf.len());
        }
        self.word(name, parameter);
        end
    }

    fn symbol(&mut self, rtf: &[u8], at: usize, symbol: u8) -> usize {
        match symbol {
            b'\'' => {
                let hex = rtf.get(at + 1..at + 3).and_then(|h| std::str::from_utf8(h).ok());
                if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    self.state.fresh = false;
                    self.byte(byte);
                }
                return (at + 3).min(rtf.len());
            }
            b'*' => self.state.starred = true,
            b'\\' | b'{' | b'}' => {
                self.state.fresh = false;
                self.byte(symbol);
            }
            b'~' => self.push_str("\u{A0}"),
            b'_' => self.push_str("-"),
            b'\r' | b'\n' => self.push_str("\n"), // a backslash before a line break is \par
            _ => {}                               // `\-` (optional hyphen), `\|`, `\:` and the like
        }
        at + 1
    }

    fn word(&mut self, name: &[u8], parameter: Option<i64>) {
        if std::mem::replace(&mut self.state.fresh, false) {
            let html_tag = self.mode == Mode::Html && name == b"htmltag" && self.state.starred;
            if html_tag {
                self.state.html_tag = true;
                return;
            }
            if self.state.starred || SKIPPED_DESTINATIONS.contains(&name) {
                self.state.skip = true;
                self.state.font_table = name == b"fonttbl";
                return;
            }
        }
        if self.state.font_table {
            self.define_font(name, parameter);
            return;
        }
        if self.state.skip {
            return;
        }
        match name {
            b"ansicpg" => {
                self.flush();
                self.ansi = code_page(parameter.unwrap_or(1252));
            }
            b"deff" => self.default_font = parameter,
            b"f" => {
                self.flush();
                self.state.font = parameter;
            }
            b"plain" => {
                self.flush();
                self.state.font = None;
            }
            b"htmlrtf" => self.state.suppressed = parameter != Some(0),
            b"uc" => self.state.unicode_skip = usize::try_from(parameter.unwrap_or(1)).unwrap_or(1),
            b"u" => {
                // A signed 16-bit value: negative for code points above 32767.
                let code = parameter.unwrap_or(0).rem_euclid(65536) as u32;
                if self.emitting() {
                    self.flush();
                    self.out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                }
                self.to_skip = self.state.unicode_skip;
            }
            b"par" | b"line" | b"row" | b"sect" | b"page" => self.push_str("\n"),
            b"tab" | b"cell" => self.push_str("\t"),
            b"lquote" => self.push_str("\u{2018}"),
            b"rquote" => self.push_str("\u{2019}"),
            b"ldblquote" => self.push_str("\u{201C}"),
            b"rdblquote" => self.push_str("\u{201D}"),
            b"bullet" => self.push_str("\u{2022}"),
            b"endash" => self.push_str("\u{2013}"),
            b"emdash" => self.push_str("\u{2014}"),
            b"enspace" | b"emspace" | b"qmspace" => self.push_str(" "),
            _ => {}
        }
    }
}

impl Reader {
    /// A control word of the font table: `\fN` starts a font's definition, `\fcharsetN` and
    /// `\cpgN` give its code page.
    fn define_font(&mut self, name: &[u8], parameter: Option<i64>) {
        let code_page = match (name, parameter) {
            (b"f", font) => {
                self.defining = font;
                return;
            }
            (b"fcharset", Some(charset)) => charset_code_page(charset),
            (b"cpg", Some(number)) => Some(number),
            _ => None,
        };
        let decoder = code_page.and_then(known_code_page);
        if let (Some(font), Some(decoder)) = (self.defining, decoder) {
            self.font_code_pages.insert(font, decoder);
        }
    }
}

/// The Windows code page of an RTF `\fcharsetN` (the RTF 1.9.1 specification's table); `None`
/// for ANSI and default (the document's `\ansicpg`) and for symbol fonts.
fn charset_code_page(charset: i64) -> Option<i64> {
    Some(match charset {
        77 => 10000,
        128 => 932,
        129 => 949,
        130 => 1361,
        134 => 936,
        136 => 950,
        161 => 1253,
        162 => 1254,
        163 => 1258,
        177 => 1255,
        178 => 1256,
        186 => 1257,
        204 => 1251,
        222 => 874,
        238 => 1250,
        254 => 437,
        255 => 850,
        _ => return None,
    })
}

/// The decoder of a Windows code page number (`\ansicpg`, `PR_INTERNET_CPID`), Windows-1252 for
/// one mail-parser does not know.
pub(super) fn code_page(number: i64) -> fn(&[u8]) -> String {
    known_code_page(number).unwrap_or(super::mime::windows_1252)
}

/// The decoder of a Windows code page number, if mail-parser knows it.
fn known_code_page(number: i64) -> Option<fn(&[u8]) -> String> {
    let name: Cow<'static, str> = match number {
        65001 => "utf-8".into(),
        932 => "shift_jis".into(),
        936 => "gbk".into(),
        949 => "euc-kr".into(),
        950 => "big5".into(),
        20866 => "koi8-r".into(),
        21866 => "koi8-u".into(),
        28591..=28606 => format!("iso-8859-{}", number - 28590).into(),
        50220..=50222 => "iso-2022-jp".into(),
        51932 => "euc-jp".into(),
        54936 => "gb18030".into(),
        n => format!("cp{n}").into(),
    };
    charset_decoder(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prebuffer_is_the_specified_207_bytes() {
        assert_eq!(PREBUFFER.len(), 207);
    }

    /// MS-OXRTFCP 3.1.1 and 3.1.2: the specification's two examples, byte for byte.
    #[test]
    fn the_specification_examples_decompress() {
        let simple = [
            0x2d, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xf1, 0xc5, 0xc7, 0xa7, 0x03, 0x00,
            0x0a, 0x00, 0x72, 0x63, 0x70, 0x67, 0x31, 0x32, 0x35, 0x42, 0x32, 0x0a, 0xf3, 0x20, 0x68, 0x65, 0x6c, 0x09,
            0x00, 0x20, 0x62, 0x77, 0x05, 0xb0, 0x6c, 0x64, 0x7d, 0x0a, 0x80, 0x0f, 0xa0,
        ];
        assert_eq!(decompress(&simple).unwrap(), b"{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n");
        let crossing = [
            0x1a, 0x00, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xe2, 0xd4, 0x4b, 0x51, 0x41, 0x00,
            0x04, 0x20, 0x57, 0x58, 0x59, 0x5a, 0x0d, 0x6e, 0x7d, 0x01, 0x0e, 0xb0,
        ];
        assert_eq!(decompress(&crossing).unwrap(), b"{\\rtf1 WXYZWXYZWXYZWXYZWXYZ}");
    }

    #[test]
    fn uncompressed_and_damaged_data() {
        let mut mela = vec![0u8; 16];
        mela[0..4].copy_from_slice(&(12u32 + 5).to_le_bytes());
        mela[4..8].copy_from_slice(&5u32.to_le_bytes());
        mela[8..12].copy_from_slice(&UNCOMPRESSED.to_le_bytes());
        mela.extend_from_slice(b"{\\rtf}");
        assert_eq!(decompress(&mela).unwrap(), b"{\\rtf");
        assert_eq!(decompress(b"short"), None);
        // Cut anywhere, decompression ends without panicking.
        let data =
            [0x2d, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x7f, 0x4c, 0x5a, 0x46, 0x75, 0, 0, 0, 0, 0xff, 0xff, 0xff];
        for cut in 0..data.len() {
            let _ = decompress(&data[..cut]);
        }
    }

    #[test]
    fn encapsulated_html_is_what_htmlrtf_does_not_hide() {
        let rtf = br#"{\rtf1\ansi\ansicpg1250\fromhtml1 \deff0{\fonttbl{\f0\fswiss Arial;}}
{\*\htmltag19 <html>}{\*\htmltag34 <head>}{\*\htmltag41 </head>}
{\*\htmltag50 <body>}\htmlrtf {\b\htmlrtf0 {\*\htmltag84 <b>}Zam\'f3wienie\htmlrtf }\htmlrtf0 {\*\htmltag92 </b>}\htmlrtf \par
\htmlrtf0 {\*\htmltag64 <p>}Dzi\'eakuj\'ea \u8364\'80 5{\*\htmltag72 </p>}{\*\htmltag58 </body>}{\*\htmltag27 </html>}}"#;
        let Some(Body::Html(html)) = body(rtf) else { panic!("HTML expected") };
        assert_eq!(html, "<html><head></head><body><b>Zamówienie</b><p>Dziękuję € 5</p></body></html>");
        // Cut anywhere (a damaged stream), reading keeps what it read and never panics.
        for end in 0..rtf.len() {
            let _ = body(&rtf[..end]);
        }
    }

    #[test]
    fn rtf_documents_and_encapsulated_text_become_text() {
        let rtf = br#"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Arial;}}{\colortbl ;\red0\green0\blue255;}
{\*\generator Riched20;}\pard\f0 Caf\'e9 \{ok\}\par
{\field{\*\fldinst HYPERLINK "x"}{\fldrslt link}}\tab end\line\u-3937?\par}"#;
        assert_eq!(body(rtf), Some(Body::Text("Café {ok}\nlink\tend\n\u{F09F}\n".into())));
        let text = br"{\rtf1\ansi\fromtext \deff0{\fonttbl{\f0 Arial;}}\pard Hello\par -- \par Ann\par}";
        assert_eq!(body(text), Some(Body::Text("Hello\n-- \nAnn\n".into())));
        assert_eq!(body(b"not rtf"), None);
        assert_eq!(body(br"{\rtf1{\fonttbl{\f0 Arial;}}}"), None);
    }

    #[test]
    fn eight_bit_text_is_read_in_its_fonts_character_set() {
        // A Western Outlook (ANSI code page 1252) writing Polish in a Central European font, and
        // Russian in the default font (`\deff1`), which the font table makes Cyrillic.
        let rtf = br"{\rtf1\ansi\ansicpg1252\deff1{\fonttbl{\f0\fswiss\fcharset0 Arial;}{\f1\fnil\fcharset204{\*\panose 020b0604020202020204}Arial Cyr;}
{\f2\fswiss\fcharset238 Arial CE;}}\pard \'cf\'f0\'e8\'e2\'e5\'f2\par
\f0 Caf\'e9 {\f2 Za\'bf\'f3\'b3\'e6 g\'ea\'9cl\'b9 ja\'9f\'f1}, caf\'e9\par
\plain \'e4\'e0\par}";
        assert_eq!(body(rtf), Some(Body::Text("Привет\nCafé Zażółć gęślą jaźń, café\nда\n".into())));
        // A font's `\cpg` names its code page; a font without either is read in `\ansicpg`.
        let rtf = br"{\rtf1\ansi\ansicpg1250{\fonttbl{\f0 Arial;}{\f1\cpg1253 Arial Greek;}}\f1 \'e1\'e2\f0 \'b9}";
        assert_eq!(body(rtf), Some(Body::Text("αβą".into())));
    }
}
