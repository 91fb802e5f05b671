//! Per-account, per-operation rate limits (SPEC §4): token buckets that
//! refill continuously, AWS's rates by default, or none at all for test
//! suites.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

use crate::AccountId;

/// The operations that are rate limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitedOperation {
    CreateExportJob,
    GetExportJob,
    ListExportJobs,
    CancelExportJob,
    GetMessageInsights,
    BatchGetMetricData,
}

impl LimitedOperation {
    /// AWS's rate, in requests per second (also the bucket's capacity).
    pub fn aws_rate(self) -> f64 {
        match self {
            LimitedOperation::BatchGetMetricData => 16.0,
            _ => 1.0,
        }
    }
}

impl fmt::Display for LimitedOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Decides whether a call may go ahead now.
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Takes a token for `operation` of `account`; `false` when there is none.
    async fn try_acquire(&self, account: &AccountId, operation: LimitedOperation) -> bool;
}

/// No limits (`--rate-limits off`).
#[derive(Debug, Default)]
pub struct Unlimited;

#[async_trait]
impl RateLimiter for Unlimited {
    async fn try_acquire(&self, _: &AccountId, _: LimitedOperation) -> bool {
        true
    }
}

/// Token buckets in this process, one per account and operation.
#[derive(Debug)]
pub struct TokenBuckets {
    rate: fn(LimitedOperation) -> f64,
    buckets: Mutex<HashMap<(AccountId, LimitedOperation), (f64, Instant)>>,
}

impl TokenBuckets {
    /// AWS's rates.
    pub fn aws() -> Self {
        Self::with_rates(LimitedOperation::aws_rate)
    }

    /// Custom rates, per second; each bucket holds one second's worth.
    pub fn with_rates(rate: fn(LimitedOperation) -> f64) -> Self {
        TokenBuckets {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl RateLimiter for TokenBuckets {
    async fn try_acquire(&self, account: &AccountId, operation: LimitedOperation) -> bool {
        let rate = (self.rate)(operation);
        let now = Instant::now();
        // A bucket is two numbers; a panic cannot leave one half-written.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry((account.clone(), operation)).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bucket_of_one_allows_one_call_a_second() {
        let limits = TokenBuckets::aws();
        let a: AccountId = "111111111111".parse().expect("id");
        let b: AccountId = "222222222222".parse().expect("id");
        assert!(limits.try_acquire(&a, LimitedOperation::CreateExportJob).await);
        assert!(!limits.try_acquire(&a, LimitedOperation::CreateExportJob).await);
        assert!(
            limits.try_acquire(&a, LimitedOperation::GetExportJob).await,
            "per operation"
        );
        assert!(
            limits.try_acquire(&b, LimitedOperation::CreateExportJob).await,
            "per account"
        );
        for _ in 0..16 {
            assert!(limits.try_acquire(&a, LimitedOperation::BatchGetMetricData).await);
        }
        assert!(!limits.try_acquire(&a, LimitedOperation::BatchGetMetricData).await);
    }
}
