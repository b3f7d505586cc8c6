//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`.
//!
//! Pure functions; used for consumer webhooks and for the api channel's outbound POSTs.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The decoded bytes of a `whsec_…` secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

impl SigningKey {
    /// `whsec_` + base64 of 24–64 bytes (the spec's range).
    pub fn parse(secret: &str) -> Option<SigningKey> {
        let bytes = B64.decode(secret.strip_prefix("whsec_")?).ok()?;
        (24..=64).contains(&bytes.len()).then_some(SigningKey(bytes))
    }

    /// One `v1,<base64>` signature.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

/// The three Standard Webhooks headers for one attempt. Several keys (rotation) give several
/// space-separated signatures; a verifier accepts the request if any one matches.
pub fn headers(keys: &[SigningKey], id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
    let signatures: Vec<String> = keys.iter().map(|k| k.sign(id, timestamp, body)).collect();
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signatures.join(" ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_test_vector() {
        let key = SigningKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            key.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn rotation_gives_one_signature_per_key() {
        let a = SigningKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let b = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let [_, _, (_, sig)] = headers(&[a.clone(), b.clone()], "evt_1", 10, b"{}");
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts, vec![a.sign("evt_1", 10, b"{}"), b.sign("evt_1", 10, b"{}")]);
    }

    #[test]
    fn rejects_malformed_secrets() {
        assert!(SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none());
        assert!(SigningKey::parse("whsec_short").is_none());
        assert!(SigningKey::parse("whsec_!!!notbase64!!!").is_none());
    }
}
