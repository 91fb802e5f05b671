//! Rate limits that hold for the whole cluster: one row per account and
//! operation, refilled and spent in a single atomic `UPDATE`. The cost is
//! one round trip to PostgreSQL per rate-limited call.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_postgres::Pool;

use crate::Scope;
use crate::limits::{LimitedOperation, RateLimiter};

/// Token buckets in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgRateLimiter {
    pool: Pool,
}

impl PgRateLimiter {
    /// Limits kept in `pool`'s database, shared by every server using it.
    pub fn new(pool: Pool) -> Self {
        PgRateLimiter { pool }
    }
}

#[async_trait]
impl RateLimiter for PgRateLimiter {
    async fn try_acquire(&self, account: &Scope, operation: LimitedOperation) -> bool {
        let rate = operation.aws_rate();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let Ok(client) = self.pool.get().await else {
            // Without the database no call can succeed anyway; it fails there.
            return true;
        };
        let (account, operation) = (account.as_str(), operation.to_string());
        // A new bucket starts full.
        let created = client
            .execute(
                "INSERT INTO rate_buckets (account, operation, tokens, updated) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[&account, &operation, &rate, &now],
            )
            .await;
        if let Err(e) = created {
            tracing::warn!(error = %e, "rate limit check failed; allowing the call");
            return true;
        }
        // Refill by the time elapsed (up to the capacity) and spend a token,
        // in one statement; no row back means no token.
        let spent = client
            .query_opt(
                "UPDATE rate_buckets SET tokens = least($3, tokens + ($4 - updated)::float8 / 1000.0 * $3) - 1, updated = $4 \
                 WHERE account = $1 AND operation = $2 AND least($3, tokens + ($4 - updated)::float8 / 1000.0 * $3) >= 1 \
                 RETURNING tokens",
                &[&account, &operation, &rate, &now],
            )
            .await;
        match spent {
            Ok(row) => row.is_some(),
            Err(e) => {
                tracing::warn!(error = %e, "rate limit check failed; allowing the call");
                true
            }
        }
    }
}
