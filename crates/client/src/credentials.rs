//! Credentials and region, resolved the way AWS tools resolve them:
//! explicit values, then the `AWS_*` environment variables, then the
//! shared credentials and config files, for the chosen profile.

use std::collections::HashMap;
use std::path::PathBuf;

/// An access key and its secret (and a session token, if any).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credentials {
    /// The access key id (`AKIA...`).
    pub access_key_id: String,
    /// The secret that signs.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
}

impl Credentials {
    /// Long-term credentials: a key and its secret.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// Temporary credentials: with the session token that goes with them.
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Where to look, and what was given explicitly:
/// `Resolve::default()` looks everywhere, `with_*` narrows it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Resolve {
    /// A profile of the shared files (else `AWS_PROFILE`, else `default`).
    pub profile: Option<String>,
    /// The region (else `AWS_REGION`, the profile's, `us-east-1`).
    pub region: Option<String>,
    /// Credentials to use as they are, before any lookup.
    pub credentials: Option<Credentials>,
}

impl Resolve {
    /// A profile of the shared files, before `AWS_PROFILE`.
    pub fn with_profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// A region, before any lookup.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Credentials to use as they are, before any lookup.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }
}

/// What was found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Resolved {
    /// The credentials found.
    pub credentials: Credentials,
    /// The region found.
    pub region: String,
}

/// Reads an INI file into sections of key/value pairs.
fn read_ini(path: &PathBuf) -> HashMap<String, HashMap<String, String>> {
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return sections;
    };
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_owned();
        } else if let Some((key, value)) = line.split_once('=') {
            sections
                .entry(current.clone())
                .or_default()
                .insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    sections
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A setting of the chosen profile (`profile`, else `AWS_PROFILE`, else
/// `default`) in the shared config file (`AWS_CONFIG_FILE`, else
/// `~/.aws/config`): `output`, `endpoint_url`, and the like.
pub fn profile_setting(profile: Option<&str>, key: &str) -> Option<String> {
    let profile = profile
        .map(str::to_owned)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    let config_file = env("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/config")))?;
    let mut config = read_ini(&config_file);
    let section = if profile == "default" {
        config.remove("default")
    } else {
        config.remove(&format!("profile {profile}"))
    }?;
    section.get(key).cloned().filter(|v| !v.is_empty())
}

/// No credentials anywhere the AWS CLI looks: the arguments, the
/// environment, the profile in the shared files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoCredentials {
    /// The profile looked for.
    pub profile: String,
    /// The shared credentials file looked in.
    pub credentials_file: String,
}

impl std::fmt::Display for NoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add profile [{}] to {} \
             (for a local ses-export-server, access key `test`, secret `test`)",
            self.profile, self.credentials_file
        )
    }
}

impl std::error::Error for NoCredentials {}

/// Resolves credentials and region.
pub fn resolve(request: &Resolve) -> Result<Resolved, NoCredentials> {
    let profile = request
        .profile
        .clone()
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    let explicit_profile = request.profile.is_some();
    let credentials_file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/credentials")));
    let config_file = env("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/config")));
    let credentials_ini = credentials_file.as_ref().map(read_ini).unwrap_or_default();
    let config_ini = config_file.as_ref().map(read_ini).unwrap_or_default();
    let config_section = if profile == "default" {
        config_ini.get("default")
    } else {
        config_ini.get(&format!("profile {profile}"))
    };
    let from_files = |section: Option<&HashMap<String, String>>| {
        let section = section?;
        Some(Credentials {
            access_key_id: section.get("aws_access_key_id")?.clone(),
            secret_access_key: section.get("aws_secret_access_key")?.clone(),
            session_token: section.get("aws_session_token").cloned(),
        })
    };
    let from_env = || {
        Some(Credentials {
            access_key_id: env("AWS_ACCESS_KEY_ID")?,
            secret_access_key: env("AWS_SECRET_ACCESS_KEY")?,
            session_token: env("AWS_SESSION_TOKEN"),
        })
    };
    // An explicit --profile wins over the environment, as in the AWS CLI.
    let credentials = request
        .credentials
        .clone()
        .or_else(|| if explicit_profile { None } else { from_env() })
        .or_else(|| from_files(credentials_ini.get(&profile)))
        .or_else(|| from_files(config_section))
        .ok_or_else(|| NoCredentials {
            profile: profile.clone(),
            credentials_file: credentials_file.map_or("~/.aws/credentials".to_owned(), |p| p.display().to_string()),
        })?;
    let region = request
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| config_section.and_then(|s| s.get("region").cloned()))
        .unwrap_or_else(|| "us-east-1".to_owned());
    Ok(Resolved { credentials, region })
}

/// The SigV4 headers for `request` (method, URL, headers to sign, body),
/// signed with `credentials` for `service` in `region`.
pub(crate) fn sign(
    credentials: &Credentials,
    region: &str,
    service: &str,
    settings: aws_sigv4::http_request::SigningSettings,
    request: (&str, &str, &[(&str, &str)], &[u8]),
) -> Result<Vec<(String, String)>, crate::Error> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, sign};
    let (method, url, headers, body) = request;
    let failed = |e: &dyn std::fmt::Display| crate::Error::Config(format!("signing: {e}"));
    let identity = aws_credential_types::Credentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        credentials.session_token.clone(),
        None,
        "ses-export",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let request = SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(body))
        .map_err(|e| failed(&e))?;
    let (instructions, _) = sign(request, &params).map_err(|e| failed(&e))?.into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers
        .iter()
        .map(|h| (h.name().to_owned(), h.value().to_owned()))
        .collect())
}
