//! The server's own signatures: pre-signed download URLs and opaque
//! `NextToken`s, both HMAC-SHA256 under one key kept in the data dir (or
//! given in configuration, so several servers share it).

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Where managed exports are downloaded, under the server's address.
pub const DOWNLOAD_PATH: &str = "/_ses-export/v1/exports/";

/// The pre-signed URL of managed export `key`, valid for `ttl`.
pub fn download_url(signing: &SigningKey, base_url: &str, key: &str, ttl: std::time::Duration) -> String {
    let expires = ses_export_model::Timestamp::now().secs() + ttl.as_secs() as i64;
    let signature = signing.sign(&[b"download", key.as_bytes(), expires.to_string().as_bytes()]);
    format!("{base_url}{DOWNLOAD_PATH}{key}?X-Amz-Expires={expires}&X-Amz-Signature={signature}")
}

/// Whether a download URL's parts are ones [`download_url`] made and not
/// yet expired.
pub fn download_is_valid(signing: &SigningKey, key: &str, expires: &str, signature: &str) -> bool {
    signing.verify(&[b"download", key.as_bytes(), expires.as_bytes()], signature)
        && expires
            .parse::<i64>()
            .is_ok_and(|t| t >= ses_export_model::Timestamp::now().secs())
}

/// A 256-bit secret key.
#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn random() -> std::io::Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        Ok(SigningKey(key))
    }

    /// A key from configuration (any length; it is hashed to 256 bits).
    pub fn from_secret(secret: &[u8]) -> Self {
        use sha2::Digest;
        SigningKey(Sha256::digest(secret).into())
    }

    /// The key in `path`, made (readable by the owner only) when missing.
    /// The file appears whole or not at all: the key is written and synced
    /// under a temporary name first, then linked into place (so of two
    /// servers starting at once, one key wins and both use it).
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok(SigningKey(key))
            }
            Ok(_) => Err(std::io::Error::other(format!(
                "{} is not a 32-byte key",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::random()?;
                let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let written = options.open(&temporary).and_then(|mut file| {
                    file.write_all(&key.0)?;
                    file.sync_all()
                });
                let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
                let _ = std::fs::remove_file(&temporary);
                match linked {
                    Ok(()) => {
                        crate::fsync_dir(path)?;
                        Ok(key)
                    }
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(path),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac
    }

    /// The signature of `parts`, as hex.
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        hex::encode(self.mac(parts).finalize().into_bytes())
    }

    /// Whether `signature` (hex) signs `parts`; compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(bytes) => self.mac(parts).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_does_not() {
        let key = SigningKey::from_secret(b"secret");
        let sig = key.sign(&[b"a", b"bc"]);
        assert!(key.verify(&[b"a", b"bc"], &sig));
        assert!(!key.verify(&[b"ab", b"c"], &sig));
        assert!(!key.verify(&[b"a", b"bc"], &sig[1..]));
        assert!(!key.verify(&[b"a", b"bc"], "zz"));
        assert!(!SigningKey::from_secret(b"other").verify(&[b"a", b"bc"], &sig));
    }
}
