//! The error shapes of the model and the restJson1 error body.

mod generated;

use serde::{Deserialize, Serialize};

pub use generated::*;

/// The body of every error response: `{"message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    #[serde(alias = "Message")]
    pub message: String,
}

/// The authentication errors: AWS's, answered with 403 before a request
/// reaches an operation, so not in the service model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthErrorCode {
    /// No signature at all.
    MissingAuthenticationToken,
    /// An access key nobody has.
    UnrecognizedClient,
    /// A signature that does not verify, or is malformed or out of time.
    InvalidSignature,
}

impl AuthErrorCode {
    /// Every authentication error.
    pub const ALL: [AuthErrorCode; 3] = [
        AuthErrorCode::MissingAuthenticationToken,
        AuthErrorCode::UnrecognizedClient,
        AuthErrorCode::InvalidSignature,
    ];

    /// The shape's name, as `x-amzn-ErrorType` carries it.
    pub const fn name(self) -> &'static str {
        match self {
            AuthErrorCode::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            AuthErrorCode::UnrecognizedClient => "UnrecognizedClientException",
            AuthErrorCode::InvalidSignature => "InvalidSignatureException",
        }
    }

    /// The code named `name`, if it is one of these.
    pub fn from_name(name: &str) -> Option<AuthErrorCode> {
        AuthErrorCode::ALL.into_iter().find(|code| code.name() == name)
    }

    /// Every authentication error is answered with 403.
    pub const fn http_status(self) -> u16 {
        403
    }
}

impl std::fmt::Display for AuthErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
