//! A typed async client for the SES v2 export-jobs API (this server's or
//! AWS's), built on the generated `ses-export-model` types: SigV4 signing,
//! credentials and region resolved as AWS tools do, bounded retries with
//! jittered backoff on throttling and server errors, modeled errors as a
//! typed enum, a waiter, a paginator, streaming downloads, and ingest.
//!
//! ```no_run
//! # async fn example() -> Result<(), ses_export_client::Error> {
//! use ses_export_client::{Client, ClientConfig};
//! let client = Client::new(ClientConfig::local("http://127.0.0.1:4599"))?;
//! let jobs = client.list_export_jobs(Default::default()).await?;
//! # Ok(()) }
//! ```
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod client;
pub mod credentials;
mod error;
pub mod s3;
mod tls;

pub use client::{Client, ClientConfig, RetryPolicy};
pub use error::{Error, ErrorKind, ServiceError};
pub use ses_export_model as model;
pub use ses_export_model::ingest::{IngestReport, LineError};
