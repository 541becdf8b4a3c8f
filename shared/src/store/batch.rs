//! `BatchGetItem` that follows the keys DynamoDB leaves unprocessed, after
//! growing, jittered pauses, and gives up within bounds (the webhook's owner
//! lookup: it must answer Meta in seconds).

use aws_sdk_dynamodb::types::KeysAndAttributes;

use super::{ConnectionStore, Item, StoreError};

/// `pause` plus up to half of it again, at random: retries from many
/// containers do not line up.
pub(super) fn jittered(pause: std::time::Duration) -> std::time::Duration {
    use rand::RngExt;
    let extra = rand::rng().random_range(0..=pause.as_millis() as u64 / 2);
    pause + std::time::Duration::from_millis(extra)
}

impl ConnectionStore {
    /// Every item of `keys` that exists, following unprocessed keys.
    pub(super) async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let fetch = |keys: Vec<Item>| async move {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .expect("keys are set");
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            let items = out
                .responses
                .unwrap_or_default()
                .remove(&self.table)
                .unwrap_or_default();
            let unprocessed = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            Ok((items, unprocessed))
        };
        follow_unprocessed(keys, fetch, tokio::time::sleep).await
    }
}

/// Rounds of `BatchGetItem` for one set of keys, the first included.
const BATCH_ROUNDS: u32 = 6;
/// The pause before the first retry of unprocessed keys; doubled each round
/// up to [`BATCH_PAUSE_CAP`], with jitter.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(25);
const BATCH_PAUSE_CAP: std::time::Duration = std::time::Duration::from_millis(400);

/// The pause before retry round `round` (1 for the first retry): bounded,
/// and jittered so that containers throttled together spread out.
fn batch_pause(round: u32) -> std::time::Duration {
    let pause = BATCH_PAUSE.saturating_mul(1 << round.saturating_sub(1).min(16));
    jittered(pause.min(BATCH_PAUSE_CAP) / 2).min(BATCH_PAUSE_CAP)
}

/// Reads `keys` with `fetch` (which answers the items found and the keys left
/// unprocessed), asking again for unprocessed keys after a growing, jittered
/// pause (DynamoDB leaves keys unprocessed when it throttles: asking again at
/// once only adds load). After [`BATCH_ROUNDS`] rounds it gives up: the
/// webhook then answers 503 and Meta retries the delivery later, rather than
/// the handler spinning until its timeout.
async fn follow_unprocessed<F, Fut, S, SFut>(
    keys: Vec<Item>,
    mut fetch: F,
    mut sleep: S,
) -> Result<Vec<Item>, StoreError>
where
    F: FnMut(Vec<Item>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<Item>, Vec<Item>), StoreError>>,
    S: FnMut(std::time::Duration) -> SFut,
    SFut: std::future::Future<Output = ()>,
{
    let mut items = Vec::new();
    let mut pending = keys;
    for round in 0..BATCH_ROUNDS {
        if round > 0 {
            sleep(batch_pause(round)).await;
        }
        let (found, unprocessed) = fetch(pending).await?;
        items.extend(found);
        if unprocessed.is_empty() {
            return Ok(items);
        }
        pending = unprocessed;
    }
    tracing::warn!(
        keys_left = pending.len(),
        rounds = BATCH_ROUNDS,
        "owner lookup: keys still unprocessed, giving up"
    );
    Err(StoreError(format!(
        "{} keys still unprocessed after {BATCH_ROUNDS} rounds",
        pending.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::s;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn key(n: usize) -> Item {
        Item::from([
            ("pk".to_string(), s(format!("ACCOUNT#{n}"))),
            ("sk".to_string(), s("OWNER")),
        ])
    }

    /// A fake `BatchGetItem` that leaves every key unprocessed `throttled`
    /// times, then answers them all; it counts its calls and fails the test
    /// if it is asked more than 50 times (a tight loop).
    type Answer = std::future::Ready<Result<(Vec<Item>, Vec<Item>), StoreError>>;

    fn fake(throttled: usize) -> (Arc<Mutex<usize>>, impl FnMut(Vec<Item>) -> Answer) {
        let calls = Arc::new(Mutex::new(0));
        let seen = calls.clone();
        let fetch = move |keys: Vec<Item>| {
            let mut n = seen.lock().unwrap();
            *n += 1;
            assert!(*n <= 50, "unprocessed keys retried in a tight loop");
            std::future::ready(Ok(if *n <= throttled {
                (Vec::new(), keys)
            } else {
                (keys, Vec::new())
            }))
        };
        (calls, fetch)
    }

    fn recorder() -> (
        Arc<Mutex<Vec<Duration>>>,
        impl FnMut(Duration) -> std::future::Ready<()>,
    ) {
        let pauses = Arc::new(Mutex::new(Vec::new()));
        let seen = pauses.clone();
        (pauses, move |d| {
            seen.lock().unwrap().push(d);
            std::future::ready(())
        })
    }

    #[tokio::test]
    async fn unprocessed_keys_are_asked_again_after_growing_jittered_pauses() {
        let (calls, fetch) = fake(3);
        let (pauses, sleep) = recorder();
        let items = follow_unprocessed(vec![key(1), key(2)], fetch, sleep)
            .await
            .unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(*calls.lock().unwrap(), 4);
        let pauses = pauses.lock().unwrap().clone();
        assert_eq!(pauses.len(), 3, "one pause before each retry");
        for (round, pause) in pauses.iter().enumerate() {
            let ceiling = (BATCH_PAUSE * (1 << round)).min(BATCH_PAUSE_CAP);
            assert!(
                *pause >= ceiling / 2 && *pause <= ceiling,
                "{round}: {pause:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_table_that_keeps_throttling_is_given_up_on_within_bounds() {
        let (calls, fetch) = fake(usize::MAX);
        let (pauses, sleep) = recorder();
        let result = follow_unprocessed(vec![key(1)], fetch, sleep).await;
        assert!(result.is_err());
        assert_eq!(*calls.lock().unwrap(), BATCH_ROUNDS as usize);
        let waited: Duration = pauses.lock().unwrap().iter().sum();
        assert!(waited > Duration::ZERO);
        assert!(
            waited <= Duration::from_secs(2),
            "{waited:?}: the webhook answers Meta in time"
        );
    }

    #[test]
    fn pauses_are_jittered() {
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| batch_pause(5)).collect();
        assert!(distinct.len() > 1);
        assert!(distinct.iter().all(|p| *p <= BATCH_PAUSE_CAP));
    }
}
