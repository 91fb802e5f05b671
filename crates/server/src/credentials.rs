//! Who may call: access keys with their secrets, accounts and the buckets
//! their accounts may write to, from a TOML file, or the one development
//! credential when there is no file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use ses_export_core::destination::BucketAccess;
use ses_export_core::{AccountId, Region};

use crate::StartError;

/// The development credential: access key `test`, secret `test`.
pub const DEVELOPMENT_KEY: &str = "test";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    credentials: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    access_key_id: String,
    secret_access_key: String,
    account_id: String,
    /// Buckets the account may name in `S3Url` (`team-*` matches a prefix);
    /// none when absent.
    #[serde(default)]
    s3_buckets: Vec<String>,
    /// Secrets that authorise only event intake into the account (Firehose's
    /// access key, an EventBridge API destination's `x-api-key`).
    #[serde(default)]
    intake_keys: Vec<String>,
    /// SNS topics whose notifications are the account's events.
    #[serde(default)]
    sns_topic_arns: Vec<String>,
    /// The region of events the intake keys bring that name none in their
    /// `sourceArn` (`--default-region` when absent).
    region: Option<String>,
}

/// Where the server finds who may call. [`Credentials`] reads the TOML
/// file; an application that embeds the router (`app::app`) can answer
/// from its own store instead.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// What `access_key` stands for, with its secret; `None` for a key
    /// nobody has (the caller is answered `UnrecognizedClientException`).
    fn identity(&self, access_key: &str) -> Option<Arc<Identity>>;

    /// The account an intake key feeds (Firehose, EventBridge); none by
    /// default.
    fn intake_account(&self, _key: &str) -> Option<AccountId> {
        None
    }

    /// The region of events an intake key brings that name none in their
    /// `sourceArn`; the server's `--default-region` when `None` (the
    /// default).
    fn intake_region(&self, _key: &str) -> Option<Region> {
        None
    }

    /// The account whose events an SNS topic carries; none by default.
    fn topic_account(&self, _topic_arn: &str) -> Option<AccountId> {
        None
    }
}

/// A [`CredentialSource`] from a closure that finds an access key's
/// identity (intake keys and SNS topics: none).
///
/// ```
/// use std::sync::Arc;
/// use ses_export_core::destination::BucketAccess;
/// use ses_export_server::credentials::{CredentialSource, Identity, from_fn};
///
/// let account = "123456789012".parse()?;
/// let alice = Arc::new(Identity::new("alice-secret", account, BucketAccess::only(Vec::new())?));
/// let source = from_fn(move |key| (key == "AKIAALICE").then(|| Arc::clone(&alice)));
/// assert_eq!(source.identity("AKIAALICE").map(|i| i.secret.clone()), Some("alice-secret".to_owned()));
/// assert!(source.identity("AKIABOB").is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn from_fn<F>(find: F) -> FnSource<F>
where
    F: Fn(&str) -> Option<Arc<Identity>> + Send + Sync,
{
    FnSource(find)
}

/// The [`CredentialSource`] [`from_fn`] makes.
pub struct FnSource<F>(F);

impl<F> std::fmt::Debug for FnSource<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnSource")
    }
}

impl<F> CredentialSource for FnSource<F>
where
    F: Fn(&str) -> Option<Arc<Identity>> + Send + Sync,
{
    fn identity(&self, access_key: &str) -> Option<Arc<Identity>> {
        (self.0)(access_key)
    }
}

/// What an access key stands for: [`Identity::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Identity {
    /// The secret its requests are signed with.
    pub secret: String,
    /// The account it acts for.
    pub account: AccountId,
    /// The buckets its account may name in `S3Url`.
    pub buckets: Arc<BucketAccess>,
}

impl Identity {
    /// A caller of `account` that signs with `secret` and may name the
    /// buckets `buckets` allows in `S3Url`.
    pub fn new(secret: impl Into<String>, account: AccountId, buckets: BucketAccess) -> Self {
        Identity {
            secret: secret.into(),
            account,
            buckets: Arc::new(buckets),
        }
    }
}

/// Access key id to its identity; intake keys and SNS topics to their
/// accounts.
#[derive(Clone, Default)]
pub struct Credentials {
    keys: HashMap<String, Arc<Identity>>,
    /// SHA-256 of each intake key: a lookup's timing tells nothing about
    /// the keys, and the keys themselves are not kept.
    intake: HashMap<[u8; 32], (AccountId, Option<Region>)>,
    topics: HashMap<String, AccountId>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("keys", &self.keys.len())
            .field("intake_keys", &self.intake.len())
            .field("sns_topics", &self.topics.len())
            .finish()
    }
}

fn digest(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}

impl Credentials {
    /// Access key `test`, secret `test`, account `000000000000`.
    pub fn development() -> Self {
        Credentials {
            keys: HashMap::from([(
                DEVELOPMENT_KEY.to_owned(),
                Arc::new(Identity {
                    secret: DEVELOPMENT_KEY.to_owned(),
                    account: AccountId::development(),
                    buckets: Arc::new(BucketAccess::Any),
                }),
            )]),
            ..Credentials::default()
        }
    }

    /// Reads a credentials file; says which entry is wrong when one is.
    pub fn load(path: &Path) -> Result<Self, StartError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| StartError::caused(format!("reading {}", path.display()), e))?;
        Self::parse(&text).map_err(|e| StartError::from(format!("{}: {e}", path.display())))
    }

    /// Reads a credentials file's text; says which entry is wrong when one is.
    pub fn parse(text: &str) -> Result<Self, StartError> {
        Self::parse_text(text).map_err(StartError::from)
    }

    fn parse_text(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let mut map = HashMap::new();
        let mut intake = HashMap::new();
        let mut topics = HashMap::new();
        for (i, entry) in file.credentials.into_iter().enumerate() {
            let account: AccountId = entry
                .account_id
                .parse()
                .map_err(|e| format!("credentials entry {}: {e}", i + 1))?;
            if entry.access_key_id.is_empty() {
                return Err(format!("credentials entry {}: an empty access key id", i + 1));
            }
            if entry.secret_access_key.chars().count() < MIN_SECRET_CHARS {
                return Err(format!(
                    "credentials entry {}: the secret_access_key is shorter than {MIN_SECRET_CHARS} characters \
                     (AWS's are 40; for example the output of `openssl rand -base64 30`)",
                    i + 1
                ));
            }
            let region: Option<Region> = entry
                .region
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| format!("credentials entry {}: region: {e}", i + 1))?;
            let buckets = BucketAccess::only(entry.s3_buckets)
                .map_err(|e| format!("credentials entry {}: s3_buckets: {e}", i + 1))?;
            for key in entry.intake_keys {
                if key.trim().chars().count() < MIN_INTAKE_KEY_CHARS {
                    return Err(format!(
                        "credentials entry {}: an intake key is shorter than {MIN_INTAKE_KEY_CHARS} characters \
                         (it is all a sender shows: use the output of `openssl rand -hex 32`)",
                        i + 1
                    ));
                }
                if intake.insert(digest(&key), (account.clone(), region.clone())).is_some() {
                    return Err(format!("credentials entry {}: an intake key appears twice", i + 1));
                }
            }
            for arn in entry.sns_topic_arns {
                if !is_topic_arn(&arn) {
                    return Err(format!(
                        "credentials entry {}: sns_topic_arns: {arn:?} is not an SNS topic ARN \
                         (arn:aws:sns:REGION:ACCOUNT:NAME)",
                        i + 1
                    ));
                }
                if let Some(other) = topics.insert(arn.clone(), account.clone())
                    && other != account
                {
                    return Err(format!(
                        "credentials entry {}: topic {arn} is listed for two accounts",
                        i + 1
                    ));
                }
            }
            let identity = Identity {
                secret: entry.secret_access_key,
                account,
                buckets: Arc::new(buckets),
            };
            if map.insert(entry.access_key_id.clone(), Arc::new(identity)).is_some() {
                return Err(format!("access key {} appears twice", entry.access_key_id));
            }
        }
        if map.is_empty() {
            return Err("no [[credentials]] entries".to_owned());
        }
        Ok(Credentials {
            keys: map,
            intake,
            topics,
        })
    }

    /// What `access_key` stands for.
    pub fn get(&self, access_key: &str) -> Option<&Identity> {
        self.keys.get(access_key).map(|identity| &**identity)
    }
}

impl CredentialSource for Credentials {
    fn identity(&self, access_key: &str) -> Option<Arc<Identity>> {
        self.keys.get(access_key).cloned()
    }

    fn intake_account(&self, key: &str) -> Option<AccountId> {
        self.intake.get(&digest(key)).map(|(account, _)| account.clone())
    }

    fn intake_region(&self, key: &str) -> Option<Region> {
        self.intake.get(&digest(key)).and_then(|(_, region)| region.clone())
    }

    fn topic_account(&self, topic_arn: &str) -> Option<AccountId> {
        self.topics.get(topic_arn).cloned()
    }
}

/// The shortest `secret_access_key` taken. The signature never shows the
/// secret, so a guess must be checked by signing with it; still, a secret
/// of a few characters is guessed in a day. (The development credential,
/// `test`, is not read from a file.)
pub const MIN_SECRET_CHARS: usize = 8;
/// The shortest intake key taken: an intake key is a bearer secret, sent as
/// it is, so it must be long enough that guessing it is hopeless.
pub const MIN_INTAKE_KEY_CHARS: usize = 16;

/// A TOML error said by line and column, with nothing of the file's text:
/// toml's own message quotes the offending line, which may hold a secret,
/// and its values, which may be one.
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let mut message = String::new();
    let mut quote = None;
    for c in error.message().chars() {
        match quote {
            Some(end) if c == end => {
                message.push_str("...");
                message.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                message.push(c);
                if c == '"' || c == '`' {
                    quote = Some(c);
                }
            }
        }
    }
    match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", message.trim())
        }
        None => message.trim().to_owned(),
    }
}

/// `arn:PARTITION:sns:REGION:ACCOUNT:NAME`.
fn is_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_parse_and_mistakes_are_named() {
        let ok = "[[credentials]]\naccess_key_id = \"AKIAEXAMPLE1\"\nsecret_access_key = \"secret-one\"\naccount_id = \"111111111111\"\n";
        let creds = Credentials::parse(ok).expect("valid");
        assert_eq!(
            creds
                .get("AKIAEXAMPLE1")
                .map(|i| (i.secret.as_str(), i.account.as_str())),
            Some(("secret-one", "111111111111"))
        );
        let listed = ok.replace(
            "\"111111111111\"\n",
            "\"111111111111\"\ns3_buckets = [\"reports\", \"team-*\"]\n",
        );
        let parsed = Credentials::parse(&listed).expect("buckets");
        let buckets = &parsed.get("AKIAEXAMPLE1").expect("key").buckets;
        assert!(buckets.allows("reports") && buckets.allows("team-a") && !buckets.allows("other"));
        assert!(
            !creds.get("AKIAEXAMPLE1").expect("key").buckets.allows("reports"),
            "none unless listed"
        );
        let bad = ok.replace("\"111111111111\"\n", "\"111111111111\"\ns3_buckets = [\"*\"]\n");
        assert!(
            Credentials::parse(&bad)
                .expect_err("bare *")
                .to_string()
                .to_string()
                .contains("s3_buckets")
        );
        let bad_account = ok.replace("111111111111", "1111");
        assert!(
            Credentials::parse(&bad_account)
                .expect_err("bad")
                .to_string()
                .to_string()
                .contains("entry 1")
        );
        assert!(Credentials::parse("").is_err());
        let intake = ok.replace(
            "\"111111111111\"\n",
            "\"111111111111\"\nintake_keys = [\"firehose-key-0001\"]\nsns_topic_arns = [\"arn:aws:sns:us-east-1:111111111111:ses-events\"]\n",
        );
        let parsed = Credentials::parse(&intake).expect("intake keys");
        assert_eq!(
            parsed
                .intake_account("firehose-key-0001")
                .as_ref()
                .map(AccountId::as_str),
            Some("111111111111")
        );
        assert!(parsed.intake_account("firehose-key-0002").is_none());
        assert!(
            parsed.intake_account("AKIAEXAMPLE1").is_none(),
            "an access key is no intake key"
        );
        assert_eq!(
            parsed
                .topic_account("arn:aws:sns:us-east-1:111111111111:ses-events")
                .as_ref()
                .map(AccountId::as_str),
            Some("111111111111")
        );
        let bad_topic = intake.replace("arn:aws:sns:us-east-1:111111111111:ses-events", "ses-events");
        assert!(
            Credentials::parse(&bad_topic)
                .expect_err("bad arn")
                .to_string()
                .contains("sns_topic_arns")
        );
        assert!(
            Credentials::parse(&format!("{ok}{ok}"))
                .expect_err("twice")
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn secrets_are_long_enough_and_never_printed() {
        let entry = |secret: &str, intake: &str| {
            format!(
                "[[credentials]]\naccess_key_id = \"AKIAEXAMPLE1\"\nsecret_access_key = {secret}\naccount_id = \"111111111111\"\nintake_keys = [{intake}]\n"
            )
        };
        let long_intake = "\"intake-key-0123456789abcdef\"";
        assert!(Credentials::parse(&entry("\"secret-one\"", long_intake)).is_ok());
        let short = Credentials::parse(&entry("\"s\"", long_intake))
            .expect_err("one character")
            .to_string();
        assert!(short.contains("shorter than 8"), "{short}");
        let short_intake = Credentials::parse(&entry("\"secret-one\"", "\"k\""))
            .expect_err("short key")
            .to_string();
        assert!(short_intake.contains("shorter than 16"), "{short_intake}");
        // A file TOML cannot read: the error names the place, not the text.
        for broken in [
            entry("\"very-secret-value\" junk", long_intake),
            entry("[\"very-secret-value\"]", long_intake),
            entry("\"secret-one\"", "\"very-secret-value\"").replace("intake_keys = [", "intake_keys = "),
        ] {
            let error = Credentials::parse(&broken)
                .expect_err("not TOML of credentials")
                .to_string();
            assert!(!error.contains("very-secret-value"), "{error}");
            assert!(error.contains("line "), "{error}");
        }
    }
}
