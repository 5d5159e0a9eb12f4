//! The one error type of configuration loading: every section reports through it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// `field` is the dotted path (`daemon.tick`, `classify.rules[1].match`) or `line N`.
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}
