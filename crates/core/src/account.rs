//! Accounts and regions: everything stored and every limit is per account
//! and region, a [`Scope`].

use std::fmt;

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

impl AccountId {
    /// The account of the development credential.
    pub fn development() -> Self {
        AccountId("000000000000".to_owned())
    }

    /// The account id as digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for AccountId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(s.to_owned()))
        } else {
            Err(format!("account id {s:?} is not 12 digits"))
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An AWS region's name, as a SigV4 scope or an ARN writes it
/// (`us-east-1`): lowercase letters, digits and hyphens, at most 32.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region(String);

impl Region {
    /// The region data kept before regions existed belongs to, unless the
    /// server is told otherwise (`--default-region`).
    pub fn us_east_1() -> Self {
        Region("us-east-1".to_owned())
    }

    /// The region's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Region {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Ok(Region(s.to_owned()))
        } else {
            Err(format!(
                "region {s:?} is not a region name (lowercase letters, digits and hyphens, at most 32)"
            ))
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where data lives: an account in a region. AWS keeps SES, its VDM data
/// and its quotas per account and region, and so does every store here:
/// jobs, events, insight records, rollups, what metrics learn, rate
/// limits, page tokens and export files are all kept per scope. A store
/// keys its rows by [`Scope::as_str`] (`111111111111/eu-west-1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    account: AccountId,
    region: Region,
    key: String,
}

impl Scope {
    /// `account` in `region`.
    pub fn new(account: AccountId, region: Region) -> Self {
        let key = format!("{}/{}", account.as_str(), region.as_str());
        Scope { account, region, key }
    }

    /// The development account in `us-east-1`.
    pub fn development() -> Self {
        Scope::new(AccountId::development(), Region::us_east_1())
    }

    /// The account.
    pub fn account(&self) -> &AccountId {
        &self.account
    }

    /// The region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The key stores keep the scope's rows under: `ACCOUNT/REGION`.
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    /// Reads a key written by [`Scope::as_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (account, region) = s
            .split_once('/')
            .ok_or_else(|| format!("scope {s:?} is not ACCOUNT/REGION"))?;
        Ok(Scope::new(account.parse()?, region.parse()?))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}
