//! Replays: stored events of a time range re-delivered with their original
//! `webhook-id`, as a resumable job (`pk = "replay"` in the endpoints table):
//! `admin` counts and creates it, `deliver` works through the events table a
//! page per queue message, keeping its place in the job.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use super::filter::matches;
use super::store::EndpointStore;
use crate::clock::rfc3339_millis;
use crate::store::{epoch, get_n, get_s, item_key, n, s, written, Item, StoreError};

const REPLAY_PK: &str = "replay";
/// How long a replay job's record is kept.
pub const JOB_RETENTION: Duration = Duration::days(14);

/// What a replay re-delivers.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayFilter {
    pub endpoint_id: Option<String>,
    pub account_id: Option<String>,
    pub kinds: Option<Vec<String>>,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
}

/// `since` after `until`, or further back than events are kept.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid_range")]
pub struct InvalidRange;

/// Whether the range can be replayed at `now` with events kept `retention`.
pub fn check_range(
    since: OffsetDateTime,
    until: OffsetDateTime,
    now: OffsetDateTime,
    retention: Duration,
) -> Result<(), InvalidRange> {
    if since > until || since < now - retention {
        Err(InvalidRange)
    } else {
        Ok(())
    }
}

impl ReplayFilter {
    /// Whether a stored event (its attributes) is in the replay.
    pub fn takes(&self, item: &Item) -> bool {
        let (Some(kind), Some(account), Some(at)) = (
            get_s(item, "kind"),
            get_s(item, "account_id"),
            get_s(item, "occurred_at"),
        ) else {
            return false;
        };
        let accounts = self.account_id.clone().map(|a| vec![a]);
        at >= rfc3339_millis(self.since)
            && at <= rfc3339_millis(self.until)
            && matches(self.kinds.as_deref(), accounts.as_deref(), &kind, &account)
    }
}

/// A replay job as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayJob {
    pub id: String,
    pub filter: ReplayFilter,
    pub events: u64,
    pub enqueued: u64,
    /// The last event id scanned (`None`: not started).
    pub cursor: Option<String>,
    pub complete: bool,
}

impl ReplayJob {
    pub fn view(&self) -> Value {
        json!({
            "replay_id": self.id,
            "status": if self.complete { "complete" } else { "running" },
            "events": self.events,
            "enqueued": self.enqueued,
        })
    }
}

fn opt(v: &Option<String>) -> AttributeValue {
    v.as_ref().map_or(AttributeValue::Null(true), s)
}

fn job_item(j: &ReplayJob, now: OffsetDateTime) -> Item {
    let mut item = item_key(REPLAY_PK.into(), &j.id);
    let kinds = j
        .filter
        .kinds
        .as_ref()
        .map(|k| serde_json::Value::from(k.clone()).to_string());
    item.extend([
        ("endpoint_id".into(), opt(&j.filter.endpoint_id)),
        ("account_id".into(), opt(&j.filter.account_id)),
        ("kinds".into(), opt(&kinds)),
        ("since".into(), epoch(j.filter.since)),
        ("until".into(), epoch(j.filter.until)),
        ("events".into(), n(j.events)),
        ("enqueued".into(), n(j.enqueued)),
        ("complete".into(), AttributeValue::Bool(j.complete)),
        ("expires_at".into(), epoch(now + JOB_RETENTION)),
    ]);
    item
}

fn parse_job(item: &Item) -> Option<ReplayJob> {
    let time = |k| OffsetDateTime::from_unix_timestamp(get_n(item, k)?).ok();
    Some(ReplayJob {
        id: get_s(item, "sk")?,
        filter: ReplayFilter {
            endpoint_id: get_s(item, "endpoint_id"),
            account_id: get_s(item, "account_id"),
            kinds: get_s(item, "kinds").and_then(|k| serde_json::from_str(&k).ok()),
            since: time("since")?,
            until: time("until")?,
        },
        events: u64::try_from(get_n(item, "events")?).ok()?,
        enqueued: u64::try_from(get_n(item, "enqueued")?).ok()?,
        cursor: get_s(item, "cursor"),
        complete: matches!(item.get("complete"), Some(AttributeValue::Bool(true))),
    })
}

impl EndpointStore {
    pub async fn put_replay(&self, j: &ReplayJob, now: OffsetDateTime) -> Result<(), StoreError> {
        let put = self.client().put_item().table_name(self.table());
        let sent = put.set_item(Some(job_item(j, now))).send().await;
        sent.map(drop).map_err(StoreError::from_sdk)
    }

    pub async fn replay(&self, id: &str) -> Result<Option<ReplayJob>, StoreError> {
        let key = item_key(REPLAY_PK.into(), id);
        let item = crate::store::get_consistent(self.client(), self.table(), key).await?;
        Ok(item.as_ref().and_then(parse_job))
    }

    /// Takes back a job whose start could not be sent (`admin`), so that
    /// the caller's retry makes the only job. Only while no page of it was
    /// claimed: `false` when `deliver` has worked it already (the start went
    /// out after all), and it runs on.
    pub async fn withdraw_replay(&self, id: &str) -> Result<bool, StoreError> {
        let req = self
            .client()
            .delete_item()
            .table_name(self.table())
            .set_key(Some(item_key(REPLAY_PK.into(), id)))
            .condition_expression("attribute_not_exists(#cursor) AND #done = :no")
            .expression_attribute_names("#cursor", "cursor")
            .expression_attribute_names("#done", "complete")
            .expression_attribute_values(":no", AttributeValue::Bool(false));
        written(req.send().await)
    }

    /// Records a page done: its last event id, what it enqueued, and whether
    /// it was the last. Only from the place `job` was read at (a duplicate
    /// message working the same page loses), and only while the job is
    /// stored (one withdrawn meanwhile is not written back): `false` then.
    pub async fn advance_replay(
        &self,
        job: &ReplayJob,
        cursor: Option<String>,
        enqueued: u64,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(item_key(REPLAY_PK.into(), &job.id)))
            .update_expression("SET #enq = #enq + :n, #done = :done, #cursor = :next")
            .expression_attribute_names("#enq", "enqueued")
            .expression_attribute_names("#done", "complete")
            .expression_attribute_names("#cursor", "cursor")
            .expression_attribute_values(":n", n(enqueued))
            .expression_attribute_values(":done", AttributeValue::Bool(cursor.is_none()))
            .expression_attribute_values(":next", opt(&cursor));
        req = match &job.cursor {
            Some(at) => req
                .condition_expression("#cursor = :at")
                .expression_attribute_values(":at", s(at)),
            None => {
                req.condition_expression("attribute_exists(pk) AND attribute_not_exists(#cursor)")
            }
        };
        written(req.send().await)
    }
}

impl EndpointStore {
    /// Gives back a page claimed by [`Self::advance_replay`] whose attempts
    /// could not be enqueued: the job's place returns to where `job` was
    /// read, unless it moved on since. `false` then.
    pub async fn rewind_replay(
        &self,
        job: &ReplayJob,
        claimed: Option<String>,
        enqueued: u64,
    ) -> Result<bool, StoreError> {
        let (set, remove) = match &job.cursor {
            Some(_) => ("SET #cursor = :at, ", ""),
            None => ("SET ", " REMOVE #cursor"),
        };
        let mut req = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(item_key(REPLAY_PK.into(), &job.id)))
            .update_expression(format!("{set}#enq = #enq - :n, #done = :f{remove}"))
            .expression_attribute_names("#enq", "enqueued")
            .expression_attribute_names("#done", "complete")
            .expression_attribute_names("#cursor", "cursor")
            .expression_attribute_values(":n", n(enqueued))
            .expression_attribute_values(":f", AttributeValue::Bool(false));
        if let Some(at) = &job.cursor {
            req = req.expression_attribute_values(":at", s(at));
        }
        req = match &claimed {
            Some(c) => req
                .condition_expression("#cursor = :claimed")
                .expression_attribute_values(":claimed", s(c)),
            None => req
                .condition_expression("#done = :t")
                .expression_attribute_values(":t", AttributeValue::Bool(true)),
        };
        written(req.send().await)
    }
}

/// One page of the events table from after `cursor`: the events the filter
/// takes, and the last event id scanned (`None`: that was the last page).
pub async fn scan_events(
    client: &Client,
    table: &str,
    filter: &ReplayFilter,
    cursor: Option<&str>,
    limit: i32,
) -> Result<(Vec<Item>, Option<String>), StoreError> {
    let start = cursor.map(|c| HashMap::from([("event_id".to_string(), s(c))]));
    let page = client
        .scan()
        .table_name(table)
        .set_exclusive_start_key(start)
        .limit(limit)
        .send()
        .await
        .map_err(StoreError::from_sdk)?;
    let next = page.last_evaluated_key().and_then(|k| get_s(k, "event_id"));
    let items = page
        .items()
        .iter()
        .filter(|i| filter.takes(i))
        .cloned()
        .collect();
    Ok((items, next))
}

/// How many stored events the filter takes (every page).
pub async fn count_events(
    client: &Client,
    table: &str,
    filter: &ReplayFilter,
) -> Result<u64, StoreError> {
    let mut count = 0;
    let mut cursor = None;
    loop {
        let (items, next) = scan_events(client, table, filter, cursor.as_deref(), 1000).await?;
        count += items.len() as u64;
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

    #[test]
    fn a_range_is_forward_and_within_retention() {
        let day = Duration::days(1);
        let keep = Duration::days(14);
        assert!(check_range(NOW - day, NOW, NOW, keep).is_ok());
        assert!(check_range(NOW - keep, NOW - keep, NOW, keep).is_ok());
        assert_eq!(check_range(NOW, NOW - day, NOW, keep), Err(InvalidRange));
        assert_eq!(
            check_range(NOW - keep - Duration::SECOND, NOW, NOW, keep),
            Err(InvalidRange)
        );
    }

    #[test]
    fn the_filter_takes_events_by_time_kind_and_account() {
        let item = |kind: &str, account: &str, at: &str| {
            Item::from([
                ("kind".to_string(), s(kind)),
                ("account_id".to_string(), s(account)),
                ("occurred_at".to_string(), s(at)),
            ])
        };
        let f = ReplayFilter {
            endpoint_id: None,
            account_id: Some("a1".into()),
            kinds: Some(vec!["connection.*".into()]),
            since: NOW - Duration::hours(1),
            until: NOW,
        };
        assert!(f.takes(&item(
            "connection.deleted",
            "a1",
            "2026-11-21T11:30:00.000Z"
        )));
        assert!(f.takes(&item(
            "connection.deleted",
            "a1",
            "2026-11-21T12:00:00.000Z"
        )));
        assert!(!f.takes(&item(
            "connection.deleted",
            "a1",
            "2026-11-21T12:00:00.001Z"
        )));
        assert!(!f.takes(&item(
            "connection.deleted",
            "a1",
            "2026-11-21T10:59:59.999Z"
        )));
        assert!(!f.takes(&item("messages", "a1", "2026-11-21T11:30:00.000Z")));
        assert!(!f.takes(&item(
            "connection.deleted",
            "a2",
            "2026-11-21T11:30:00.000Z"
        )));
        assert!(!f.takes(&Item::new()));
    }
}
