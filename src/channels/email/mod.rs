//! The `email` channel: IMAP IDLE in, SMTP out, RFC 5322 threading.
//!
//! `inbound.rs` keeps one IMAP session per folder (`imap.rs` connects and logs in) and hands
//! each new mail, translated by
//! `mime.rs` (with `reply.rs` for the new part of a reply, `report.rs` for auto-replies and
//! bounces — `plain_bounce.rs` for those without a standard report —, `forward.rs` for a
//! colleague's forward, `dedup.rs` for what makes two fetched mails
//! one, and `tnef.rs` and `rtf.rs` for Outlook's `winmail.dat`), to the pipeline; `outbound.rs`
//! sends through SMTP with Message-IDs that encode the conversation (`smime_sign.rs` signs it
//! when the channel has a certificate; `smime.rs` checks a received mail's S/MIME signature, `openpgp.rs` its OpenPGP one); `authorise.rs` is
//! `switchboard oauth2`, which obtains an OAuth2 grant's refresh token. Threading decisions are in
//! `stitch::email`.

pub mod authentication;
pub mod authorise;
mod autocrypt;
mod ber;
mod calendar;
pub mod config;
pub mod dedup;
mod forward;
mod html_text;
mod imap;
pub mod inbound;
pub mod mime;
mod mutf7;
pub mod oauth2;
pub mod openpgp;
pub mod openpgp_decrypt;
mod openpgp_encrypt;
pub mod outbound;
mod phrases;
mod plain_bounce;
pub mod probe;
pub mod reply;
pub mod report;
pub mod rtf;
mod signature;
mod smime;
mod smime_decrypt;
mod smime_encrypt;
mod smime_sign;
mod smtp;
#[cfg(test)]
mod tests;
mod tls;
pub mod tnef;
mod tzif;
mod windows_zones;
mod written_date;

use std::borrow::Cow;

/// `address` with its domain in IDNA A-labels (`ann@Bücher.example` → `ann@xn--bcher-kva.example`):
/// the form every mail server takes without SMTPUTF8, and the one a mail from that domain names
/// its sender by. Unchanged when the domain is ASCII already or no valid IDN.
pub fn ascii_domain(address: &str) -> Cow<'_, str> {
    match address.rsplit_once('@') {
        Some((local, domain)) if !domain.is_ascii() => match idna::domain_to_ascii(domain) {
            Ok(domain) => Cow::Owned(format!("{local}@{domain}")),
            Err(_) => Cow::Borrowed(address),
        },
        _ => Cow::Borrowed(address),
    }
}
