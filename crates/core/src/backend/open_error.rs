//! Why a database could not be opened: the one error of opening and
//! migrating, for every backend and for `open`.

/// Why a database could not be opened: what to fix, and the error beneath
/// it (`source()`), if there is one.
#[derive(Debug)]
pub struct OpenError {
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl OpenError {
    pub(crate) fn new(context: String) -> Self {
        OpenError { context, source: None }
    }

    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn caused(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        OpenError {
            context: context.into(),
            source: Some(source.into()),
        }
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {}", self.context, crate::error_chain(&**source)),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}
