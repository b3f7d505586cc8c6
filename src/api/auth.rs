//! Bearer tokens with scopes. Tokens are kept only as SHA-256 digests and compared in constant
//! time, so neither the config in memory nor the timing of a refusal reveals a token.

use axum::http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{Scope, TokenConfig};

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: String,
}

pub fn authorize(tokens: &[TokenConfig], headers: &HeaderMap, scope: Scope) -> Result<Caller, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value =
        headers.get(header::AUTHORIZATION).ok_or_else(|| unauthorized("missing Authorization: Bearer <token>"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    // Compare against every token, without stopping early.
    let mut found: Option<&TokenConfig> = None;
    for candidate in tokens {
        if bool::from(candidate.digest.ct_eq(&digest)) {
            found = Some(candidate);
        }
    }
    let token = found.ok_or_else(|| unauthorized("unknown token"))?;
    if !token.scopes.contains(&scope) {
        let scope = format!("{scope:?}").to_lowercase();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token `{}` lacks the `{scope}` scope", token.name),
        ));
    }
    Ok(Caller { name: token.name.clone() })
}
