//! Secrets in config: inline, read from a `*_file` (systemd credentials, mounted secrets), or
//! taken from the environment variable named by `*_env` (for `[[…]]` entries, which the
//! `SWITCHBOARD_*` overrides cannot address).
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

/// Where a secret may come from: `key`, `key_file` or `key_env`.
pub struct SecretSource<'a> {
    pub inline: &'a Option<Secret>,
    pub file: &'a Option<std::path::PathBuf>,
    pub env: &'a Option<String>,
}

/// Resolves a secret given at most one way. `key` is the inline key's path, used in problems.
/// Returns `Ok(None)` when none is set.
pub fn resolve(key: &str, source: SecretSource<'_>) -> Result<Option<Secret>, (String, String)> {
    let given = [source.inline.is_some(), source.file.is_some(), source.env.is_some()].iter().filter(|g| **g).count();
    if given > 1 {
        return Err((key.to_owned(), format!("set only one of `{key}`, `{key}_file`, `{key}_env`")));
    }
    if let Some(s) = source.inline {
        return Ok(Some(s.clone()));
    }
    if let Some(path) = source.file {
        return read_file(path).map(Some).map_err(|e| (format!("{key}_file"), e));
    }
    if let Some(var) = source.env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret(v))),
            _ => Err((format!("{key}_env"), format!("the environment variable {var} is not set"))),
        };
    }
    Ok(None)
}

/// A `*_file` path may start with `$CREDENTIALS_DIRECTORY/` (or `${CREDENTIALS_DIRECTORY}/`):
/// where systemd puts the unit's `LoadCredential=` secrets, so a config need not name the unit.
fn credential_path(path: &Path) -> Result<std::path::PathBuf, String> {
    let text = path.to_string_lossy();
    let rest = ["$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"].iter().find_map(|p| text.strip_prefix(p));
    let Some(rest) = rest else { return Ok(path.to_owned()) };
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => Ok(Path::new(&dir).join(rest)),
        // An administrator's `switchboard check` outside the unit lands here: say where the
        // secret is readable, and how to check the file with it.
        None => Err(format!(
            "{text}: CREDENTIALS_DIRECTORY is not set: a systemd credential (LoadCredential=) is \
             readable only inside the unit; `systemctl reload switchboard` checks the file with it"
        )),
    }
}

fn read_file(path: &Path) -> Result<Secret, String> {
    let path = &credential_path(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']).to_owned();
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret(value))
}
