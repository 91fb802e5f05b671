//! A typed async client for the SES v2 export-jobs API (this server's or
//! AWS's), built on the generated `ses-export-model` types: SigV4 signing,
//! credentials and region resolved as AWS tools do, bounded retries with
//! jittered backoff on throttling and server errors, modeled errors as a
//! typed enum, a waiter, a paginator, streaming downloads, and ingest.
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod client;
pub mod credentials;
mod error;
pub mod s3;
mod tls;

pub use client::{Client, ClientConfig, RetryPolicy};
pub use error::{Error, ErrorKind, ServiceError, TransportError};
pub use ses_export_model as model;
pub use ses_export_model::ingest::{IngestReport, LineError};
