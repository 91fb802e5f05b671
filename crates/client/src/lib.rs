//! A typed client for the SES v2 export-jobs API, built on the generated
//! `ses-export-model` types.
