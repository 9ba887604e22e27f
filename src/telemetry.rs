//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (or `log.level`), as readable
//! lines or JSON.

use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::config::LogFormat;

/// The log file cannot be opened (the text names `log.file` and the path).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LogFileError(String);

/// Installs the global subscriber. `default_level` applies when `RUST_LOG` is unset;
/// with `file`, logs are appended there instead of going to stderr.
pub fn init(
    format: LogFormat,
    default_level: &str,
    file: Option<&Path>,
) -> Result<(), LogFileError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::try_new(default_level).unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let writer = match file {
        None => BoxMakeWriter::new(std::io::stderr),
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    LogFileError(format!("log.file: cannot open {}: {e}", path.display()))
                })?;
            BoxMakeWriter::new(std::sync::Mutex::new(file))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(file.is_none())
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    Ok(())
}
