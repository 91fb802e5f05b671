//! Where export files go: managed storage, served by the server
//! through pre-signed URLs, and `s3://bucket/key` destinations, through
//! `object_store`: a folder per bucket under the data dir by default, or a
//! real S3-compatible service.
//!
//! Each run of a job writes its own staging object (`<key>.<run>.partial`)
//! through `object_store`'s buffered writer; only a complete staging object
//! is renamed to the final key (and, on local disk, synced), so a final
//! object is always whole, and a run that loses its job deletes only its own
//! staging object.
//!
//! [`StorageError`] keeps two texts apart: a reason in the user's terms,
//! which may reach `FailureInfo`, and the detail (paths, library errors),
//! which goes to the log only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
#[cfg(feature = "s3")]
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use tokio::io::AsyncWriteExt;

/// Where `s3://` destinations are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketBackend {
    /// `<root>/<bucket>/<key>` on this machine.
    Local(PathBuf),
    /// A real S3-compatible service; credentials and region from the usual
    /// `AWS_*` environment variables. `None` endpoint means AWS itself.
    S3 {
        /// The service's URL.
        endpoint: Option<String>,
    },
}

impl BucketBackend {
    /// The store behind bucket `name` (a local bucket's folder is made on
    /// first use).
    pub(crate) fn open(&self, name: &str) -> Result<Bucket, StorageError> {
        if !valid_bucket_name(name) {
            return Err(StorageError::new("the bucket name is not valid", name));
        }
        match self {
            BucketBackend::Local(root) => Bucket::local(&root.join(name)),
            #[cfg(feature = "s3")]
            BucketBackend::S3 { endpoint } => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(name);
                if let Some(endpoint) = endpoint {
                    builder = builder.with_endpoint(endpoint).with_allow_http(true);
                }
                Ok(Bucket::remote(Arc::new(
                    builder.build().map_err(StorageError::object_store)?,
                )))
            }
            #[cfg(not(feature = "s3"))]
            BucketBackend::S3 { .. } => Err(StorageError::new(
                "this build has no S3 support",
                "ses-export-core was built without its s3 feature",
            )),
        }
    }
}

/// One object store, and the folder behind it when it is on this machine
/// (whose files are then synced before a job completes).
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    pub(crate) store: Arc<dyn ObjectStore>,
    local: Option<Arc<LocalFileSystem>>,
    /// The folder of a local bucket.
    dir: Option<PathBuf>,
}

impl Bucket {
    /// The folder `dir` (made when missing) as a store.
    pub(crate) fn local(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let local = Arc::new(LocalFileSystem::new_with_prefix(dir).map_err(StorageError::object_store)?);
        Ok(Bucket {
            store: Arc::clone(&local) as Arc<dyn ObjectStore>,
            local: Some(local),
            dir: Some(dir.to_owned()),
        })
    }

    /// Any object store (a cluster's shared bucket).
    #[cfg(feature = "s3")]
    pub(crate) fn remote(store: Arc<dyn ObjectStore>) -> Self {
        Bucket {
            store,
            local: None,
            dir: None,
        }
    }
}

/// The object stores exports are written to.
#[derive(Debug, Clone)]
pub struct Storage {
    managed: Bucket,
    /// The managed bucket's name when it is an S3 bucket, which no
    /// `S3Url` may name.
    managed_name: Option<String>,
    buckets: BucketBackend,
}

/// Why storage could not be used: a reason in the user's terms (safe for
/// `FailureInfo`) and the detail for the log.
#[derive(Debug)]
pub struct StorageError {
    reason: &'static str,
    detail: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StorageError {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        StorageError {
            reason,
            detail: detail.into(),
            source: None,
        }
    }

    /// What went wrong, in words for the user: no paths, no library errors.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.detail)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source = self.source.as_deref()?;
        Some(source)
    }
}

impl StorageError {
    /// An object store's error in the user's terms. Not a `From` impl, so
    /// object_store's types stay out of this crate's public surface.
    pub(crate) fn object_store(e: object_store::Error) -> Self {
        let detail = e.to_string();
        let reason = match &e {
            object_store::Error::NotFound { .. } => "the bucket or key does not exist",
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                "access to the bucket was denied"
            }
            _ if detail.contains("NoSuchBucket") => "the bucket does not exist",
            _ if detail.contains("AccessDenied") || detail.contains("InvalidAccessKeyId") => {
                "access to the bucket was denied"
            }
            object_store::Error::Generic { source, .. } => match source.downcast_ref::<std::io::Error>() {
                Some(io) => io_reason(io),
                None => "the storage service did not accept the write",
            },
            _ => "the storage service did not accept the write",
        };
        StorageError {
            reason,
            detail,
            source: Some(Box::new(e)),
        }
    }
}

fn io_reason(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => "no space is left on the storage",
        std::io::ErrorKind::PermissionDenied => "access to the storage was denied",
        _ => "the storage could not be written",
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        StorageError {
            reason: io_reason(&e),
            detail: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}

impl Storage {
    /// Managed storage in the folder `managed`, buckets per `buckets`.
    pub fn new(managed: &Path, buckets: BucketBackend) -> Result<Self, StorageError> {
        Ok(Storage {
            managed: Bucket::local(managed)?,
            managed_name: None,
            buckets,
        })
    }

    /// Managed storage in the S3 bucket `name` (a cluster's shared bucket).
    pub fn with_managed_bucket(name: &str, buckets: BucketBackend) -> Result<Self, StorageError> {
        Ok(Storage {
            managed: buckets.open(name)?,
            managed_name: Some(name.to_owned()),
            buckets,
        })
    }

    /// Whether the managed store answers, for readiness: its folder is
    /// there, or the bucket answers a request for an object (that it has
    /// no such object is an answer).
    pub async fn ping(&self) -> Result<(), StorageError> {
        if let Some(dir) = &self.managed.dir {
            let meta = tokio::fs::metadata(dir).await?;
            if !meta.is_dir() {
                return Err(StorageError::new(
                    "the export folder is not a folder",
                    dir.display().to_string(),
                ));
            }
            return Ok(());
        }
        let probe = object_store::path::Path::from(".ses-export-readyz");
        match self.managed.store.head(&probe).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::object_store(e)),
        }
    }

    /// The managed store, where downloads are served from.
    pub(crate) fn managed(&self) -> &Bucket {
        &self.managed
    }

    /// Whether `name` is the managed bucket, which no `S3Url` may name.
    pub fn is_managed_bucket(&self, name: &str) -> bool {
        self.managed_name.as_deref() == Some(name)
    }

    /// The store behind bucket `name`.
    pub(crate) fn bucket(&self, name: &str) -> Result<Bucket, StorageError> {
        self.buckets.open(name)
    }

    /// Opens run `run`'s writer for `key` in `bucket`: it writes the staging
    /// object `<key>.<run>.partial`; nothing is at `key` until
    /// [`StagedExport::publish`], and [`ExportWriter::abort`] leaves nothing.
    pub(crate) fn writer(bucket: Bucket, key: &str, run: &str) -> ExportWriter {
        let staging = ObjectPath::from(format!("{key}.{run}.partial"));
        ExportWriter {
            inner: BufWriter::new(Arc::clone(&bucket.store), staging.clone()),
            bucket,
            staging,
            key: ObjectPath::from(key),
        }
    }
}

/// The buckets an account may name in `S3Url` (docs/security.md). Real S3 writes use
/// the server's own credentials, so this list is what keeps one account
/// out of another's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketAccess {
    /// Any bucket (the development credential).
    Any,
    /// Buckets named exactly, or by a prefix with a trailing `*`.
    Only(Vec<String>),
}

/// A bucket pattern [`BucketAccess::only`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPatternError(pub String);

impl std::fmt::Display for BucketPatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} is not a bucket name or a prefix of at least 3 characters followed by *",
            self.0
        )
    }
}

impl std::error::Error for BucketPatternError {}

impl BucketAccess {
    /// A list of names and `prefix*` patterns; a pattern must keep at least
    /// three characters before its `*`, so no list reads as "any bucket" by
    /// accident.
    pub fn only(patterns: Vec<String>) -> Result<Self, BucketPatternError> {
        for pattern in &patterns {
            let stem = pattern.strip_suffix('*').unwrap_or(pattern);
            let stem_ok = stem
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
            if stem.len() < 3 || !stem_ok {
                return Err(BucketPatternError(pattern.clone()));
            }
        }
        Ok(BucketAccess::Only(patterns))
    }

    /// Whether `bucket` may be named.
    pub fn allows(&self, bucket: &str) -> bool {
        match self {
            BucketAccess::Any => true,
            BucketAccess::Only(patterns) => patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => bucket.starts_with(prefix),
                None => bucket == p,
            }),
        }
    }
}

/// Whether `name` follows S3's bucket naming rules (so it is also a safe
/// folder name): 3 to 63 lower-case letters, digits, dots and hyphens,
/// starting and ending with a letter or digit.
pub fn valid_bucket_name(name: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge_ok(name.chars().next())
        && edge_ok(name.chars().last())
        && !name.contains("..")
}

/// Splits `s3://bucket/key` into bucket and key; a key ending in `/` is a
/// prefix, completed with `<job_id>.<extension>`.
pub fn s3_target(url: &str, job_id: &str, extension: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    let key = if key.ends_with('/') {
        format!("{key}{job_id}.{extension}")
    } else {
        key.to_owned()
    };
    Some((bucket.to_owned(), key))
}

/// An export file being written to its staging object.
#[derive(Debug)]
pub(crate) struct ExportWriter {
    inner: BufWriter,
    bucket: Bucket,
    staging: ObjectPath,
    key: ObjectPath,
}

impl ExportWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.write_all(bytes).await?;
        Ok(())
    }

    /// Completes the staging object.
    pub async fn finish(mut self) -> Result<StagedExport, StorageError> {
        self.inner.shutdown().await?;
        Ok(StagedExport {
            bucket: self.bucket,
            staging: self.staging,
            key: self.key,
        })
    }

    /// Drops what was written; nothing becomes visible.
    pub async fn abort(mut self) {
        if let Err(e) = self.inner.abort().await {
            tracing::warn!(error = %e, path = %self.staging, "aborting an export write");
        }
    }
}

/// A complete staging object, not yet at its final key.
#[derive(Debug)]
pub(crate) struct StagedExport {
    bucket: Bucket,
    staging: ObjectPath,
    key: ObjectPath,
}

impl StagedExport {
    /// Moves the staging object to the final key and, on local disk, syncs
    /// the file and its folder: once this returns, the export survives
    /// power loss.
    pub async fn publish(self) -> Result<PublishedExport, StorageError> {
        let store = &self.bucket.store;
        if let Err(e) = store.rename(&self.staging, &self.key).await {
            self.discard().await;
            return Err(StorageError::object_store(e));
        }
        if let Some(local) = &self.bucket.local {
            let path = local
                .path_to_filesystem(&self.key)
                .map_err(StorageError::object_store)?;
            tokio::task::spawn_blocking(move || {
                std::fs::File::open(&path)?.sync_all()?;
                crate::fsync_dir(&path)
            })
            .await
            .map_err(|e| StorageError::new("the storage could not be written", e.to_string()))??;
        }
        Ok(PublishedExport {
            bucket: self.bucket,
            key: self.key,
        })
    }

    /// Deletes the staging object (a run that lost its job).
    pub async fn discard(self) {
        if let Err(e) = self.bucket.store.delete(&self.staging).await {
            tracing::warn!(error = %e, path = %self.staging, "deleting a staging export");
        }
    }
}

/// An export at its final key, which can still be taken back (when a
/// cancel won the race against the finish).
#[derive(Debug)]
pub(crate) struct PublishedExport {
    bucket: Bucket,
    key: ObjectPath,
}

impl PublishedExport {
    pub async fn delete(self) {
        if let Err(e) = self.bucket.store.delete(&self.key).await {
            tracing::warn!(error = %e, path = %self.key, "deleting a cancelled export");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_a_key_or_a_prefix() {
        assert_eq!(
            s3_target("s3://b/k.csv", "j", "csv"),
            Some(("b".into(), "k.csv".into()))
        );
        assert_eq!(
            s3_target("s3://b/p/q/", "j", "json"),
            Some(("b".into(), "p/q/j.json".into()))
        );
        assert_eq!(s3_target("s3://b/", "j", "csv"), None);
        assert_eq!(s3_target("https://b/k", "j", "csv"), None);
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket.2026", "a1b"] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "..",
            "a..b",
            "Upper",
            "-abc",
            "abc-",
            "a/b",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }
}
