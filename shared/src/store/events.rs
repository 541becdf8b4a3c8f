//! The outbox: webhook items and lifecycle changes, one item per event. The
//! table's stream is the service's output.

use aws_sdk_dynamodb::types::Put;
use aws_sdk_dynamodb::Client;
use rand::Rng;
use time::OffsetDateTime;

use super::{epoch, s, written, Item, StoreError};
use crate::clock::rfc3339_millis;
use crate::connection::{Connection, Lifecycle};
use crate::event_kind::EventKind;
use crate::provider::Provider;
use aws_sdk_dynamodb::types::AttributeValue;

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Stable for webhook items (the same Meta item gives the same id).
    pub event_id: String,
    pub kind: EventKind,
    pub provider: Option<Provider>,
    pub account_id: String,
    pub user_id: Option<String>,
    /// Meta's timestamp, or ours for lifecycle events. Both are written in
    /// one form, RFC 3339 UTC with milliseconds (`rfc3339_millis`).
    pub occurred_at: OffsetDateTime,
    pub received_at: OffsetDateTime,
    /// JSON text: the item as Meta sent it, or the connection summary.
    pub payload: String,
    pub expires_at: OffsetDateTime,
}

impl Event {
    /// A lifecycle event (`connection.connected`, ...) about `conn`.
    pub fn lifecycle(
        kind: Lifecycle,
        conn: &Connection,
        now: OffsetDateTime,
        retention: std::time::Duration,
    ) -> Self {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        Self {
            event_id: format!("lc_{}", hex::encode(id)),
            kind: EventKind::Lifecycle(kind),
            provider: Some(conn.provider),
            account_id: conn.account_id.clone(),
            user_id: Some(conn.user_id.clone()),
            occurred_at: now,
            received_at: now,
            payload: conn.view().to_json(),
            expires_at: now + retention,
        }
    }

    /// `connection.needs_reauth`: `conn` as it is once Meta said its token
    /// is dead.
    pub fn needs_reauth(
        conn: &Connection,
        now: OffsetDateTime,
        retention: std::time::Duration,
    ) -> Self {
        let mut after = conn.clone();
        after.status = crate::connection::Status::NeedsReauth;
        Self::lifecycle(Lifecycle::NeedsReauth, &after, now, retention)
    }

    pub(crate) fn to_item(&self) -> Item {
        let mut item = Item::from([
            ("event_id".into(), s(&self.event_id)),
            ("kind".into(), s(self.kind.as_str())),
            ("account_id".into(), s(&self.account_id)),
            ("occurred_at".into(), s(rfc3339_millis(self.occurred_at))),
            ("received_at".into(), s(rfc3339_millis(self.received_at))),
            ("payload".into(), s(&self.payload)),
            ("expires_at".into(), epoch(self.expires_at)),
        ]);
        if let Some(p) = self.provider {
            item.insert("provider".into(), s(p.as_str()));
        }
        if let Some(u) = &self.user_id {
            item.insert("user_id".into(), s(u));
        }
        item
    }

    /// A transactional put that never overwrites an event already stored.
    pub fn to_put(&self, table: &str) -> Put {
        Put::builder()
            .table_name(table)
            .set_item(Some(self.to_item()))
            .condition_expression("attribute_not_exists(event_id)")
            .build()
            .expect("table and item are set")
    }
}

#[derive(Clone)]
pub struct EventStore {
    client: Client,
    table: String,
}

impl EventStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Stores every event not stored before (conditional puts, `concurrency`
    /// at a time). Returns how many were new. Fails if any write failed: the
    /// caller must not acknowledge the delivery then (what was written stays,
    /// and a retry skips it).
    pub async fn put_all(&self, events: &[Event], concurrency: usize) -> Result<usize, StoreError> {
        let mut pending = events.iter().cloned();
        let mut running = tokio::task::JoinSet::new();
        let mut new = 0;
        let mut failure = None;
        loop {
            while failure.is_none() && running.len() < concurrency.max(1) {
                let Some(event) = pending.next() else { break };
                let store = self.clone();
                running.spawn(async move { store.put(&event).await });
            }
            match running.join_next().await {
                None => break,
                Some(Ok(Ok(true))) => new += 1,
                Some(Ok(Ok(false))) => {}
                Some(Ok(Err(e))) => failure = Some(e),
                Some(Err(join)) => failure = Some(StoreError(join.to_string())),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(new),
        }
    }

    /// One page of the ids of an account's events (data deletion), from
    /// `start` (`None`: the first page), and where the next page starts
    /// (`None`: that was the last).
    pub async fn account_event_ids(
        &self,
        account_id: &str,
        start: Option<Item>,
        limit: i32,
    ) -> Result<(Vec<AttributeValue>, Option<Item>), StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by_account")
            .key_condition_expression("account_id = :a")
            .expression_attribute_values(":a", s(account_id))
            .set_exclusive_start_key(start)
            .limit(limit)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let ids = page
            .items()
            .iter()
            .filter_map(|i| i.get("event_id").cloned())
            .collect();
        Ok((ids, page.last_evaluated_key))
    }

    /// Deletes these events: batches of 25, `concurrency` batches in flight,
    /// what DynamoDB leaves unprocessed retried after a growing, jittered
    /// pause (`backoff`). Fails when a batch fails, or when items are still
    /// unprocessed after every pause: what was deleted stays deleted, and a
    /// retry deletes the rest.
    pub async fn delete_ids(
        &self,
        ids: &[AttributeValue],
        concurrency: usize,
        backoff: &[std::time::Duration],
    ) -> Result<usize, StoreError> {
        use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
        let batches: Vec<Vec<WriteRequest>> = ids
            .chunks(25)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|id| {
                        WriteRequest::builder()
                            .delete_request(
                                DeleteRequest::builder()
                                    .key("event_id", id.clone())
                                    .build()
                                    .expect("key is set"),
                            )
                            .build()
                    })
                    .collect()
            })
            .collect();
        let mut pending = batches.into_iter();
        let mut running = tokio::task::JoinSet::new();
        let mut failure = None;
        loop {
            while failure.is_none() && running.len() < concurrency.max(1) {
                let Some(batch) = pending.next() else { break };
                let store = self.clone();
                let backoff = backoff.to_vec();
                running.spawn(async move { store.delete_batch(batch, &backoff).await });
            }
            match running.join_next().await {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => failure = Some(e),
                Some(Err(join)) => failure = Some(StoreError(join.to_string())),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(ids.len()),
        }
    }

    async fn delete_batch(
        &self,
        mut writes: Vec<aws_sdk_dynamodb::types::WriteRequest>,
        backoff: &[std::time::Duration],
    ) -> Result<(), StoreError> {
        let mut pauses = backoff.iter();
        loop {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, writes)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            writes = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if writes.is_empty() {
                return Ok(());
            }
            let Some(pause) = pauses.next() else {
                return Err(StoreError(format!(
                    "{} deletes still unprocessed after {} retries",
                    writes.len(),
                    backoff.len()
                )));
            };
            tokio::time::sleep(jittered(*pause)).await;
        }
    }

    /// Stores the event unless one with the same id exists. `Ok(false)`: it
    /// was already there.
    /// A stored event's attributes (a strongly consistent read); `None`
    /// when it is gone (expired or deleted).
    pub async fn get_item(&self, event_id: &str) -> Result<Option<Item>, StoreError> {
        let key = Item::from([("event_id".to_string(), s(event_id))]);
        super::get_consistent(&self.client, &self.table, key).await
    }

    pub async fn put(&self, event: &Event) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(event.to_item()))
            .condition_expression("attribute_not_exists(event_id)")
            .send()
            .await;
        written(result)
    }
}

/// `pause` give or take a quarter, so batches that were throttled together
/// don't all come back at once.
fn jittered(pause: std::time::Duration) -> std::time::Duration {
    let quarter = pause / 4;
    let spread = rand::RngExt::random_range(&mut rand::rng(), 0..=2 * quarter.as_micros() as u64);
    pause - quarter + std::time::Duration::from_micros(spread)
}

/// The pauses before each retry of unprocessed deletes: doubling from
/// `first`, capped at `max`, `retries` of them.
pub fn backoff(
    first: std::time::Duration,
    max: std::time::Duration,
    retries: usize,
) -> Vec<std::time::Duration> {
    (0..retries)
        .map(|i| first.saturating_mul(1u32 << i.min(20)).min(max))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unprocessed_deletes_back_off_doubling_up_to_a_cap() {
        let pauses = backoff(Duration::from_millis(50), Duration::from_secs(2), 8);
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        for p in &pauses {
            for _ in 0..50 {
                let j = jittered(*p);
                assert!(j >= *p - *p / 4 && j <= *p + *p / 4, "{j:?} around {p:?}");
            }
        }
    }
}
