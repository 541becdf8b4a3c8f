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

/// At most this many connections' tokens per container; beyond it, expired
/// entries are swept first.
const MAX_ENTRIES: usize = 10_000;

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
    slots: Mutex<HashMap<CacheKey, Slot>>,
    clock: Clock,
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
        Self {
            slots: Mutex::new(HashMap::new()),
            clock,
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
        self.slots.lock().unwrap().remove(key);
    }

    pub fn len(&self) -> usize {
        self.slots.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, key: &CacheKey) -> Slot {
        let mut slots = self.slots.lock().unwrap();
        if slots.len() >= MAX_ENTRIES && !slots.contains_key(key) {
            let now = self.clock.now();
            // Keep what is fresh or in use; an entry busy opening is in use.
            slots.retain(|_, slot| match slot.try_lock() {
                Ok(e) => e
                    .as_ref()
                    .is_some_and(|e| now - e.opened_at < TOKEN_CACHE_TTL),
                Err(_) => true,
            });
        }
        slots.entry(key.clone()).or_default().clone()
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
}
