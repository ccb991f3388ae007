//! Errors of the HTTP layer, each mapped to the status a client is answered with.

use thiserror::Error;

/// Why a request (head or body) was refused. Each maps to one HTTP status.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HttpError {
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    #[error("request head larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("more than {limit} header fields")]
    TooManyHeaders { limit: usize },
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    #[error("unsupported Expect value")]
    UnsupportedExpectation,
    #[error("bad chunked body: {0}")]
    BadChunk(&'static str),
    #[error("HTTP version not supported")]
    VersionNotSupported,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) | HttpError::BadChunk(_) => 400,
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::UnsupportedTransferCoding => 501,
            HttpError::UnsupportedExpectation => 417,
            HttpError::VersionNotSupported => 505,
        }
    }
}
