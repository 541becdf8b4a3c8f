//! Opened tokens kept in the warm container, so the proxy asks KMS at most
//! once per connection per [`TOKEN_CACHE_TTL`] however many calls arrive.
//!
//! Keyed by the connection, and checked against a fingerprint of the sealed
//! token in the row just read: a refreshed token (a new sealing) misses the
//! cache at once. Concurrent first calls for one connection wait for a single
//! decryption. Tokens are `SecretString`s: zeroized when evicted or replaced.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use secrecy::SecretString;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::clock::Clock;
use crate::provider::Provider;
use crate::vault::SealedToken;

/// How long an opened token stays in memory.
pub const TOKEN_CACHE_TTL: Duration = Duration::minutes(5);

/// At most this many connections' tokens per container (a hard bound):
/// beyond it, expired entries are swept, then the least recently used go.
pub const MAX_ENTRIES: usize = 10_000;

/// Expired tokens are dropped (zeroized) at the first call at least this long
/// after the last sweep, whichever connection it is for: an idle
/// connection's token doesn't outlive [`TOKEN_CACHE_TTL`] by more than this
/// while the container serves calls (a frozen container runs no code; its
/// next call sweeps).
const SWEEP_EVERY: Duration = Duration::seconds(30);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub user_id: String,
    pub provider: Provider,
    pub account_id: String,
}

struct Entry {
    fingerprint: [u8; 32],
    token: SecretString,
    opened_at: OffsetDateTime,
}

type Slot = Arc<tokio::sync::Mutex<Option<Entry>>>;

pub struct TokenCache {
    slots: Mutex<Slots>,
    clock: Clock,
    capacity: usize,
}

struct Slots {
    /// Each connection's slot, with the tick of its last use.
    map: HashMap<CacheKey, (Slot, u64)>,
    swept_at: OffsetDateTime,
    tick: u64,
}

/// A sealed token's identity: a new sealing (refresh, reconnect) differs.
fn fingerprint(sealed: &SealedToken) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&sealed.wrapped_key);
    h.update(&sealed.nonce);
    h.update(&sealed.ciphertext);
    h.finalize().into()
}

impl TokenCache {
    pub fn new(clock: Clock) -> Self {
        Self::with_capacity(clock, MAX_ENTRIES)
    }

    /// A cache holding at most `capacity` connections' tokens.
    pub fn with_capacity(clock: Clock, capacity: usize) -> Self {
        Self {
            slots: Mutex::new(Slots {
                map: HashMap::new(),
                swept_at: clock.now(),
                tick: 0,
            }),
            clock,
            capacity: capacity.max(1),
        }
    }

    /// The token of `sealed`: from memory when this very sealing was opened
    /// less than [`TOKEN_CACHE_TTL`] ago, else through `open` (once, however
    /// many callers wait).
    pub async fn get_or_open<E, F, Fut>(
        &self,
        key: &CacheKey,
        sealed: &SealedToken,
        open: F,
    ) -> Result<SecretString, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SecretString, E>>,
    {
        let slot = self.slot(key);
        let mut entry = slot.lock().await;
        let fp = fingerprint(sealed);
        let now = self.clock.now();
        if let Some(e) = entry.as_ref() {
            if e.fingerprint == fp && now - e.opened_at < TOKEN_CACHE_TTL {
                return Ok(e.token.clone());
            }
        }
        // Stale or another sealing: drop (and so zeroize) it before opening.
        *entry = None;
        let token = open().await?;
        *entry = Some(Entry {
            fingerprint: fp,
            token: token.clone(),
            opened_at: now,
        });
        Ok(token)
    }

    /// Forgets a connection's token (Meta said it is dead).
    pub fn evict(&self, key: &CacheKey) {
        self.slots.lock().unwrap().map.remove(key);
    }

    pub fn len(&self) -> usize {
        self.slots.lock().unwrap().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, key: &CacheKey) -> Slot {
        let mut slots = self.slots.lock().unwrap();
        let now = self.clock.now();
        let full = slots.map.len() >= self.capacity && !slots.map.contains_key(key);
        if full || now - slots.swept_at >= SWEEP_EVERY {
            slots.swept_at = now;
            // Keep what is fresh or in use; an entry busy opening is in use.
            slots.map.retain(|_, (slot, _)| match slot.try_lock() {
                Ok(e) => e
                    .as_ref()
                    .is_some_and(|e| now - e.opened_at < TOKEN_CACHE_TTL),
                Err(_) => true,
            });
        }
        if slots.map.len() >= self.capacity && !slots.map.contains_key(key) {
            evict_least_recent(&mut slots.map, self.capacity - 1);
        }
        slots.tick += 1;
        let tick = slots.tick;
        let entry = slots.map.entry(key.clone()).or_default();
        entry.1 = tick;
        entry.0.clone()
    }
}

/// Drops the least recently used idle entries until at most `keep` remain
/// (an entry busy opening stays: its caller holds it).
fn evict_least_recent(map: &mut HashMap<CacheKey, (Slot, u64)>, keep: usize) {
    let mut idle: Vec<(u64, CacheKey)> = map
        .iter()
        .filter(|(_, (slot, _))| slot.try_lock().is_ok())
        .map(|(k, (_, tick))| (*tick, k.clone()))
        .collect();
    idle.sort_unstable_by_key(|(tick, _)| *tick);
    let excess = map.len().saturating_sub(keep);
    for (_, key) in idle.into_iter().take(excess) {
        map.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use time::macros::datetime;

    fn sealed(n: u8) -> SealedToken {
        SealedToken {
            version: 1,
            key_id: "k".into(),
            wrapped_key: vec![n; 4],
            nonce: vec![n; 12],
            ciphertext: vec![n; 8],
        }
    }

    fn key() -> CacheKey {
        CacheKey {
            user_id: "u".into(),
            provider: Provider::Instagram,
            account_id: "1".into(),
        }
    }

    async fn get(cache: &TokenCache, s: &SealedToken, opened: &AtomicUsize, value: &str) -> String {
        let value = value.to_string();
        let t = cache
            .get_or_open(&key(), s, || async {
                opened.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(SecretString::from(value))
            })
            .await
            .unwrap();
        t.expose_secret().to_string()
    }

    #[tokio::test]
    async fn one_open_per_sealing_per_five_minutes() {
        let clock = Clock::fixed(datetime!(2026-11-21 12:00:00 UTC));
        let cache = TokenCache::new(clock.clone());
        let opened = AtomicUsize::new(0);
        assert_eq!(get(&cache, &sealed(1), &opened, "t1").await, "t1");
        clock.advance(Duration::minutes(4));
        assert_eq!(get(&cache, &sealed(1), &opened, "other").await, "t1");
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        clock.advance(Duration::minutes(1));
        assert_eq!(
            get(&cache, &sealed(1), &opened, "t1-again").await,
            "t1-again"
        );
        assert_eq!(opened.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_idle_connections_token_is_dropped_soon_after_it_expires() {
        let clock = Clock::fixed(datetime!(2026-11-21 12:00:00 UTC));
        let cache = TokenCache::new(clock.clone());
        let opened = AtomicUsize::new(0);
        get(&cache, &sealed(1), &opened, "idle").await;
        assert_eq!(cache.len(), 1);
        let other = CacheKey {
            account_id: "2".into(),
            ..key()
        };
        let busy = sealed(2);
        let open_other = || {
            cache.get_or_open(&other, &busy, || async {
                Ok::<_, ()>(SecretString::from("busy".to_string()))
            })
        };
        // Still fresh: kept while other connections are called.
        clock.advance(Duration::minutes(4));
        open_other().await.unwrap();
        assert_eq!(cache.len(), 2);
        // Expired: the next call for any connection drops it (once the
        // last sweep is SWEEP_EVERY old), though it is never called again.
        clock.advance(Duration::minutes(1) + SWEEP_EVERY);
        open_other().await.unwrap();
        assert_eq!(cache.len(), 1, "only the connection in use is left");
    }

    #[tokio::test]
    async fn a_refreshed_token_replaces_the_cached_one_at_once() {
        let cache = TokenCache::new(Clock::fixed(datetime!(2026-11-21 12:00:00 UTC)));
        let opened = AtomicUsize::new(0);
        assert_eq!(get(&cache, &sealed(1), &opened, "old").await, "old");
        assert_eq!(get(&cache, &sealed(2), &opened, "new").await, "new");
        assert_eq!(get(&cache, &sealed(2), &opened, "x").await, "new");
        assert_eq!(opened.load(Ordering::SeqCst), 2);
        cache.evict(&key());
        assert_eq!(
            get(&cache, &sealed(2), &opened, "reopened").await,
            "reopened"
        );
    }

    #[tokio::test]
    async fn concurrent_first_calls_open_once() {
        let cache = Arc::new(TokenCache::new(Clock::fixed(
            datetime!(2026-11-21 12:00:00 UTC),
        )));
        let opened = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..32)
            .map(|_| {
                let (cache, opened) = (cache.clone(), opened.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_open(&key(), &sealed(1), || async {
                            opened.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            Ok::<_, ()>(SecretString::from("t"))
                        })
                        .await
                        .unwrap()
                        .expose_secret()
                        .to_string()
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), "t");
        }
        assert_eq!(opened.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_open_is_not_cached() {
        let cache = TokenCache::new(Clock::fixed(datetime!(2026-11-21 12:00:00 UTC)));
        let r = cache
            .get_or_open(&key(), &sealed(1), || async {
                Err::<SecretString, _>("kms down")
            })
            .await;
        assert!(r.is_err());
        let opened = AtomicUsize::new(0);
        assert_eq!(get(&cache, &sealed(1), &opened, "t").await, "t");
        assert_eq!(opened.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_cache_never_holds_more_than_its_capacity_and_drops_the_least_recent() {
        let clock = Clock::fixed(datetime!(2026-11-21 12:00:00 UTC));
        let cache = TokenCache::with_capacity(clock.clone(), 3);
        let opened = AtomicUsize::new(0);
        async fn open(cache: &TokenCache, opened: &AtomicUsize, n: u8) {
            let key = CacheKey {
                user_id: format!("u{n}"),
                provider: Provider::Instagram,
                account_id: n.to_string(),
            };
            cache
                .get_or_open(&key, &sealed(n), || async {
                    opened.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ()>(SecretString::from(format!("t{n}")))
                })
                .await
                .unwrap();
        }
        // All fresh, so nothing expires: the bound is what holds.
        for n in 1..=3 {
            open(&cache, &opened, n).await;
        }
        open(&cache, &opened, 1).await; // 1 is now the most recent; 2 the least.
        assert_eq!(opened.load(Ordering::SeqCst), 3);
        for n in 4..=10 {
            open(&cache, &opened, n).await;
            assert!(cache.len() <= 3, "{} entries", cache.len());
        }
        let before = opened.load(Ordering::SeqCst);
        open(&cache, &opened, 10).await;
        assert_eq!(opened.load(Ordering::SeqCst), before, "the newest stays");
        open(&cache, &opened, 2).await;
        assert_eq!(opened.load(Ordering::SeqCst), before + 1, "the oldest went");
    }
}
