//! What `deliver` asks of its tables, as a trait: DynamoDB ([`Stores`]: the
//! endpoints and events tables) in Lambda, an in-memory version in the
//! handler's unit tests (which then need no server), as the `admin`,
//! `webhook` and `graph` functions do. What it asks of its queues is the
//! other trait, `queue::Queues`. What only DynamoDB can show (conditions
//! raced by two containers, the events table's real pages, TTLs) stays in
//! the integration tests against moto (`tests/tests/outbound.rs`).

use std::collections::HashMap;
use std::future::Future;

use shared::aws_sdk_dynamodb::types::AttributeValue;
use shared::outbound::attempt::Attempt;
use shared::outbound::endpoint::Endpoint;
use shared::outbound::replay::{scan_events, ReplayFilter, ReplayJob};
use shared::outbound::store::EndpointStore;
use shared::store::{Event, EventStore, StoreError};
use time::OffsetDateTime;

/// A stored event's attributes, as the events table holds them.
pub type EventItem = HashMap<String, AttributeValue>;

/// Every answer is `Err` when the store failed: the record fails (SQS hands
/// it back), or, after a `POST`, the step is logged and counted.
pub trait DeliverStore: Send + Sync {
    /// Every endpoint, oldest first.
    fn endpoints(&self) -> impl Future<Output = Result<Vec<Endpoint>, StoreError>> + Send;

    fn endpoint(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Endpoint>, StoreError>> + Send;

    /// Records an attempt (kept `ATTEMPT_RETENTION`).
    fn put_attempt(&self, a: &Attempt) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The first failure since the last success (kept if set).
    fn mark_failing(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A success: the endpoint is healthy again.
    fn clear_failing(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The endpoint's attempts to the slow lane (`true`) or back.
    fn set_slow(
        &self,
        id: &str,
        slow: bool,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Disables an enabled endpoint failing since `since` or earlier;
    /// `true` only for the call that disabled it.
    fn disable_failing(
        &self,
        id: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn replay(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ReplayJob>, StoreError>> + Send;

    /// Records a page of `job` done, only from the place `job` was read at
    /// (`false`: a duplicate message claimed it first).
    fn advance_replay(
        &self,
        job: &ReplayJob,
        cursor: Option<String>,
        enqueued: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives back a page claimed by [`Self::advance_replay`].
    fn rewind_replay(
        &self,
        job: &ReplayJob,
        claimed: Option<String>,
        enqueued: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A stored event (a strongly consistent read); `None`: it is gone.
    fn event(
        &self,
        event_id: &str,
    ) -> impl Future<Output = Result<Option<EventItem>, StoreError>> + Send;

    /// Stores an event unless one with its id is stored (`false` then).
    fn put_event(&self, event: &Event) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// One page of the events table after `cursor`: the events `filter`
    /// takes, and the last event id scanned (`None`: the last page).
    fn scan_events(
        &self,
        filter: &ReplayFilter,
        cursor: Option<&str>,
        limit: i32,
    ) -> impl Future<Output = Result<(Vec<EventItem>, Option<String>), StoreError>> + Send;
}

/// The endpoints table (endpoints, attempts, replay jobs) and the events
/// table (`dynamodb` scans it for replays).
pub struct Stores {
    pub endpoints: EndpointStore,
    pub events: EventStore,
    pub dynamodb: shared::aws_sdk_dynamodb::Client,
}

impl DeliverStore for Stores {
    async fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        self.endpoints.list().await
    }

    async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        self.endpoints.get(id).await
    }

    async fn put_attempt(&self, a: &Attempt) -> Result<(), StoreError> {
        self.endpoints.put_attempt(a).await
    }

    async fn mark_failing(&self, id: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        self.endpoints.mark_failing(id, now).await
    }

    async fn clear_failing(&self, id: &str) -> Result<(), StoreError> {
        self.endpoints.clear_failing(id).await
    }

    async fn set_slow(&self, id: &str, slow: bool, now: OffsetDateTime) -> Result<(), StoreError> {
        self.endpoints.set_slow(id, slow, now).await
    }

    async fn disable_failing(
        &self,
        id: &str,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.endpoints.disable_failing(id, since, now).await
    }

    async fn replay(&self, id: &str) -> Result<Option<ReplayJob>, StoreError> {
        self.endpoints.replay(id).await
    }

    async fn advance_replay(
        &self,
        job: &ReplayJob,
        cursor: Option<String>,
        enqueued: u64,
    ) -> Result<bool, StoreError> {
        self.endpoints.advance_replay(job, cursor, enqueued).await
    }

    async fn rewind_replay(
        &self,
        job: &ReplayJob,
        claimed: Option<String>,
        enqueued: u64,
    ) -> Result<bool, StoreError> {
        self.endpoints.rewind_replay(job, claimed, enqueued).await
    }

    async fn event(&self, event_id: &str) -> Result<Option<EventItem>, StoreError> {
        self.events.get_item(event_id).await
    }

    async fn put_event(&self, event: &Event) -> Result<bool, StoreError> {
        self.events.put(event).await
    }

    async fn scan_events(
        &self,
        filter: &ReplayFilter,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<EventItem>, Option<String>), StoreError> {
        let table = self.events.table();
        scan_events(&self.dynamodb, table, filter, cursor, limit).await
    }
}
