//! Any bytes as a fetched mail, through everything the email channel does to a mail before the
//! store sees it: MIME parsing, the new part of a reply, bounce and auto-reply reading (standard
//! reports, refusal notices, plain-text bounces), forwards, TNEF and RTF bodies, S/MIME
//! opaque-signed mail, signatures and decryption, OpenPGP signatures and decryption, Authentication-Results headers, the keys that
//! make two fetches one mail. In the gateway a panic there makes the mail a stored, unparsed
//! message (`mime::guarded`); here libFuzzer's panic hook stops at it, and a slow input (a
//! quadratic loop: a folder stuck on one mail) is reported by `-timeout`.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use switchboard::channels::email::config::EmailChannelConfig;
use switchboard::channels::email::openpgp_decrypt::SecretKeys;
use switchboard::config::Secret;
use switchboard::channels::email::{mime, openpgp, reply};

static CHANNEL: LazyLock<EmailChannelConfig> = LazyLock::new(|| {
    let mut channel: EmailChannelConfig = toml::from_str(
        r#"
id = "support"
address = "support@example.com"
aliases = ["help@example.com"]
reply_token = true
# Colleagues at the fixtures' domains: their forwards are read for the original's sender and
# date (forward.rs, written_date.rs).
forwarders = ["example.org", "example.de", "example.pl", "example.fr", "example.cz", "example.net"]
# Every mail's topmost Authentication-Results header is read (authentication.rs).
authserv_id = "*"
[smtp]
host = "127.0.0.1"
tls = "none"
"#,
    )
    .expect("the fuzz channel's config");
    // Ann's key, so that OpenPGP signatures naming it (fuzz/seeds/openpgp-inline-ann.eml) are
    // verified, not only read.
    channel.openpgp_keys = openpgp::keyring(include_bytes!("../keyring.asc")).expect("the fuzz keyring");
    // Our key, so that mail encrypted to it (fuzz/seeds/openpgp-*-encrypted-support.eml) is
    // decrypted and read, not only flagged.
    channel.openpgp_secret_keys =
        SecretKeys::load(include_str!("../secret-key.asc"), Some("correct horse")).expect("the fuzz secret key");
    // And our S/MIME certificate and key, so that mail encrypted to it
    // (fuzz/seeds/smime-encrypted-support-*.eml) is decrypted too.
    channel.smime_certificate_pem = Some(include_bytes!("../../tests/fixtures/smime-decrypt/support.pem").to_vec());
    channel.smime_key = Some(Secret::new(include_str!("../../tests/fixtures/smime-decrypt/support.key")));
    channel
});

fuzz_target!(|data: &[u8]| {
    let raw = mime::to_raw_inbound(&CHANNEL, data.to_vec());
    std::hint::black_box(raw);
    if let Ok(text) = std::str::from_utf8(data) {
        std::hint::black_box(reply::reply_text(text, None));
    }
});
