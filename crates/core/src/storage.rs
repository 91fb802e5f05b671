//! Where export files go (SPEC §6): managed storage, served by the server
//! through pre-signed URLs, and `s3://bucket/key` destinations, through
//! `object_store`: a folder per bucket under the data dir by default, or a
//! real S3-compatible service.
//!
//! Files are written through `object_store`'s buffered writer, so an object
//! appears only once it is complete, and an aborted write leaves nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
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
    S3 { endpoint: Option<String> },
}

impl BucketBackend {
    /// The store behind bucket `name` (a local bucket's folder is made on
    /// first use).
    pub fn open(&self, name: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
        if !valid_bucket_name(name) {
            return Err(StorageError(format!("{name:?} is not a valid S3 bucket name")));
        }
        match self {
            BucketBackend::Local(root) => {
                let dir = root.join(name);
                std::fs::create_dir_all(&dir)?;
                Ok(Arc::new(LocalFileSystem::new_with_prefix(dir)?))
            }
            BucketBackend::S3 { endpoint } => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(name);
                if let Some(endpoint) = endpoint {
                    builder = builder.with_endpoint(endpoint).with_allow_http(true);
                }
                Ok(Arc::new(builder.build()?))
            }
        }
    }
}

/// The object stores exports are written to.
#[derive(Debug, Clone)]
pub struct Storage {
    managed: Arc<dyn ObjectStore>,
    buckets: BucketBackend,
}

/// A destination that cannot be used.
#[derive(Debug)]
pub struct StorageError(pub String);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StorageError {}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        StorageError(e.to_string())
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        StorageError(e.to_string())
    }
}

impl Storage {
    /// Managed storage in the folder `managed`, buckets per `buckets`.
    pub fn new(managed: &Path, buckets: BucketBackend) -> Result<Self, StorageError> {
        std::fs::create_dir_all(managed)?;
        Ok(Storage {
            managed: Arc::new(LocalFileSystem::new_with_prefix(managed)?),
            buckets,
        })
    }

    /// Managed storage in any object store (a cluster's shared bucket).
    pub fn with_managed(managed: Arc<dyn ObjectStore>, buckets: BucketBackend) -> Self {
        Storage { managed, buckets }
    }

    /// The managed store, where downloads are served from.
    pub fn managed(&self) -> &Arc<dyn ObjectStore> {
        &self.managed
    }

    /// The store behind bucket `name`.
    pub fn bucket(&self, name: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
        self.buckets.open(name)
    }

    /// Opens a writer for `key` in `store`: nothing is visible until
    /// [`ExportWriter::finish`], and [`ExportWriter::abort`] leaves nothing.
    pub fn writer(store: Arc<dyn ObjectStore>, key: &str) -> ExportWriter {
        let path = ObjectPath::from(key);
        ExportWriter {
            inner: BufWriter::new(Arc::clone(&store), path.clone()),
            store,
            path,
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

/// An export file being written.
#[derive(Debug)]
pub struct ExportWriter {
    inner: BufWriter,
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
}

impl ExportWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.write_all(bytes).await?;
        Ok(())
    }

    /// Completes the object; it becomes visible whole.
    pub async fn finish(mut self) -> Result<FinishedExport, StorageError> {
        self.inner.shutdown().await?;
        Ok(FinishedExport {
            store: self.store,
            path: self.path,
        })
    }

    /// Drops what was written; nothing becomes visible.
    pub async fn abort(mut self) {
        if let Err(e) = self.inner.abort().await {
            tracing::warn!(error = %e, path = %self.path, "aborting an export write");
        }
    }
}

/// A complete export object, which can still be taken back (when a cancel
/// won the race against the finish).
#[derive(Debug)]
pub struct FinishedExport {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
}

impl FinishedExport {
    pub async fn delete(self) {
        if let Err(e) = self.store.delete(&self.path).await {
            tracing::warn!(error = %e, path = %self.path, "deleting a cancelled export");
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
