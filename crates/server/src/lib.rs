//! The SES v2 export-jobs API on the wire: routing, restJson1 framing and
//! SigV4 verification, over `ses-export-core`.
