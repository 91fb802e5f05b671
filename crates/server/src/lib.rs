//! The SES v2 export-jobs API on the wire: routing, restJson1 framing and
//! SigV4 verification, over `ses-export-core`.
//!
//! [`app::app`] builds the axum router from an [`app::AppState`];
//! [`config::Config`] holds the server's flags; [`run`] wires everything
//! together for the `ses-export-server` binary.
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod app;
pub mod config;
mod connections;
pub mod credentials;
mod error;
pub mod metrics;
mod run;
pub mod sigv4;
pub mod sns;
mod throttle;
mod tls;

pub use error::StartError;
pub use run::{build_state, run};
