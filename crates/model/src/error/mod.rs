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

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
