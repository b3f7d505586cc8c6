//! IMAP mailbox names on the wire: modified UTF-7 (RFC 3501 §5.1.3). Operators write folder
//! names as their mail client shows them ("Elementy wysłane", "Entwürfe"); the server knows
//! them as `Elementy wys&AUI-ane` and `Entw&APw-rfe`, and refuses the UTF-8 form.

use base64::alphabet::IMAP_MUTF7;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// Modified base64: `,` for `/`, no padding.
const MODIFIED_BASE64: GeneralPurpose =
    GeneralPurpose::new(&IMAP_MUTF7, GeneralPurposeConfig::new().with_encode_padding(false));

/// `name` as IMAP sends it: printable ASCII as itself (`&` as `&-`), every run of other
/// characters as `&` + modified base64 of its UTF-16BE + `-`.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u8> = Vec::new();
    let flush = |run: &mut Vec<u8>, out: &mut String| {
        if !run.is_empty() {
            out.push('&');
            out.push_str(&MODIFIED_BASE64.encode(&run));
            out.push('-');
            run.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            match c {
                '&' => out.push_str("&-"),
                c => out.push(c),
            }
        } else {
            let mut units = [0u16; 2];
            run.extend(c.encode_utf16(&mut units).iter().flat_map(|u| u.to_be_bytes()));
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn names_encode_as_rfc_3501_says() {
        // RFC 3501 §5.1.3's own example.
        assert_eq!(encode("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(encode("INBOX"), "INBOX");
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("Elementy wysłane"), "Elementy wys&AUI-ane");
        assert_eq!(encode("Éléments envoyés"), "&AMk-l&AOk-ments envoy&AOk-s");
        // Outside the BMP: a surrogate pair.
        assert_eq!(encode("📁"), "&2D3cwQ-");
    }
}
