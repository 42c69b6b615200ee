//! The service's configuration: a TOML file plus `WECHAT_IDENTITY__…` env
//! overrides, validated at start with messages that say what to fix.
//!
//! Env names: the path of a field in upper case, sections joined by `__`, list
//! items by their index: `WECHAT_IDENTITY__SERVER__GRPC_LISTEN`,
//! `WECHAT_IDENTITY__DATABASE__URL`, `WECHAT_IDENTITY__APPS__0__SECRET__ENV`.
//! `WECHAT_IDENTITY_CONFIG` names the file. The environment is passed in as a
//! list, read once in `main`, so nothing else reads it and tests need no `set_var`.

mod overlay;
mod schema;
mod secret_source;
mod validate;

use std::path::{Path, PathBuf};

pub use overlay::ENV_PREFIX;
pub use schema::*;
pub use secret_source::SecretSource;
pub use validate::{GrpcTls, ResolvedApp, ResolvedCaller, ResolvedConfig, plaintext_problem};

/// The variable that names the config file.
pub const CONFIG_FILE_ENV: &str = "WECHAT_IDENTITY_CONFIG";

/// Why the configuration cannot be used; every problem found, each with its place.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML or an override does not fit the schema.
    #[error("config does not fit the schema: {0}")]
    Parse(String),
    /// Values that parse but cannot work together.
    #[error("config is invalid:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
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
