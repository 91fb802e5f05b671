//! Token buckets in this process: they refill continuously, and hold one
//! second's worth.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

use crate::Scope;
use crate::limits::{LimitedOperation, RateLimiter};

/// Token buckets in this process, one per account and operation.
#[derive(Debug)]
pub struct TokenBuckets {
    rate: fn(LimitedOperation) -> f64,
    buckets: Mutex<HashMap<(Scope, LimitedOperation), (f64, Instant)>>,
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
    async fn try_acquire(&self, account: &Scope, operation: LimitedOperation) -> bool {
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
        let a: Scope = "111111111111/us-east-1".parse().expect("a scope");
        let b: Scope = "222222222222/us-east-1".parse().expect("a scope");
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
