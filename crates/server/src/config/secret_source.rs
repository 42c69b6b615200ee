//! Where a secret comes from: an environment variable or a file, so examples
//! and ConfigMaps never carry one inline.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

/// `{ env = "NAME" }` or `{ file = "/run/secrets/name" }`; `{ value = "…" }`
/// exists for tests and local experiments only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretSource {
    /// Read from this environment variable.
    Env(String),
    /// Read from this file (trailing newline trimmed), e.g. a mounted Kubernetes Secret.
    File(PathBuf),
    /// Inline. Never in a committed file.
    Value(SecretString),
}

/// Written out (a config built in code and handed to a process as a file),
/// a source keeps its place: `{ env = … }` or `{ file = … }`. An inline value
/// is never written: serialising one is an error, so no secret reaches a file
/// or a log line through a serialised config.
impl serde::Serialize for SecretSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap as _};
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            SecretSource::Env(name) => map.serialize_entry("env", name)?,
            SecretSource::File(path) => map.serialize_entry("file", path)?,
            SecretSource::Value(_) => {
                return Err(S::Error::custom(
                    "an inline secret is never written out: use { env = … } or { file = … }",
                ));
            }
        }
        map.end()
    }
}

impl SecretSource {
    /// Reads the secret, looking variables up in `env`.
    ///
    /// # Errors
    /// A message saying which variable is unset or which file is unreadable;
    /// never the secret itself.
    pub fn resolve(&self, env: &[(String, String)]) -> Result<SecretString, String> {
        let value = match self {
            SecretSource::Env(name) => env
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .ok_or_else(|| format!("environment variable {name} is not set"))?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            SecretSource::Value(secret) => return non_empty(secret.clone()),
        };
        non_empty(SecretString::from(value))
    }
}

fn non_empty(secret: SecretString) -> Result<SecretString, String> {
    use secrecy::ExposeSecret;
    if secret.expose_secret().is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(secret)
}
