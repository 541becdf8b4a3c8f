//! `deliver`'s tables and queues in memory. The tables keep DynamoDB's
//! conditions: health and lane marks only on a stored endpoint, a failing
//! endpoint disabled once, a replay page claimed only from the place it was
//! read at, given back only by its claimer. The queues keep what was sent
//! where, with its `DelaySeconds`, and the messages hidden.

use serde_json::Value;
use shared::outbound::attempt::Attempt;
use shared::outbound::endpoint::{DisabledReason, Endpoint};
use shared::outbound::lane::Lane;
use shared::outbound::replay::{ReplayFilter, ReplayJob};
use shared::store::{Event, StoreError};
use shared::testing::InMemory;
use time::OffsetDateTime;

use crate::message::AttemptMessage;
use crate::queue::{QueueError, Queues, To};
use crate::store::{DeliverStore, EventItem};

#[derive(Default)]
pub struct Tables {
    pub endpoints: Vec<Endpoint>,
    pub attempts: Vec<Attempt>,
    pub replays: Vec<ReplayJob>,
    /// The events table as the webhook and lifecycle writers left it.
    pub events: Vec<EventItem>,
    /// The events `deliver` itself wrote (`webhook_endpoint.disabled`).
    pub written: Vec<Event>,
}

/// Cloned by the test, which reads the tables after a call.
pub type Memory = InMemory<Tables>;

impl Tables {
    pub fn endpoint(&self, id: &str) -> Endpoint {
        let found = self.endpoints.iter().find(|e| e.id == id);
        found.cloned().expect("a stored endpoint")
    }

    fn find(&mut self, id: &str) -> Option<&mut Endpoint> {
        self.endpoints.iter_mut().find(|e| e.id == id)
    }

    fn job(&mut self, id: &str) -> Option<&mut ReplayJob> {
        self.replays.iter_mut().find(|j| j.id == id)
    }
}

fn event_id(item: &EventItem) -> &str {
    item.get("event_id")
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

impl DeliverStore for Memory {
    async fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        let mut all = self.up()?.endpoints.clone();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        Ok(self.up()?.find(id).cloned())
    }

    async fn put_attempt(&self, a: &Attempt) -> Result<(), StoreError> {
        self.up()?.attempts.push(a.clone());
        Ok(())
    }

    async fn mark_failing(&self, id: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        if let Some(e) = self.up()?.find(id) {
            e.failing_since.get_or_insert(now);
        }
        Ok(())
    }

    async fn clear_failing(&self, id: &str) -> Result<(), StoreError> {
        if let Some(e) = self.up()?.find(id) {
            e.failing_since = None;
        }
        Ok(())
    }

    async fn set_slow(&self, id: &str, slow: bool, now: OffsetDateTime) -> Result<(), StoreError> {
        if let Some(e) = self.up()?.find(id) {
            e.slow_since = if slow {
                e.slow_since.or(Some(now))
            } else {
                None
            };
        }
        Ok(())
    }

    async fn disable_failing(
        &self,
        id: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tables = self.up()?;
        let Some(e) = tables.find(id) else {
            return Ok(false);
        };
        if e.disabled.is_some() || e.failing_since.is_none_or(|f| f > since) {
            return Ok(false);
        }
        e.disabled = Some(DisabledReason::Failing);
        e.updated_at = now;
        Ok(true)
    }

    async fn replay(&self, id: &str) -> Result<Option<ReplayJob>, StoreError> {
        Ok(self.up()?.job(id).cloned())
    }

    async fn advance_replay(
        &self,
        job: &ReplayJob,
        cursor: Option<String>,
        enqueued: u64,
    ) -> Result<bool, StoreError> {
        let mut tables = self.up()?;
        let Some(stored) = tables.job(&job.id) else {
            return Ok(false);
        };
        // A finished job keeps its (null) cursor: never "not started" again.
        let started = stored.cursor.is_some() || stored.complete;
        let at_read = match &job.cursor {
            Some(at) => stored.cursor.as_ref() == Some(at),
            None => !started,
        };
        if !at_read {
            return Ok(false);
        }
        stored.enqueued += enqueued;
        stored.complete = cursor.is_none();
        stored.cursor = cursor;
        Ok(true)
    }

    async fn rewind_replay(
        &self,
        job: &ReplayJob,
        claimed: Option<String>,
        enqueued: u64,
    ) -> Result<bool, StoreError> {
        let mut tables = self.up()?;
        let Some(stored) = tables.job(&job.id) else {
            return Ok(false);
        };
        let still_claimed = match &claimed {
            Some(c) => stored.cursor.as_ref() == Some(c),
            None => stored.complete,
        };
        if !still_claimed {
            return Ok(false);
        }
        stored.cursor.clone_from(&job.cursor);
        stored.enqueued -= enqueued;
        stored.complete = false;
        Ok(true)
    }

    async fn event(&self, id: &str) -> Result<Option<EventItem>, StoreError> {
        let tables = self.up()?;
        Ok(tables.events.iter().find(|e| event_id(e) == id).cloned())
    }

    async fn put_event(&self, event: &Event) -> Result<bool, StoreError> {
        let mut tables = self.up()?;
        let id = event.event_id.as_str();
        if tables.events.iter().any(|e| event_id(e) == id)
            || tables.written.iter().any(|e| e.event_id == id)
        {
            return Ok(false);
        }
        tables.written.push(event.clone());
        Ok(true)
    }

    /// Scans in event id order: `limit` items after `cursor`, and the last
    /// one's id when more are left.
    async fn scan_events(
        &self,
        filter: &ReplayFilter,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<EventItem>, Option<String>), StoreError> {
        let tables = self.up()?;
        let mut after: Vec<&EventItem> = (tables.events.iter())
            .filter(|e| cursor.is_none_or(|c| event_id(e) > c))
            .collect();
        after.sort_by_key(|e| event_id(e));
        let limit = usize::try_from(limit).unwrap_or_default();
        let more = after.len() > limit;
        after.truncate(limit);
        let next = more.then(|| after.last().map(|e| event_id(e).to_string()));
        let taken = after.into_iter().filter(|e| filter.takes(e)).cloned();
        Ok((taken.collect(), next.flatten()))
    }
}

/// A message sent: where, its body, and its `DelaySeconds` (`None`: sent
/// without one).
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub to: To,
    pub body: Value,
    pub delay: Option<i32>,
}

#[derive(Default)]
pub struct Sqs {
    pub sent: Vec<Sent>,
    /// Messages hidden until due: their lane, receipt handle and seconds.
    pub hidden: Vec<(Lane, String, i32)>,
}

/// The queues; taken down on their own (`set_down`).
pub type MemoryQueues = InMemory<Sqs>;

impl Sqs {
    /// The attempt messages sent to `to`, each with its delay.
    pub fn attempts(&self, to: To) -> Vec<(AttemptMessage, Option<i32>)> {
        let to_there = self.sent.iter().filter(|s| s.to == to);
        to_there
            .filter_map(|s| Some((serde_json::from_value(s.body.clone()).ok()?, s.delay)))
            .collect()
    }
}

fn queues_up(q: &MemoryQueues) -> Result<std::sync::MutexGuard<'_, Sqs>, QueueError> {
    q.up().map_err(|_| QueueError("the queue is down".into()))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).expect("a JSON message")
}

impl Queues for MemoryQueues {
    async fn send_batch(&self, lane: Lane, batch: &[(String, i32)]) -> Result<(), QueueError> {
        assert!(batch.len() <= crate::queue::MAX_BATCH, "SQS takes 10");
        let mut q = queues_up(self)?;
        for (body, delay) in batch {
            let to = To::Lane(lane);
            let (body, delay) = (json(body), Some(*delay));
            q.sent.push(Sent { to, body, delay });
        }
        Ok(())
    }

    async fn send(&self, to: To, body: String) -> Result<(), QueueError> {
        let body = json(&body);
        queues_up(self)?.sent.push(Sent {
            to,
            body,
            delay: None,
        });
        Ok(())
    }

    async fn change_visibility(
        &self,
        lane: Lane,
        receipt_handle: &str,
        seconds: i32,
    ) -> Result<(), QueueError> {
        let hidden = (lane, receipt_handle.to_string(), seconds);
        queues_up(self)?.hidden.push(hidden);
        Ok(())
    }
}
