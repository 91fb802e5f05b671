//! What can go wrong talking to the service: the modeled errors (and the
//! authentication ones) as a typed enum, and the transport around them.

use std::fmt;

use ses_export_model::{AuthErrorCode, ErrorCode};

/// An error the service answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceError {
    /// The error shape, from `x-amzn-ErrorType`.
    pub kind: ErrorKind,
    /// The service's `message`.
    pub message: String,
    /// The HTTP status.
    pub status: u16,
    /// `x-amzn-RequestId`, to find the server's log lines.
    pub request_id: Option<String>,
}

/// The kinds of service error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// One of the model's error shapes.
    Modeled(ErrorCode),
    /// One of the authentication errors (always 403).
    Auth(AuthErrorCode),
    /// Anything else, by name.
    Other(String),
}

impl ErrorKind {
    /// The kind an `x-amzn-ErrorType` value names.
    pub fn from_name(name: &str) -> ErrorKind {
        // `x-amzn-ErrorType` may carry a `:` suffix or a namespace prefix.
        let name = name.split(':').next().unwrap_or(name);
        let name = name.rsplit('#').next().unwrap_or(name);
        if let Some(code) = AuthErrorCode::from_name(name) {
            return ErrorKind::Auth(code);
        }
        ErrorCode::from_name(name).map_or_else(|| ErrorKind::Other(name.to_owned()), ErrorKind::Modeled)
    }

    /// The shape's name.
    pub fn name(&self) -> &str {
        match self {
            ErrorKind::Modeled(code) => code.name(),
            ErrorKind::Auth(code) => code.name(),
            ErrorKind::Other(name) => name,
        }
    }
}

/// Anything a call can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The service said no.
    Service(ServiceError),
    /// The service could not be reached, or the connection failed.
    Transport {
        /// What was called.
        endpoint: String,
        /// What failed; its `source()` chain says more.
        source: TransportError,
    },
    /// No credentials, or a bad endpoint: nothing was sent.
    Config(String),
    /// The answer was not what the model says.
    Decode(String),
    /// A local file could not be read or written.
    Io(std::io::Error),
    /// S3 refused a request (a backfill's listing or object).
    S3 {
        /// The HTTP status.
        status: u16,
        /// S3's error code (`NoSuchBucket`, `AccessDenied`, ...).
        code: String,
        /// S3's message.
        message: String,
    },
}

/// A failure below HTTP: no connection, a timeout, a TLS handshake
/// refused, a stream cut off. Opaque, so the HTTP library beneath stays
/// out of this crate's surface; `source()` leads to the causes.
#[derive(Debug)]
pub struct TransportError(reqwest::Error);

impl TransportError {
    pub(crate) fn new(error: reqwest::Error) -> Self {
        TransportError(error)
    }

    /// Whether the connection could not be made (nothing listening, a
    /// name that does not resolve, a refused handshake).
    pub fn is_connect(&self) -> bool {
        self.0.is_connect()
    }

    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        self.0.is_timeout()
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl Error {
    /// When the endpoint could not be reached because of TLS (a certificate
    /// not trusted, a handshake refused): what went wrong, in a sentence.
    pub fn tls_problem(&self) -> Option<String> {
        match self {
            Error::Transport { source, .. } => crate::tls::certificate_problem(source),
            _ => None,
        }
    }

    /// The service error, if that is what this is.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            Error::Service(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the service answered with this modeled error.
    pub fn is(&self, code: ErrorCode) -> bool {
        self.service().is_some_and(|e| e.kind == ErrorKind::Modeled(code))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Service(e) => e.fmt(f),
            Error::Transport { endpoint, source } => match crate::tls::certificate_problem(source) {
                Some(problem) => write!(f, "could not reach {endpoint}: {problem}"),
                None => write!(f, "could not reach {endpoint}: {source}"),
            },
            Error::Config(message) | Error::Decode(message) => f.write_str(message),
            Error::Io(e) => write!(f, "{e}"),
            Error::S3 { status, code, message } => {
                write!(f, "S3 answered {status}")?;
                if !code.is_empty() {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}
