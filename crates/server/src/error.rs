//! Why the server cannot start.

use std::error::Error;
use std::fmt;

/// Why the server (or one of its parts: the credentials file, SNS's trust,
/// the databases) cannot start: what to fix, in the operator's terms, and
/// the error beneath it (`source()`), if there is one.
#[derive(Debug)]
pub struct StartError {
    context: String,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl StartError {
    /// `context` caused by `source`.
    pub fn caused(context: impl Into<String>, source: impl Error + Send + Sync + 'static) -> Self {
        StartError {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// A reason that is the whole story (the checks of settings say exactly
/// what is wrong).
impl From<String> for StartError {
    fn from(context: String) -> Self {
        StartError { context, source: None }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {}", self.context, ses_export_core::error_chain(&**source)),
            None => f.write_str(&self.context),
        }
    }
}

impl Error for StartError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}
