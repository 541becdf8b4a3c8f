//! Endpoints and attempts in the endpoints table (`pk`, `sk`, TTL
//! `expires_at`): every endpoint under `pk = "endpoint"` (at most 20, one
//! query lists them), a counter that keeps them at most 20, and each
//! endpoint's attempts under `pk = "attempts#<id>"`, newest last.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;

use super::attempt::{Attempt, AttemptError, ATTEMPT_RETENTION};
use super::endpoint::{DisabledReason, Endpoint, MAX_ENDPOINTS};
use crate::store::items::{parse_token, token_attr};
use crate::store::{
    epoch, get_consistent, get_n, get_s, get_time, item_key, n, s, transacted, written, Item,
    StoreError,
};
use crate::vault::SealedToken;

const ENDPOINT_PK: &str = "endpoint";
const COUNTER_PK: &str = "endpoint-count";

/// Created, or refused because there are 20 already.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    Created,
    TooMany,
}

#[derive(Clone)]
pub struct EndpointStore {
    client: Client,
    table: String,
}

fn json_list(v: &Option<Vec<String>>) -> AttributeValue {
    match v {
        Some(list) => s(serde_json::Value::from(list.clone()).to_string()),
        None => AttributeValue::Null(true),
    }
}

fn parse_list(item: &Item, key: &str) -> Option<Option<Vec<String>>> {
    match item.get(key)? {
        AttributeValue::Null(_) => Some(None),
        AttributeValue::S(text) => serde_json::from_str(text).ok().map(Some),
        _ => None,
    }
}

fn endpoint_item(e: &Endpoint) -> Item {
    let mut item = item_key(ENDPOINT_PK.into(), &e.id);
    item.extend([
        ("url".into(), s(&e.url)),
        ("kinds".into(), json_list(&e.kinds)),
        ("accounts".into(), json_list(&e.accounts)),
        ("description".into(), s(&e.description)),
        ("created_at".into(), epoch(e.created_at)),
        ("updated_at".into(), epoch(e.updated_at)),
        ("token".into(), token_attr(&e.secret)),
    ]);
    if let Some(reason) = e.disabled {
        item.insert("disabled_reason".into(), s(reason.as_str()));
    }
    item
}

fn parse_endpoint(item: &Item) -> Option<Endpoint> {
    let previous = match item.get("previous") {
        Some(AttributeValue::M(m)) => Some((parse_token(m)?, get_time(m, "until")?)),
        _ => None,
    };
    Some(Endpoint {
        id: get_s(item, "sk")?,
        url: get_s(item, "url")?,
        kinds: parse_list(item, "kinds")?,
        accounts: parse_list(item, "accounts")?,
        description: get_s(item, "description").unwrap_or_default(),
        disabled: get_s(item, "disabled_reason").and_then(|r| DisabledReason::parse(&r)),
        created_at: get_time(item, "created_at")?,
        updated_at: get_time(item, "updated_at")?,
        failing_since: get_time(item, "failing_since"),
        slow_since: get_time(item, "slow_since"),
        secret: parse_token(item)?,
        previous_secret: previous,
    })
}

impl EndpointStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    pub(super) fn table(&self) -> &str {
        &self.table
    }

    fn counter_update(&self, delta: i64, guard: Option<&str>) -> TransactWriteItem {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(item_key(COUNTER_PK.into(), "-")))
            .update_expression("SET n = if_not_exists(n, :zero) + :delta")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":delta", n(delta));
        if let Some(condition) = guard {
            update = update
                .condition_expression(condition)
                .expression_attribute_values(":max", n(MAX_ENDPOINTS));
        }
        TransactWriteItem::builder()
            .update(update.build().expect("table, key and expression are set"))
            .build()
    }

    /// Stores a new endpoint unless there are [`MAX_ENDPOINTS`] already.
    pub async fn create(&self, e: &Endpoint) -> Result<Created, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(endpoint_item(e)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("table and item are set");
        let sent = self
            .client
            .transact_write_items()
            .transact_items(self.counter_update(1, Some("attribute_not_exists(n) OR n < :max")))
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        Ok(match transacted(sent)? {
            true => Created::Created,
            false => Created::TooMany,
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        let item = get_consistent(&self.client, &self.table, item_key(ENDPOINT_PK.into(), id));
        Ok(item.await?.as_ref().and_then(parse_endpoint))
    }

    /// Every endpoint, oldest first (ids are random: by `created_at`).
    pub async fn list(&self) -> Result<Vec<Endpoint>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(ENDPOINT_PK))
            .consistent_read(true);
        let items = crate::store::query_all(query, 1000).await?;
        let mut out: Vec<Endpoint> = items.iter().filter_map(parse_endpoint).collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// Writes what `PATCH` changes: never the secrets (a rotation writes
    /// them on its own, [`Self::rotate_secret`], so a `PATCH` read before a
    /// rotation cannot put the old secret back), nor the delivery health,
    /// which `deliver` keeps, except that re-enabling starts it afresh.
    /// `false`: the endpoint is gone.
    pub async fn save_settings(&self, e: &Endpoint, reenabled: bool) -> Result<bool, StoreError> {
        let mut expr = String::from(
            "SET #url = :url, kinds = :kinds, accounts = :accounts, description = :d, \
             updated_at = :u",
        );
        let mut remove = Vec::new();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(ENDPOINT_PK.into(), &e.id)))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#url", "url")
            .expression_attribute_values(":url", s(&e.url))
            .expression_attribute_values(":kinds", json_list(&e.kinds))
            .expression_attribute_values(":accounts", json_list(&e.accounts))
            .expression_attribute_values(":d", s(&e.description))
            .expression_attribute_values(":u", epoch(e.updated_at));
        match e.disabled {
            Some(reason) => {
                expr.push_str(", disabled_reason = :r");
                req = req.expression_attribute_values(":r", s(reason.as_str()));
            }
            None => remove.push("disabled_reason"),
        }
        if reenabled {
            remove.extend(["failing_since", "slow_since"]);
        }
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        written(req.update_expression(expr).send().await)
    }

    /// A rotation: `new` becomes the secret and `e`'s current one signs
    /// beside it until `until`, only if `e`'s secret is still the stored
    /// one. `false`: the endpoint is gone or another rotation came first
    /// (read it again).
    pub async fn rotate_secret(
        &self,
        e: &Endpoint,
        new: &SealedToken,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let previous = Item::from([
            ("token".into(), token_attr(&e.secret)),
            ("until".into(), epoch(until)),
        ]);
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(ENDPOINT_PK.into(), &e.id)))
            .update_expression("SET #token = :new, previous = :prev, updated_at = :u")
            .condition_expression("attribute_exists(pk) AND #token = :old")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":new", token_attr(new))
            .expression_attribute_values(":old", token_attr(&e.secret))
            .expression_attribute_values(":prev", AttributeValue::M(previous))
            .expression_attribute_values(":u", epoch(now))
            .send()
            .await;
        written(sent)
    }

    /// Deletes the endpoint (its attempts expire by TTL). `false`: no such.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(item_key(ENDPOINT_PK.into(), id)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .expect("table and key are set");
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(self.counter_update(-1, None))
            .send()
            .await;
        transacted(sent)
    }

    /// Records the first failure since the last success (kept if set).
    pub async fn mark_failing(&self, id: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(ENDPOINT_PK.into(), id)))
            .update_expression("SET failing_since = if_not_exists(failing_since, :now)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", epoch(now))
            .send()
            .await;
        written(sent).map(drop)
    }

    /// A success: the endpoint is healthy again.
    pub async fn clear_failing(&self, id: &str) -> Result<(), StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(ENDPOINT_PK.into(), id)))
            .update_expression("REMOVE failing_since")
            .condition_expression("attribute_exists(failing_since)")
            .send()
            .await;
        written(sent).map(drop)
    }

    /// Moves the endpoint's attempts to the slow lane (`true`) or back to
    /// the fast one (`false`); see `lane`.
    pub async fn set_slow(
        &self,
        id: &str,
        slow: bool,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(ENDPOINT_PK.into(), id)))
            .condition_expression("attribute_exists(pk)");
        let req = if slow {
            req.update_expression("SET slow_since = if_not_exists(slow_since, :now)")
                .expression_attribute_values(":now", epoch(now))
        } else {
            req.update_expression("REMOVE slow_since")
        };
        written(req.send().await).map(drop)
    }

    /// Disables an enabled endpoint failing since `since` or earlier.
    /// `true` only for the call that disabled it.
    pub async fn disable_failing(
        &self,
        id: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(ENDPOINT_PK.into(), id)))
            .update_expression("SET disabled_reason = :failing, updated_at = :now")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(disabled_reason) \
                 AND failing_since <= :since",
            )
            .expression_attribute_values(":failing", s(DisabledReason::Failing.as_str()))
            .expression_attribute_values(":now", epoch(now))
            .expression_attribute_values(":since", epoch(since))
            .send()
            .await;
        written(sent)
    }

    pub async fn put_attempt(&self, a: &Attempt) -> Result<(), StoreError> {
        let mut item = item_key(format!("attempts#{}", a.endpoint_id), &a.sort_key());
        item.extend([
            ("event_id".into(), s(&a.event_id)),
            ("attempt".into(), n(a.attempt)),
            ("at_ms".into(), n(a.at.unix_timestamp_nanos() / 1_000_000)),
            ("outcome".into(), s(a.outcome())),
            ("latency_ms".into(), n(a.latency_ms)),
            ("expires_at".into(), epoch(a.at + ATTEMPT_RETENTION)),
        ]);
        if let Some(status) = a.status {
            item.insert("status".into(), n(status));
        }
        if let Some(error) = a.error {
            item.insert("error".into(), s(error.as_str()));
        }
        if let Some(next) = a.next_attempt_at {
            item.insert("next_attempt_at".into(), epoch(next));
        }
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await;
        sent.map(drop).map_err(StoreError::from_sdk)
    }
}

/// Which attempts `GET .../attempts` lists.
#[derive(Clone, Debug, Default)]
pub struct AttemptQuery {
    pub event_id: Option<String>,
    /// `delivered` or `failed`.
    pub outcome: Option<String>,
    pub limit: usize,
    /// The sort key of the last attempt of the previous page.
    pub cursor: Option<String>,
}

impl EndpointStore {
    /// An endpoint's attempts, newest first, and the cursor of the next page.
    pub async fn attempts(
        &self,
        endpoint_id: &str,
        q: &AttemptQuery,
    ) -> Result<(Vec<Attempt>, Option<String>), StoreError> {
        let mut key = "pk = :pk".to_string();
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .scan_index_forward(false)
            .expression_attribute_values(":pk", s(format!("attempts#{endpoint_id}")));
        if let Some(cursor) = &q.cursor {
            key.push_str(" AND sk < :cursor");
            query = query.expression_attribute_values(":cursor", s(cursor));
        }
        let mut filters = Vec::new();
        if let Some(event_id) = &q.event_id {
            filters.push("event_id = :e");
            query = query.expression_attribute_values(":e", s(event_id));
        }
        if let Some(outcome) = &q.outcome {
            filters.push("outcome = :o");
            query = query.expression_attribute_values(":o", s(outcome));
        }
        if !filters.is_empty() {
            query = query.filter_expression(filters.join(" AND "));
        }
        let query = query.key_condition_expression(key);
        let mut items = crate::store::query_all(query, q.limit + 1).await?;
        let more = items.len() > q.limit;
        items.truncate(q.limit);
        let next = more
            .then(|| items.last().and_then(|i| get_s(i, "sk")))
            .flatten();
        let attempts = items
            .iter()
            .filter_map(|i| parse_attempt(endpoint_id, i))
            .collect();
        Ok((attempts, next))
    }
}

fn parse_attempt(endpoint_id: &str, item: &Item) -> Option<Attempt> {
    let at_ms = get_n(item, "at_ms")?;
    Some(Attempt {
        endpoint_id: endpoint_id.to_string(),
        event_id: get_s(item, "event_id")?,
        attempt: u32::try_from(get_n(item, "attempt")?).ok()?,
        at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000).ok()?,
        error: get_s(item, "error").and_then(|e| AttemptError::parse(&e)),
        status: get_n(item, "status").and_then(|s| u16::try_from(s).ok()),
        latency_ms: u64::try_from(get_n(item, "latency_ms")?).ok()?,
        next_attempt_at: get_time(item, "next_attempt_at"),
    })
}
