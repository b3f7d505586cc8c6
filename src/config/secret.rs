//! Secrets in config: inline, or read from a `*_file` (systemd credentials, mounted secrets).
//!
//! A `Secret` never prints its value, so a config dumped into a log leaks nothing.

use std::fmt;
use std::path::Path;

#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Resolves an inline value or `*_file` pair. `key` is the inline key's path, used in problems.
/// Returns `Ok(None)` when neither is set.
pub fn resolve(
    key: &str,
    inline: &Option<Secret>,
    file: &Option<std::path::PathBuf>,
) -> Result<Option<Secret>, (String, String)> {
    match (inline, file) {
        (Some(_), Some(_)) => Err((key.to_owned(), format!("set either `{key}` or `{key}_file`, not both"))),
        (Some(s), None) => Ok(Some(s.clone())),
        (None, Some(path)) => read_file(path).map(Some).map_err(|e| (format!("{key}_file"), e)),
        (None, None) => Ok(None),
    }
}

fn read_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']).to_owned();
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret(value))
}
