//! The service's configuration: a TOML file plus `WECHAT_IDENTITY__…` env
//! overrides, validated at start with messages that say what to fix.
//!
//! Env names: the path of a field in upper case, sections joined by `__`, list
//! items by their index: `WECHAT_IDENTITY__SERVER__GRPC_LISTEN`,
//! `WECHAT_IDENTITY__DATABASE__URL`, `WECHAT_IDENTITY__APPS__0__SECRET__ENV`.
//! `WECHAT_IDENTITY_CONFIG` names the file. The environment is passed in as a
//! list, read once in `main`, so nothing else reads it and tests need no `set_var`.

mod error;
mod overlay;
mod schema;
mod secret_source;
mod validate;

use std::path::Path;

pub use error::ConfigError;
pub use overlay::ENV_PREFIX;
pub use schema::*;
pub use secret_source::SecretSource;
pub use validate::{GrpcTls, ResolvedApp, ResolvedCaller, ResolvedConfig, plaintext_problem};
/// The kind of a configured app (`kind = "mini_program"` and so on).
pub use wechat_types::AppKind;

/// The variable that names the config file.
pub const CONFIG_FILE_ENV: &str = "WECHAT_IDENTITY_CONFIG";

/// The process's environment, read once, by `main`: everything else gets
/// this list (or a test's own), so configuration stays injectable. The one
/// place the environment is read (`clippy.toml` forbids it elsewhere).
#[allow(clippy::disallowed_methods)]
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars().collect()
}

impl Config {
    /// Reads `file` (none: an empty document), applies the `WECHAT_IDENTITY__`
    /// overrides found in `env`, and parses the result.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`], naming the place.
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        Self::parse(&text, env)
    }

    /// As [`Self::load`], from TOML text.
    ///
    /// # Errors
    /// [`ConfigError::Parse`].
    pub fn parse(toml_text: &str, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut document: toml::Value =
            toml::from_str(toml_text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        overlay::apply_env_overrides(&mut document, env).map_err(ConfigError::Parse)?;
        let text = toml::to_string(&document).map_err(|e| ConfigError::Parse(e.to_string()))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))
    }
}
#[cfg(test)]
mod tests;
