//! The ses-export domain: what an export job is and does, over SES event
//! data, independent of how requests arrive. Knows nothing of HTTP.

pub use ses_export_model as model;
