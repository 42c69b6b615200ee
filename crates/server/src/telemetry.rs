//! Logging: JSON lines in production, human-readable lines in the demo, the
//! level from `RUST_LOG` (passed in, not read here). Log lines carry ids, never
//! secrets: every secret type in the workspace redacts itself in `Debug`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Coloured, readable lines, for a terminal.
    Pretty,
}

/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn,h2=warn,tower=warn";

/// A logging setup could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` does not parse.
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(String),
    /// A global subscriber was installed already.
    #[error("logging is already initialised")]
    AlreadyInitialised,
}

/// Installs the global subscriber: `filter` is `RUST_LOG`'s value, if set.
///
/// # Errors
/// A filter that does not parse, or a second initialisation.
pub fn init_logging(format: LogFormat, filter: Option<&str>) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(filter.unwrap_or(DEFAULT_FILTER))
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .try_init(),
    };
    installed.map_err(|_| TelemetryError::AlreadyInitialised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_that_does_not_parse_is_refused_before_anything_is_installed() {
        let error = init_logging(LogFormat::Json, Some("info,[unclosed")).expect_err("bad filter");
        assert!(matches!(error, TelemetryError::Filter(_)));
        assert!(EnvFilter::try_new(DEFAULT_FILTER).is_ok());
    }
}
