//! Identifiers the service makes: job ids and request ids, random
//! version-4 UUIDs as AWS's are.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::rng;

/// A random version-4 UUID, in its usual text form.
pub fn uuid_v4() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(std::io::Error::other)?;
    Ok(format_v4(b))
}

/// A request id: shaped as a version-4 UUID and as unlikely to repeat, but
/// made without a system call per request (the server makes one for every
/// request, refused ones included): a counter mixed, through bijections,
/// with a random key drawn once per process.
pub fn request_id() -> String {
    static KEY: OnceLock<[u64; 2]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let key = KEY.get_or_init(|| {
        let mut b = [0u8; 16];
        // Without the system's randomness, the clock still tells runs apart.
        if getrandom::fill(&mut b).is_err() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            b[..16].copy_from_slice(&now.as_nanos().to_le_bytes());
        }
        let (a, c) = b.split_at(8);
        [
            u64::from_le_bytes(a.try_into().unwrap_or_default()),
            u64::from_le_bytes(c.try_into().unwrap_or_default()),
        ]
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let high = rng::mix(n ^ key[0]);
    let low = rng::mix(high ^ key[1]);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&high.to_be_bytes());
    b[8..].copy_from_slice(&low.to_be_bytes());
    format_v4(b)
}

fn format_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_look_like_uuids() {
        let id = uuid_v4().expect("random");
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, uuid_v4().expect("random"));
    }

    #[test]
    fn request_ids_are_uuids_and_never_repeat() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            assert_eq!(id.len(), 36);
            assert_eq!(&id[14..15], "4");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        }
    }
}
