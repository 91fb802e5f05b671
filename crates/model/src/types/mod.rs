//! One Rust type per shape of the model, with serde names as on the wire.
//!
//! Members the model marks required are plain fields; all others are
//! `Option`s that are left out of the JSON when `None`. Members bound to the
//! URI (`JobId`, `MessageId`) are never written to a body.

mod generated;

pub use generated::*;
