//! Why a configuration cannot be used.

use std::path::PathBuf;

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
