//! Logging of every node binary: `tracing` events as human-readable lines or one JSON
//! object per line, filtered by `RUST_LOG` when it is set and by the binary's own level
//! otherwise, in colour only on a terminal without `NO_COLOR`.

use std::io::IsTerminal;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    Stderr,
    Stdout,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{source_name} {value:?} is not a valid log filter: {message}")]
    Filter {
        source_name: String,
        value: String,
        message: String,
    },
    #[error("a logger is already installed")]
    AlreadyInstalled,
}

/// What [`init`] sets up.
#[derive(Debug, Clone, Copy)]
pub struct Logging<'a> {
    pub format: LogFormat,
    /// The filter when `RUST_LOG` is unset or empty: a level or tracing directives.
    pub filter: &'a str,
    /// Where `filter` came from, for errors (e.g. `--log-level`).
    pub filter_source: &'a str,
    pub output: LogOutput,
}

/// The filter in effect: `RUST_LOG` when set and not empty, else `filter`.
fn env_filter(logging: &Logging<'_>) -> Result<EnvFilter, LogError> {
    let (source_name, value) = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => ("RUST_LOG".to_string(), value),
        _ => (
            logging.filter_source.to_string(),
            logging.filter.to_string(),
        ),
    };
    EnvFilter::try_new(&value).map_err(|e| LogError::Filter {
        source_name,
        value,
        message: e.to_string(),
    })
}

/// Installs the global subscriber.
pub fn init(logging: Logging<'_>) -> Result<(), LogError> {
    let filter = env_filter(&logging)?;
    let terminal = match logging.output {
        LogOutput::Stderr => std::io::stderr().is_terminal(),
        LogOutput::Stdout => std::io::stdout().is_terminal(),
    };
    let ansi = terminal && std::env::var_os("NO_COLOR").is_none();
    let writer = match logging.output {
        LogOutput::Stderr => BoxMakeWriter::new(std::io::stderr),
        LogOutput::Stdout => BoxMakeWriter::new(std::io::stdout),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match logging.format {
        LogFormat::Human => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    installed.map_err(|_| LogError::AlreadyInstalled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_is_named_with_its_source() {
        if std::env::var_os("RUST_LOG").is_some() {
            return;
        }
        let logging = Logging {
            format: LogFormat::Human,
            filter: "lma=[",
            filter_source: "--log-level",
            output: LogOutput::Stderr,
        };
        let err = env_filter(&logging).unwrap_err().to_string();
        assert!(err.starts_with("--log-level \"lma=[\""), "{err}");
        let good = Logging {
            filter: "lma=debug,info",
            ..logging
        };
        assert!(env_filter(&good).is_ok());
    }
}
