//! The proxy's DynamoDB state: per-account rate-limit blocks and idempotency
//! records (its own table, `GRAPH_TABLE`, TTL on `expires_at`), and the one
//! write it makes to a connection: `needs_reauth` when Meta says the token is
//! dead.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::erase::{account_key, ACCOUNT_KEY};
use crate::connection::{Connection, Status};
use crate::provider::Provider;
use crate::store::connections::{conn_sk, user_pk};
use crate::store::{epoch, get_n, get_s, n, s, transacted, written, Event, Item, StoreError};

mod limits;
pub use limits::{Bucket, Taken};

/// How long an idempotency record (and the answer it keeps) lives.
pub const IDEMPOTENCY_TTL: Duration = Duration::hours(24);

/// Stored answers above this size keep status and headers only: a DynamoDB
/// item holds at most 400 KB.
const MAX_STORED_BODY: usize = 300 * 1024;

/// Meta's answer as the proxy hands it back (and keeps it for replays).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

/// A block Meta put on an account.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub until: OffsetDateTime,
    /// Meta's error object (or usage) that caused it, shown to callers.
    pub meta: Value,
}

/// What an idempotency key says about a request.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// First use (or the last use expired): go ahead, then `finish`.
    Started,
    /// Answered before: hand back this answer.
    Replay(StoredAnswer),
    /// The first request with this key is still running.
    InProgress,
    /// The key was used for a different request.
    Reused,
    /// The first request's call to Meta timed out: whether Meta acted is
    /// unknown, so the key never sends again while the record lives.
    OutcomeUnknown,
}

/// An idempotency key, scoped to the connection as connected: its owner and
/// the instant it was connected (CONTRACT.md, "Proxy amendments"). A
/// connection deleted and made again, or by another user, has other records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdemKey<'a> {
    pub provider: Provider,
    pub account_id: &'a str,
    pub user_id: &'a str,
    pub connected_at: OffsetDateTime,
    /// The caller's key, as sent.
    pub key: &'a str,
}

impl IdemKey<'_> {
    /// The key itself is the caller's and may be anything: only a hash of
    /// it (with the owner and the connection instant) is kept.
    fn pk(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.user_id,
            &self.connected_at.unix_timestamp().to_string(),
            self.key,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let (provider, account) = (self.provider, self.account_id);
        format!("IDEM#{provider}#{account}#{}", hex::encode(h.finalize()))
    }
}

#[derive(Clone)]
pub struct GraphStore {
    client: Client,
    table: String,
    connections_table: String,
    events_table: String,
    /// What this container last saw of each bucket it took from.
    hints: limits::Hints,
}

fn rate_pk(provider: Provider, account_id: &str) -> String {
    format!("RATE#{provider}#{account_id}")
}

impl GraphStore {
    pub fn new(
        client: Client,
        table: impl Into<String>,
        connections_table: impl Into<String>,
        events_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            connections_table: connections_table.into(),
            events_table: events_table.into(),
            hints: limits::Hints::default(),
        }
    }

    /// The block on an account, if one is still in force at `now`.
    pub async fn block(
        &self,
        provider: Provider,
        account_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Block>, StoreError> {
        self.block_at(rate_pk(provider, account_id), now).await
    }

    async fn block_at(&self, pk: String, now: OffsetDateTime) -> Result<Option<Block>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(out.item.as_ref().and_then(|i| {
            let until = OffsetDateTime::from_unix_timestamp(get_n(i, "blocked_until")?).ok()?;
            let meta = get_s(i, "meta")
                .and_then(|m| serde_json::from_str(&m).ok())
                .unwrap_or(Value::Null);
            (until > now).then_some(Block { until, meta })
        }))
    }

    /// Records that Meta blocked an account until `block.until` (a later
    /// block never shortens an earlier one).
    pub async fn put_block(
        &self,
        provider: Provider,
        account_id: &str,
        block: &Block,
    ) -> Result<(), StoreError> {
        self.put_block_at(rate_pk(provider, account_id), block)
            .await
    }

    async fn put_block_at(&self, pk: String, block: &Block) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("blocked_until", epoch(block.until))
            .item("meta", s(block.meta.to_string()))
            .item("expires_at", epoch(block.until + Duration::hours(1)))
            .condition_expression("attribute_not_exists(pk) OR blocked_until <= :until")
            .expression_attribute_values(":until", epoch(block.until))
            .send()
            .await;
        written(result).map(drop)
    }

    /// Claims `(connection, key)` for a request with `fingerprint`. An
    /// in-flight claim older than `lease` (its Lambda died) may be taken over
    /// by the same request.
    pub async fn claim(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let pk = key.pk();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            // Lists the record under its account, for data deletion.
            .item(ACCOUNT_KEY, account_key(key.provider, key.account_id))
            .item("fingerprint", s(fingerprint))
            .item("state", s("in_flight"))
            .item("lease_until", epoch(now + lease))
            .item("created_at", epoch(now))
            .item("expires_at", epoch(now + IDEMPOTENCY_TTL))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now \
                 OR (#state = :in_flight AND lease_until <= :now AND fingerprint = :fp)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", epoch(now))
            .expression_attribute_values(":in_flight", s("in_flight"))
            .expression_attribute_values(":fp", s(fingerprint))
            .send()
            .await;
        if written(result)? {
            return Ok(Claim::Started);
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let Some(item) = out.item else {
            // Deleted meanwhile (released after a failure): the caller retries.
            return Ok(Claim::InProgress);
        };
        Ok(existing_claim(&item, fingerprint))
    }

    /// Keeps the answer to a claimed request for replays.
    pub async fn finish(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        let mut stored = serde_json::to_string(answer)?;
        if stored.len() > MAX_STORED_BODY {
            let note = "the original answer was too large to keep";
            let mut body = serde_json::Map::new();
            body.insert("note".into(), note.into());
            stored = serde_json::to_string(&StoredAnswer {
                body: body.into(),
                ..answer.clone()
            })?;
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key.pk()))
            .update_expression("SET #state = :done, answer = :answer REMOVE lease_until")
            .condition_expression("fingerprint = :fp")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":answer", s(stored))
            .expression_attribute_values(":fp", s(fingerprint))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }

    /// Keeps a claim whose call to Meta timed out as `outcome_unknown`: the
    /// same key is refused (never sent again) for the record's lifetime.
    pub async fn outcome_unknown(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key.pk()))
            .update_expression("SET #state = :unknown REMOVE lease_until")
            .condition_expression("#state = :in_flight AND fingerprint = :fp")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":unknown", s("outcome_unknown"))
            .expression_attribute_values(":in_flight", s("in_flight"))
            .expression_attribute_values(":fp", s(fingerprint))
            .send()
            .await;
        written(result).map(drop)
    }

    /// Gives a claim up (Meta could not be reached): the caller may retry.
    pub async fn release(&self, key: &IdemKey<'_>, fingerprint: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(key.pk()))
            .condition_expression("#state = :in_flight AND fingerprint = :fp")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_flight", s("in_flight"))
            .expression_attribute_values(":fp", s(fingerprint))
            .send()
            .await;
        written(result).map(drop)
    }

    /// Marks an `active` connection `needs_reauth` at once, with its event,
    /// and takes it out of the refresh index. `Ok(false)`: it had changed
    /// (already marked, reconnected, deleted): nothing written.
    pub async fn mark_needs_reauth(
        &self,
        conn: &Connection,
        event: &Event,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let update = Update::builder()
            .table_name(&self.connections_table)
            .key("pk", s(user_pk(&conn.user_id)))
            .key("sk", s(conn_sk(conn.provider, &conn.account_id)))
            .update_expression(
                "SET #status = :reauth, version = version + :one, updated_at = :now \
                 REMOVE due_bucket, due_at",
            )
            .condition_expression("version = :v AND #status = :active")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":reauth", s(Status::NeedsReauth.as_str()))
            .expression_attribute_values(":active", s(Status::Active.as_str()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":v", n(conn.version))
            .expression_attribute_values(":now", epoch(now))
            .build()
            .expect("complete update");
        let put: Put = event.to_put(&self.events_table);
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        transacted(result)
    }
}

/// What an existing record means for a request with `fingerprint`.
fn existing_claim(item: &Item, fingerprint: &str) -> Claim {
    if get_s(item, "fingerprint").as_deref() != Some(fingerprint) {
        return Claim::Reused;
    }
    match (get_s(item, "state").as_deref(), get_s(item, "answer")) {
        (Some("done"), Some(answer)) => serde_json::from_str(&answer)
            .map(Claim::Replay)
            .unwrap_or(Claim::InProgress),
        (Some("outcome_unknown"), _) => Claim::OutcomeUnknown,
        _ => Claim::InProgress,
    }
}

/// The identity of a request for idempotency: method, path, query and body.
pub fn request_fingerprint(
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: Option<&Value>,
) -> String {
    let mut q: Vec<&(String, String)> = query.iter().collect();
    q.sort();
    let canonical = serde_json::json!({
        "method": method.to_ascii_uppercase(),
        "path": path,
        "query": q,
        "body": body,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fingerprints_ignore_query_order_and_see_everything_else() {
        let q1 = vec![("a".to_string(), "1".to_string()), ("b".into(), "2".into())];
        let q2 = vec![("b".to_string(), "2".to_string()), ("a".into(), "1".into())];
        let body = json!({"recipient": {"id": "1"}, "message": {"text": "hi"}});
        let f = request_fingerprint("POST", "me/messages", &q1, Some(&body));
        assert_eq!(
            f,
            request_fingerprint("post", "me/messages", &q2, Some(&body))
        );
        let other = json!({"recipient": {"id": "1"}, "message": {"text": "hi!"}});
        assert_ne!(
            f,
            request_fingerprint("POST", "me/messages", &q1, Some(&other))
        );
        assert_ne!(
            f,
            request_fingerprint("DELETE", "me/messages", &q1, Some(&body))
        );
        assert_ne!(f, request_fingerprint("POST", "me/media", &q1, Some(&body)));
        assert_ne!(
            f,
            request_fingerprint("POST", "me/messages", &[], Some(&body))
        );
    }

    #[test]
    fn an_existing_record_replays_waits_or_refuses() {
        let answer = StoredAnswer {
            status: 200,
            headers: vec![("x-fb-trace-id".into(), "t".into())],
            body: json!({"message_id": "m"}),
        };
        let done = Item::from([
            ("fingerprint".into(), s("f")),
            ("state".into(), s("done")),
            ("answer".into(), s(serde_json::to_string(&answer).unwrap())),
        ]);
        assert_eq!(existing_claim(&done, "f"), Claim::Replay(answer));
        assert_eq!(existing_claim(&done, "g"), Claim::Reused);
        let running = Item::from([
            ("fingerprint".into(), s("f")),
            ("state".into(), s("in_flight")),
        ]);
        assert_eq!(existing_claim(&running, "f"), Claim::InProgress);
        assert_eq!(existing_claim(&running, "g"), Claim::Reused);
        let unknown = Item::from([
            ("fingerprint".into(), s("f")),
            ("state".into(), s("outcome_unknown")),
        ]);
        assert_eq!(existing_claim(&unknown, "f"), Claim::OutcomeUnknown);
        assert_eq!(existing_claim(&unknown, "g"), Claim::Reused);
    }

    fn key<'a>(user_id: &'a str, connected_at: i64, key: &'a str) -> IdemKey<'a> {
        IdemKey {
            provider: Provider::Instagram,
            account_id: "1",
            user_id,
            connected_at: OffsetDateTime::from_unix_timestamp(connected_at).unwrap(),
            key,
        }
    }

    #[test]
    fn only_a_hash_of_the_key_is_stored() {
        let pk = key("user-1", 1_795_000_000, "evt-123 secret-ish").pk();
        assert!(pk.starts_with("IDEM#instagram#1#"));
        assert!(!pk.contains("evt-123") && !pk.contains("user-1"));
    }

    #[test]
    fn a_key_belongs_to_the_owner_and_the_connection_as_connected() {
        let first = key("user-1", 1_795_000_000, "k").pk();
        assert_eq!(first, key("user-1", 1_795_000_000, "k").pk());
        assert_ne!(first, key("user-2", 1_795_000_000, "k").pk());
        assert_ne!(first, key("user-1", 1_795_000_001, "k").pk());
        assert_ne!(first, key("user-1", 1_795_000_000, "k2").pk());
        // Parts can't slide into each other.
        assert_ne!(key("ab", 1, "c").pk(), key("a", 1, "bc").pk());
    }
}
