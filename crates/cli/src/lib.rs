//! `ses-export`: the command line for SES v2 export jobs, in the AWS CLI's
//! habits, over `ses-export-client`.
