//! Opaque `NextToken`s of `ListExportJobs`: where the next page starts,
//! signed, and valid only for the account and filters that asked.

use crate::Scope;
use crate::job::{JobCursor, JobFilter};
use crate::signing::SigningKey;

fn parts(account: &Scope, filter: &JobFilter, created: &str, job_id: &str) -> Vec<Vec<u8>> {
    vec![
        b"list-export-jobs".to_vec(),
        account.as_str().as_bytes().to_vec(),
        filter.status.as_ref().map_or("", |s| s.as_str()).as_bytes().to_vec(),
        filter
            .source_type
            .as_ref()
            .map_or("", |s| s.as_str())
            .as_bytes()
            .to_vec(),
        created.as_bytes().to_vec(),
        job_id.as_bytes().to_vec(),
    ]
}

/// The token for the page after `cursor`.
pub fn make(key: &SigningKey, account: &Scope, filter: &JobFilter, cursor: &JobCursor) -> String {
    let created = cursor.created.to_string();
    let parts = parts(account, filter, &created, &cursor.job_id);
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let signature = key.sign(&refs);
    format!("{created}.{}.{signature}", hex::encode(cursor.job_id.as_bytes()))
}

/// The cursor in `token`; `None` when it is malformed, forged, or made for
/// another account or other filters.
pub fn read(key: &SigningKey, account: &Scope, filter: &JobFilter, token: &str) -> Option<JobCursor> {
    let mut pieces = token.split('.');
    let (Some(created), Some(id_hex), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return None;
    };
    let job_id = hex::decode(id_hex).ok().and_then(|b| String::from_utf8(b).ok())?;
    let parts = parts(account, filter, created, &job_id);
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    if !key.verify(&refs, signature) {
        return None;
    }
    Some(JobCursor {
        created: created.parse().ok()?,
        job_id,
    })
}
