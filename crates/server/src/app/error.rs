//! Errors as restJson1 answers them: `WireError`, from the service's
//! errors and authentication's, and JSON bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use ses_export_core::service::{InternalError, ServiceError};
use ses_export_model::AuthErrorCode;
use ses_export_model::ErrorCode;
use ses_export_model::error::ErrorBody;

use crate::sigv4::AuthError;

/// An error response in restJson1's shape.
#[derive(Debug)]
pub struct WireError {
    pub(crate) status: StatusCode,
    pub(crate) error_type: &'static str,
    pub(crate) message: String,
    /// Members beside `message` (an ingest that failed partway says what
    /// it kept).
    pub(crate) extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl WireError {
    pub(crate) fn of(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            status: StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error_type: code.name(),
            message: message.into(),
            extra: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::of(ErrorCode::BadRequestException, message)
    }

    pub(crate) fn forbidden(error_type: &'static str, message: impl Into<String>) -> Self {
        WireError {
            status: StatusCode::FORBIDDEN,
            error_type,
            message: message.into(),
            extra: None,
        }
    }
}

impl From<ServiceError> for WireError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::BadRequest(m) => WireError::of(ErrorCode::BadRequestException, m),
            ServiceError::NotFound(m) => WireError::of(ErrorCode::NotFoundException, m),
            ServiceError::LimitExceeded(m) => WireError::of(ErrorCode::LimitExceededException, m),
            ServiceError::TooManyRequests(m) => WireError::of(ErrorCode::TooManyRequestsException, m),
            ServiceError::Internal(detail) => {
                tracing::error!(error = %ses_export_core::error_chain(&detail), "internal error");
                WireError::of(
                    ErrorCode::InternalServiceErrorException,
                    "The service could not process the request; try again.",
                )
            }
        }
    }
}

impl From<AuthError> for WireError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::Missing => WireError::forbidden(AuthErrorCode::MissingAuthenticationToken.name(), message),
            AuthError::UnknownKey => WireError::forbidden(AuthErrorCode::UnrecognizedClient.name(), message),
            AuthError::Invalid(_) => WireError::forbidden(AuthErrorCode::InvalidSignature.name(), message),
            AuthError::Conflicting => WireError::bad_request(message),
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error_type, self.status.as_u16(), self.message)
    }
}

impl std::error::Error for WireError {}

impl IntoResponse for WireError {
    fn into_response(self) -> Response {
        let body = match self.extra {
            None => serde_json::to_vec(&ErrorBody { message: self.message }),
            Some(mut members) => {
                members.insert("message".to_owned(), serde_json::Value::String(self.message));
                serde_json::to_vec(&members)
            }
        }
        .unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(self.error_type));
        response
    }
}

pub(crate) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => WireError::from(ServiceError::Internal(InternalError::new(e))).into_response(),
    }
}
