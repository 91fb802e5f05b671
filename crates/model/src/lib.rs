//! The SES v2 export-jobs API as data: wire types, operation metadata, error
//! codes and constraint checks, all generated from AWS's service model.
//!
//! This crate is serde only: no I/O, no async runtime. The server validates
//! requests with [`parse_input`]; clients build and read the same types.
//!
//! ```
//! use ses_export_model::{parse_input, types::CreateExportJobRequest};
//!
//! let body = br#"{"ExportDataSource": {"MetricsDataSource": {"Namespace": "VDM"}},
//!                 "ExportDestination": {"DataFormat": "XML"}}"#;
//! let err = parse_input::<CreateExportJobRequest>(body, &[]).unwrap_err();
//! assert!(err.to_string().starts_with("5 validation errors detected: "));
//! ```
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[macro_use]
mod string_enum;

pub mod error;
pub mod ingest;
pub mod operation;
pub mod schema;
mod timestamp;
pub mod types;
mod validate;

pub use error::{AuthErrorCode, ErrorCode};
pub use operation::{Operation, OperationSpec};
pub use timestamp::Timestamp;
pub use validate::{InputError, Violation, parse_input, violations};
