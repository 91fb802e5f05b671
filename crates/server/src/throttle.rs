//! Failed guesses of a bearer secret (an intake key), counted per client
//! address: each address has a bucket of [`Failures::BURST`] failures that
//! refills at [`Failures::PER_SECOND`]; an address whose bucket is empty is
//! answered 429 without its key being looked at, so guessing runs at a few
//! keys a second however fast a client sends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Failed attempts by client address.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Failures {
    /// Failures an address may have in a row.
    pub const BURST: f64 = 20.0;
    /// Failures an address earns back each second.
    pub const PER_SECOND: f64 = 2.0;
    /// Addresses remembered at most; past it, those whose buckets are full
    /// again are forgotten (and if none is, the whole map: a flood from
    /// that many addresses is the network's to stop).
    const MAX_ADDRESSES: usize = 65_536;

    /// Whether `peer` may try a key now.
    pub(crate) fn allows(&self, peer: Option<IpAddr>) -> bool {
        let Some(peer) = peer else { return true };
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .get(&peer)
            .is_none_or(|(tokens, at)| Self::refilled(*tokens, *at) >= 1.0)
    }

    /// Counts a failed attempt from `peer`.
    pub(crate) fn failed(&self, peer: Option<IpAddr>) {
        let Some(peer) = peer else { return };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= Self::MAX_ADDRESSES && !buckets.contains_key(&peer) {
            buckets.retain(|_, (tokens, at)| Self::refilled(*tokens, *at) < Self::BURST);
            if buckets.len() >= Self::MAX_ADDRESSES {
                buckets.clear();
            }
        }
        let now = Instant::now();
        let entry = buckets.entry(peer).or_insert((Self::BURST, now));
        *entry = ((Self::refilled(entry.0, entry.1) - 1.0).max(0.0), now);
    }

    fn refilled(tokens: f64, at: Instant) -> f64 {
        (tokens + at.elapsed().as_secs_f64() * Self::PER_SECOND).min(Self::BURST)
    }
}
