//! Reading S3 for a backfill: the objects under a prefix (ListObjectsV2,
//! every page) and each object's bytes (GetObject), signed with SigV4 for
//! `s3`, from AWS or any S3-compatible endpoint, with the same credentials
//! and region resolution as the rest of the client.

use std::path::Path;

use serde::Deserialize;
use ses_export_model::operation::percent_encode;

use crate::credentials::{self, Credentials, Resolve};
use crate::error::{Error, TransportError};

/// Pages of a listing read at most: 100 million objects at S3's 1,000 a page.
pub const MAX_LIST_PAGES: usize = 100_000;
/// An object under the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    /// The object's key.
    pub key: String,
    /// Its size, in bytes.
    pub size: u64,
}

/// `s3://bucket/prefix` split into its bucket and prefix.
pub fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_owned(), prefix.to_owned()))
}

/// Reads one S3 endpoint.
#[derive(Debug, Clone)]
pub struct S3Reader {
    http: reqwest::Client,
    /// Path-style base (`http://127.0.0.1:9000`) for an S3-compatible
    /// endpoint; AWS itself when `None`.
    endpoint: Option<String>,
    region: String,
    credentials: Credentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    contents: Vec<Contents>,
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contents {
    key: String,
    #[serde(default)]
    size: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct S3ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl S3Reader {
    /// A reader of `endpoint` (AWS when `None`), signing as `resolve` says;
    /// `ca_bundle` as for [`crate::ClientConfig`].
    pub fn new(endpoint: Option<&str>, resolve: &Resolve, ca_bundle: Option<&Path>) -> Result<S3Reader, Error> {
        let resolved = credentials::resolve(resolve).map_err(|e| Error::Config(e.to_string()))?;
        let http = crate::tls::http_client(ca_bundle)?;
        if let Some(endpoint) = endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(Error::Config(format!(
                "the S3 endpoint {endpoint:?} must start with http:// or https://"
            )));
        }
        Ok(S3Reader {
            http,
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            region: resolved.region,
            credentials: resolved.credentials,
        })
    }

    /// `https://…/bucket/key` or the virtual-hosted form on AWS.
    fn url(&self, bucket: &str, key: &str, query: &str) -> String {
        let key = key.split('/').map(percent_encode).collect::<Vec<_>>().join("/");
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        match &self.endpoint {
            Some(base) => format!("{base}/{bucket}/{key}{query}"),
            // A bucket with dots cannot be a TLS host name.
            None if bucket.contains('.') => {
                format!("https://s3.{}.amazonaws.com/{bucket}/{key}{query}", self.region)
            }
            None => format!("https://{bucket}.s3.{}.amazonaws.com/{key}{query}", self.region),
        }
    }

    /// Every object under `prefix`, in key order.
    ///
    /// An endpoint that hands back a continuation token it gave before, or
    /// more than [`MAX_LIST_PAGES`] pages, is an error, not a list that
    /// never ends.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<S3Object>, Error> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_LIST_PAGES {
            let mut query = format!("list-type=2&prefix={}", percent_encode(prefix));
            if let Some(token) = &token {
                query.push_str(&format!("&continuation-token={}", percent_encode(token)));
            }
            let url = self.url(bucket, "", &query);
            let body = self.get_url(&url).await?;
            let page: ListBucketResult = quick_xml::de::from_reader(body.as_ref()).map_err(|e| {
                Error::Decode(format!(
                    "S3 listed s3://{bucket}/{prefix} in a form not understood: {e}"
                ))
            })?;
            objects.extend(page.contents.into_iter().map(|c| S3Object {
                key: c.key,
                size: c.size,
            }));
            match (page.is_truncated, page.next_continuation_token) {
                (true, Some(next)) => {
                    if !seen.insert(next.clone()) {
                        return Err(Error::Decode(format!(
                            "S3 listed s3://{bucket}/{prefix} with a continuation token it had given before: \
                             the listing would never end"
                        )));
                    }
                    token = Some(next);
                }
                _ => return Ok(objects),
            }
        }
        Err(Error::Decode(format!(
            "S3 listed s3://{bucket}/{prefix} in more than {MAX_LIST_PAGES} pages; list a narrower prefix"
        )))
    }

    /// The bytes of `s3://bucket/key`, whole (see [`S3Reader::open`] to
    /// read an object of any size piece by piece).
    pub async fn get(&self, bucket: &str, key: &str) -> Result<bytes::Bytes, Error> {
        let url = self.url(bucket, key, "");
        self.get_url(&url).await
    }

    /// `s3://bucket/key` as it arrives, so an object of any size is never
    /// held whole.
    pub async fn open(&self, bucket: &str, key: &str) -> Result<S3Body, Error> {
        let url = self.url(bucket, key, "");
        let response = self.respond(&url).await?;
        Ok(S3Body {
            response,
            endpoint: self.endpoint_name(),
        })
    }

    fn endpoint_name(&self) -> String {
        self.endpoint.clone().unwrap_or_else(|| "S3".to_owned())
    }

    async fn get_url(&self, url: &str) -> Result<bytes::Bytes, Error> {
        let response = self.respond(url).await?;
        response.bytes().await.map_err(|e| Error::Transport {
            endpoint: self.endpoint_name(),
            source: TransportError::new(e),
        })
    }

    /// A signed GET whose answer is a success; S3's error otherwise (its
    /// body read up to 64 KiB).
    async fn respond(&self, url: &str) -> Result<reqwest::Response, Error> {
        let transport = |source| Error::Transport {
            endpoint: self.endpoint_name(),
            source: TransportError::new(source),
        };
        let headers = self.sign(url)?;
        let mut request = self.http.get(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let mut body = Vec::new();
        while body.len() < 64 * 1024
            && let Some(chunk) = response.chunk().await.map_err(transport)?
        {
            body.extend_from_slice(&chunk);
        }
        let error: S3ErrorBody = quick_xml::de::from_reader(body.as_slice()).unwrap_or_default();
        Err(Error::S3 {
            status,
            code: error.code,
            message: error.message,
        })
    }

    fn sign(&self, url: &str) -> Result<Vec<(String, String)>, Error> {
        use aws_sigv4::http_request::{
            PayloadChecksumKind, PercentEncodingMode, SigningSettings, UriPathNormalizationMode,
        };
        let host = url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or_default())
            .unwrap_or_default();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        credentials::sign(
            &self.credentials,
            &self.region,
            "s3",
            settings,
            ("GET", url, &[("host", host)], b""),
        )
    }
}

/// An object's bytes as they arrive from S3: [`S3Reader::open`].
#[derive(Debug)]
pub struct S3Body {
    response: reqwest::Response,
    endpoint: String,
}

impl S3Body {
    /// The object's size, when S3 said it.
    pub fn size(&self) -> Option<u64> {
        self.response.content_length()
    }

    /// The next piece of the object; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, Error> {
        self.response.chunk().await.map_err(|e| Error::Transport {
            endpoint: self.endpoint.clone(),
            source: TransportError::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_s3_url("s3://events/2024/01/"),
            Some(("events".to_owned(), "2024/01/".to_owned()))
        );
        assert_eq!(parse_s3_url("s3://events"), Some(("events".to_owned(), String::new())));
        assert_eq!(parse_s3_url("s3:///x"), None);
        assert_eq!(parse_s3_url("/tmp/x"), None);
        assert_eq!(percent_encode("a b/ü~"), "a%20b%2F%C3%BC~");
    }
}
