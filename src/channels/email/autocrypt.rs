//! Autocrypt (Level 1): OpenPGP keys exchanged in the header of ordinary mail, as Delta Chat,
//! Thunderbird, K-9/FairEmail and other mail clients do it.
//!
//! Both ways:
//! - **Theirs, kept** (`remember`): a mail whose `Autocrypt:` header carries a key for its
//!   sender (`openpgp::autocrypt_keydata`) hands it to the channel, which keeps the newest one
//!   per address (by the mail's Date, Autocrypt's "effective date") in the channel's state.
//!   `openpgp_encrypt` then encrypts to it when `openpgp_keyring_file` has no key for the
//!   address. Without this a customer whose mail client encrypts to us got our answer, which
//!   quotes them, in clear unless an operator had put their key in the keyring by hand.
//!   Not kept: the key of a mail the receiving server found forged (`authentication`), of an
//!   automatic one, or of our own; a key that names no such address, cannot encrypt, or whose
//!   self-signatures fail (`openpgp::encryption_key`).
//! - **Ours, sent** (`header`): with `openpgp_secret_key` (and `openpgp_autocrypt`, on by
//!   default) each mail we send from the address the key names carries our public key, so that
//!   the customer's mail client can encrypt its next mail to us, which `openpgp_decrypt` reads.
//!   `prefer-encrypt=mutual` when the channel encrypts (`openpgp_encrypt`).
//!
//! An Autocrypt key is vouched for by nothing but the mail that carried it. Someone who forges
//! a customer's address with their own key makes our next answer unreadable to the customer,
//! not readable to the forger (it still goes to the customer's address). A keyring key is
//! always preferred.

use std::io::Cursor;

use lettre::message::header::{HeaderName, HeaderValue};
use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::ser::Serialize;
use pgp::types::KeyDetails;

use super::config::{EmailChannelConfig, EncryptWhen};
use super::openpgp;
use crate::pipeline::ChannelState;

/// The key kept for `address` (`remember`): None when there is none, or it no longer reads.
pub(super) async fn key(state: &ChannelState, address: &str) -> Option<SignedPublicKey> {
    let kept = match state.get(&state_key(address)).await {
        Ok(kept) => kept?,
        Err(e) => {
            tracing::warn!(channel = state.channel_id(), address, error = %e, "the kept Autocrypt key cannot be read");
            return None;
        }
    };
    let (_, keydata) = kept.split_once(' ')?;
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, keydata).ok()?;
    SignedPublicKey::from_bytes(Cursor::new(bytes)).ok()
}

/// Keeps `keydata`, the key a mail from `address` written at `written_ms` (its Date) carried
/// in its Autocrypt header, unless one from a mail written later is kept already (an old mail
/// imported late does not bring back an old key), it is the one kept, or it is no key to
/// encrypt mail to `address` with.
pub(super) async fn remember(state: &ChannelState, address: &str, keydata: &[u8], written_ms: Option<i64>) {
    let now = crate::model::time::now_ms();
    // Autocrypt's effective date: a Date in the future counts as now.
    let effective = written_ms.unwrap_or(now).min(now) / 1000;
    let Ok(key) = SignedPublicKey::from_bytes(Cursor::new(keydata)) else {
        tracing::debug!(channel = state.channel_id(), address, "an Autocrypt header's key does not read; not kept");
        return;
    };
    if openpgp::encryption_key(std::slice::from_ref(&key), address).is_none() {
        tracing::debug!(
            channel = state.channel_id(),
            address,
            "an Autocrypt header's key cannot encrypt mail to its address; not kept"
        );
        return;
    }
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, keydata);
    let kept = match state.get(&state_key(address)).await {
        Ok(kept) => kept,
        Err(e) => {
            tracing::warn!(channel = state.channel_id(), address, error = %e, "the kept Autocrypt key cannot be read");
            return;
        }
    };
    if let Some((date, keydata)) = kept.as_deref().and_then(|k| k.split_once(' ')) {
        if keydata == encoded || date.parse::<i64>().is_ok_and(|date| date > effective) {
            return;
        }
    }
    match state.set(&state_key(address), &format!("{effective} {encoded}")).await {
        Ok(()) => {
            tracing::info!(channel = state.channel_id(), address, fingerprint = %format!("{:X}", key.fingerprint()), "kept the OpenPGP key of a mail's Autocrypt header: mail to this address can be encrypted to it (openpgp_encrypt)")
        }
        Err(e) => {
            tracing::warn!(channel = state.channel_id(), address, error = %e, "the key of a mail's Autocrypt header could not be kept")
        }
    }
}

fn state_key(address: &str) -> String {
    format!("openpgp:autocrypt:{}", address.to_lowercase())
}

/// Our Autocrypt headers (`openpgp_autocrypt`), by the address of ours a mail is from: for
/// each of the channel's addresses that a user ID of our `openpgp_secret_key` names (a client
/// takes a key only for the address the mail comes from).
pub(super) fn ours(config: &EmailChannelConfig) -> Vec<(String, HeaderValue)> {
    let Some(secret) = config.openpgp_secret_keys.first().filter(|_| config.openpgp_autocrypt) else {
        return Vec::new();
    };
    let key = secret.to_public_key();
    let named = openpgp::user_addresses(&key);
    let mutual = config.openpgp_encrypt != EncryptWhen::Never;
    let mut headers = Vec::new();
    for address in config.our_addresses().filter(|a| named.iter().any(|n| n.eq_ignore_ascii_case(a))) {
        match header(address, &key, mutual) {
            Ok(header) => headers.push((address.to_owned(), header)),
            Err(e) => {
                tracing::warn!(channel = %config.id, address, error = %e, "no Autocrypt header on mail from this address")
            }
        }
    }
    if headers.is_empty() {
        tracing::warn!(channel = %config.id, "openpgp_secret_key names none of the channel's addresses in its user IDs: the mail we send carries no Autocrypt header, and mail clients will not encrypt to it");
    }
    headers
}

/// Our `Autocrypt:` header for mail from `address`, carrying `key` (our public key), folded
/// as mail headers must be (lines under 78 characters).
pub(super) fn header(address: &str, key: &SignedPublicKey, mutual: bool) -> Result<HeaderValue, String> {
    // Written as it is into the header: an address in plain ASCII only (an internationalised
    // one would need encoding the readers do not undo).
    if !address.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
        return Err(format!("{address} cannot be written into an Autocrypt header"));
    }
    let bytes = key.to_bytes().map_err(|e| format!("our OpenPGP public key cannot be written: {e}"))?;
    let keydata = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let prefer = if mutual { " prefer-encrypt=mutual;" } else { "" };
    let raw = format!("addr={address};{prefer} keydata={keydata}");
    // Folded by hand: lettre folds only at spaces, and key data has none. Spaces inside the
    // key data are ignored by its readers (Autocrypt Level 1 §2.1).
    let mut folded = format!("addr={address};{prefer}\r\n keydata=");
    let lines: Vec<&[u8]> = keydata.as_bytes().chunks(64).collect();
    for (n, line) in lines.iter().enumerate() {
        if n > 0 {
            folded.push_str("\r\n ");
        }
        folded.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
    }
    Ok(HeaderValue::dangerous_new_pre_encoded(HeaderName::new_from_ascii_str("Autocrypt"), raw, folded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/autocrypt/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn fingerprint(key: &SignedPublicKey) -> String {
        format!("{:X}", key.fingerprint())
    }

    /// Our header carries our public key, folded into lines a mail may have, and reads back as
    /// a mail client reads it (through the same reader our import uses); only for an address
    /// the key names, and `prefer-encrypt=mutual` only when the channel encrypts.
    #[test]
    fn our_header_carries_our_key_and_reads_back() {
        let mut config = super::super::tests::channel();
        config.aliases = vec!["sales@example.com".into()];
        config.openpgp_secret_keys = super::super::openpgp_decrypt::tests::keys();
        let formatted = |headers: Vec<(String, HeaderValue)>| {
            assert_eq!(headers.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["support@example.com"]);
            lettre::Message::builder()
                .from("support@example.com".parse().unwrap())
                .to("ann@example.org".parse().unwrap())
                .raw_header(headers[0].1.clone())
                .body(String::from("Hello\r\n"))
                .unwrap()
                .formatted()
        };
        let mail = formatted(ours(&config));
        let text = String::from_utf8(mail.clone()).unwrap();
        assert!(text.lines().all(|l| l.len() <= 78), "{text}");
        assert!(text.contains("Autocrypt: addr=support@example.com;\r\n keydata="), "{text}");
        let message = mail_parser::MessageParser::default().parse(&mail).unwrap();
        let keydata = super::super::openpgp::autocrypt_keydata(&message, "support@example.com").unwrap();
        let ours = config.openpgp_secret_keys.first().unwrap().to_public_key();
        assert_eq!(keydata, ours.to_bytes().unwrap());
        config.openpgp_encrypt = EncryptWhen::WhenPossible;
        let mutual = String::from_utf8(formatted(super::ours(&config))).unwrap();
        assert!(
            mutual.contains("Autocrypt: addr=support@example.com; prefer-encrypt=mutual;\r\n keydata="),
            "{mutual}"
        );
        config.openpgp_autocrypt = false;
        assert!(super::ours(&config).is_empty());
        assert!(header("ünïcode@example.com", &ours, true).is_err());
    }

    /// The key of the mail written last is kept, per address and channel, across a reopened
    /// store; a key that cannot encrypt to the address, or does not read, is not.
    #[tokio::test]
    async fn the_key_of_the_mail_written_last_is_kept() {
        let (first, second) = (fixture("ann-1.pgp"), fixture("ann-2.pgp"));
        let parse = |bytes: &[u8]| SignedPublicKey::from_bytes(Cursor::new(bytes.to_vec())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let state = ChannelState::new(store, "support");
        let kept = |state: &ChannelState| {
            let state = state.clone();
            async move { key(&state, "Ann@Example.org").await.map(|k| fingerprint(&k)) }
        };
        assert_eq!(kept(&state).await, None);
        remember(&state, "ann@example.org", &first, Some(1_000_000)).await;
        assert_eq!(kept(&state).await, Some(fingerprint(&parse(&first))));
        remember(&state, "ann@example.org", &second, Some(3_000_000)).await;
        assert_eq!(kept(&state).await, Some(fingerprint(&parse(&second))));
        // An older mail imported late does not bring the first key back.
        remember(&state, "ann@example.org", &first, Some(2_000_000)).await;
        assert_eq!(kept(&state).await, Some(fingerprint(&parse(&second))));
        // Nor does a key that cannot encrypt, one for someone else, or bytes that are no key.
        let future = Some(crate::model::time::now_ms());
        remember(&state, "ann@example.org", &fixture("ann-signing-only.pgp"), future).await;
        remember(&state, "ann@example.org", b"not a key", future).await;
        assert_eq!(kept(&state).await, Some(fingerprint(&parse(&second))));
        remember(&state, "bea@example.org", &first, future).await;
        assert!(key(&state, "bea@example.org").await.is_none());
        drop(state);
        let store = crate::store::Store::open(dir.path()).unwrap();
        assert_eq!(kept(&ChannelState::new(store.clone(), "support")).await, Some(fingerprint(&parse(&second))));
        assert_eq!(kept(&ChannelState::new(store, "sales")).await, None);
    }
}
