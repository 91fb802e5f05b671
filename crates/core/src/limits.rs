//! Per-account, per-operation rate limits: the [`RateLimiter`] trait, the
//! operations it limits with AWS's rates, and [`Unlimited`] for test suites.
//! The token buckets are backends: `backend::memory::TokenBuckets` in one
//! process, `backend::postgres::PgRateLimiter` across a cluster.

use std::fmt;

use async_trait::async_trait;

use crate::Scope;

/// The operations that are rate limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitedOperation {
    /// `CreateExportJob`.
    CreateExportJob,
    /// `GetExportJob`.
    GetExportJob,
    /// `ListExportJobs`.
    ListExportJobs,
    /// `CancelExportJob`.
    CancelExportJob,
    /// `GetMessageInsights`.
    GetMessageInsights,
    /// `BatchGetMetricData`.
    BatchGetMetricData,
    /// The server's own reputation read (not an SES operation): one a
    /// second, as `GetMessageInsights`.
    Reputation,
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
    async fn try_acquire(&self, account: &Scope, operation: LimitedOperation) -> bool;
}

/// No limits (`--rate-limits off`).
#[derive(Debug, Default)]
pub struct Unlimited;

#[async_trait]
impl RateLimiter for Unlimited {
    async fn try_acquire(&self, _: &Scope, _: LimitedOperation) -> bool {
        true
    }
}
