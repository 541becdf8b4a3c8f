//! The admin routes' store in memory: endpoints (at most 20), their
//! attempts, the stored events replays count, replay jobs, and the replays
//! started on the delivery queue. The writes keep DynamoDB's conditions:
//! a missing endpoint is not written, a rotation only from the stored
//! secret, a `PATCH` never writes the secrets, a job is withdrawn only
//! while no page of it was claimed.

use shared::aws_sdk_dynamodb::types::AttributeValue;
use shared::outbound::attempt::Attempt;
use shared::outbound::endpoint::{Endpoint, MAX_ENDPOINTS};
use shared::outbound::replay::{ReplayFilter, ReplayJob};
use shared::outbound::store::{AttemptQuery, Created};
use shared::store::StoreError;
use shared::testing::InMemory;
use shared::vault::SealedToken;
use time::OffsetDateTime;

use crate::AdminStore;

/// A stored event as the events table holds it (what a replay's filter
/// reads).
pub type EventItem = std::collections::HashMap<String, AttributeValue>;

#[derive(Default)]
pub struct Tables {
    pub endpoints: Vec<Endpoint>,
    pub attempts: Vec<Attempt>,
    pub events: Vec<EventItem>,
    /// Each job and when it was stored.
    pub replays: Vec<(ReplayJob, OffsetDateTime)>,
    /// The replay ids put on the delivery queue, in order.
    pub queued: Vec<String>,
    /// Only the delivery queue fails.
    pub queue_down: bool,
    /// The queue fails to answer but the start went out: `deliver` works
    /// the job's first page meanwhile.
    pub started_anyway: bool,
    /// Withdrawing a job fails.
    pub withdraw_down: bool,
}

/// Cloned by the test, which reads the tables after a call.
pub type Memory = InMemory<Tables>;

impl Tables {
    /// The endpoint stored under `id`.
    pub fn endpoint(&self, id: &str) -> Option<Endpoint> {
        self.endpoints.iter().find(|e| e.id == id).cloned()
    }

    fn find(&mut self, id: &str) -> Option<&mut Endpoint> {
        self.endpoints.iter_mut().find(|e| e.id == id)
    }
}

/// The attempts' page as the query reads it: newest first by sort key,
/// after the cursor, filtered, one more than the limit to know if more.
fn page(tables: &Tables, endpoint_id: &str, q: &AttemptQuery) -> (Vec<Attempt>, Option<String>) {
    let mut mine: Vec<&Attempt> = (tables.attempts.iter())
        .filter(|a| a.endpoint_id == endpoint_id)
        .filter(|a| q.cursor.as_ref().is_none_or(|c| a.sort_key() < *c))
        .filter(|a| q.event_id.as_ref().is_none_or(|e| a.event_id == *e))
        .filter(|a| q.outcome.as_deref().is_none_or(|o| a.outcome() == o))
        .collect();
    mine.sort_by_key(|a| std::cmp::Reverse(a.sort_key()));
    let more = mine.len() > q.limit;
    mine.truncate(q.limit);
    let next = more.then(|| mine.last().map(|a| a.sort_key())).flatten();
    (mine.into_iter().cloned().collect(), next)
}

impl AdminStore for Memory {
    async fn create(&self, e: &Endpoint) -> Result<Created, StoreError> {
        let mut tables = self.up()?;
        let full = tables.endpoints.len() >= MAX_ENDPOINTS as usize;
        if full || tables.find(&e.id).is_some() {
            return Ok(Created::TooMany);
        }
        tables.endpoints.push(e.clone());
        Ok(Created::Created)
    }

    async fn list(&self) -> Result<Vec<Endpoint>, StoreError> {
        let mut all = self.up()?.endpoints.clone();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    async fn get(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        Ok(self.up()?.find(id).cloned())
    }

    async fn save_settings(&self, e: &Endpoint, reenabled: bool) -> Result<bool, StoreError> {
        let mut tables = self.up()?;
        let Some(stored) = tables.find(&e.id) else {
            return Ok(false);
        };
        stored.url.clone_from(&e.url);
        stored.kinds.clone_from(&e.kinds);
        stored.accounts.clone_from(&e.accounts);
        stored.description.clone_from(&e.description);
        stored.disabled = e.disabled;
        stored.updated_at = e.updated_at;
        if reenabled {
            stored.failing_since = None;
            stored.slow_since = None;
        }
        Ok(true)
    }

    async fn rotate_secret(
        &self,
        e: &Endpoint,
        new: &SealedToken,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tables = self.up()?;
        let Some(stored) = tables.find(&e.id).filter(|s| s.secret == e.secret) else {
            return Ok(false);
        };
        stored.previous_secret = Some((e.secret.clone(), until));
        stored.secret = new.clone();
        stored.updated_at = now;
        Ok(true)
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut tables = self.up()?;
        let before = tables.endpoints.len();
        tables.endpoints.retain(|e| e.id != id);
        Ok(tables.endpoints.len() < before)
    }

    async fn attempts(
        &self,
        endpoint_id: &str,
        q: &AttemptQuery,
    ) -> Result<(Vec<Attempt>, Option<String>), StoreError> {
        Ok(page(&*self.up()?, endpoint_id, q))
    }

    async fn count_events(&self, filter: &ReplayFilter) -> Result<u64, StoreError> {
        let tables = self.up()?;
        Ok(tables.events.iter().filter(|e| filter.takes(e)).count() as u64)
    }

    async fn put_replay(&self, job: &ReplayJob, now: OffsetDateTime) -> Result<(), StoreError> {
        let mut tables = self.up()?;
        tables.replays.retain(|(j, _)| j.id != job.id);
        tables.replays.push((job.clone(), now));
        Ok(())
    }

    async fn replay(&self, id: &str) -> Result<Option<ReplayJob>, StoreError> {
        let tables = self.up()?;
        let job = tables.replays.iter().find(|(j, _)| j.id == id);
        Ok(job.map(|(j, _)| j.clone()))
    }

    async fn start_replay(&self, id: &str) -> Result<(), StoreError> {
        let mut tables = self.up()?;
        if tables.queue_down {
            if tables.started_anyway {
                let job = tables.replays.iter_mut().find(|(j, _)| j.id == id);
                if let Some((job, _)) = job {
                    job.cursor = Some("ev_first_page".into());
                }
            }
            return Err(StoreError("the queue is down".into()));
        }
        tables.queued.push(id.to_string());
        Ok(())
    }

    async fn withdraw_replay(&self, id: &str) -> Result<bool, StoreError> {
        let mut tables = self.up()?;
        if tables.withdraw_down {
            return Err(StoreError("the table is down".into()));
        }
        let claimed = |j: &ReplayJob| j.id == id && (j.cursor.is_some() || j.complete);
        if tables.replays.iter().any(|(j, _)| claimed(j)) {
            return Ok(false);
        }
        tables.replays.retain(|(j, _)| j.id != id);
        Ok(true)
    }
}
