//! What the admin routes ask of the store, as a trait: DynamoDB and the
//! delivery queue ([`Stores`]) in Lambda, an in-memory version in the
//! handler's unit tests (which then need no server), as the `connections`,
//! `webhook` and `graph` functions do. What only DynamoDB can show (the
//! endpoint counter under concurrent creates, conditions raced by two
//! rotations, the events table's pages) stays in the integration tests
//! against moto (`tests/tests/outbound.rs`).

use std::future::Future;

use serde_json::json;
use shared::outbound::attempt::Attempt;
use shared::outbound::endpoint::Endpoint;
use shared::outbound::replay::{count_events, ReplayFilter, ReplayJob};
use shared::outbound::store::{AttemptQuery, Created, EndpointStore};
use shared::store::StoreError;
use shared::vault::SealedToken;
use time::OffsetDateTime;

/// Every answer is `Err` when the store (or the queue) failed: the route
/// answers `500 server_error` (a replay whose start failed, `503
/// unavailable`).
pub trait AdminStore: Send + Sync {
    /// Stores a new endpoint unless there are 20 already.
    fn create(&self, e: &Endpoint) -> impl Future<Output = Result<Created, StoreError>> + Send;

    /// Every endpoint, oldest first.
    fn list(&self) -> impl Future<Output = Result<Vec<Endpoint>, StoreError>> + Send;

    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Endpoint>, StoreError>> + Send;

    /// Writes what `PATCH` changes (never the secrets; `reenabled` clears
    /// the delivery health). `Ok(false)`: the endpoint is gone.
    fn save_settings(
        &self,
        e: &Endpoint,
        reenabled: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// `new` becomes the secret and `e`'s signs beside it until `until`,
    /// only if `e`'s secret is still the stored one. `Ok(false)`: the
    /// endpoint is gone or another rotation came first.
    fn rotate_secret(
        &self,
        e: &Endpoint,
        new: &SealedToken,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// `Ok(false)`: no such endpoint.
    fn delete(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// An endpoint's attempts, newest first, and the next page's cursor.
    fn attempts(
        &self,
        endpoint_id: &str,
        q: &AttemptQuery,
    ) -> impl Future<Output = Result<(Vec<Attempt>, Option<String>), StoreError>> + Send;

    /// How many stored events the replay's filter takes.
    fn count_events(
        &self,
        filter: &ReplayFilter,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    fn put_replay(
        &self,
        job: &ReplayJob,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn replay(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ReplayJob>, StoreError>> + Send;

    /// Puts `{"replay_id"}` on the delivery queue: `deliver` works the job.
    fn start_replay(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes a job whose start failed, unless `deliver` has claimed a
    /// page of it (the start went out after all): `Ok(false)` then, and it
    /// runs.
    fn withdraw_replay(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The endpoints table, the events table (what replays count) and the
/// delivery queue (where replays start).
pub struct Stores {
    pub endpoints: EndpointStore,
    pub dynamodb: shared::aws_sdk_dynamodb::Client,
    pub events_table: String,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl AdminStore for Stores {
    async fn create(&self, e: &Endpoint) -> Result<Created, StoreError> {
        self.endpoints.create(e).await
    }

    async fn list(&self) -> Result<Vec<Endpoint>, StoreError> {
        self.endpoints.list().await
    }

    async fn get(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        self.endpoints.get(id).await
    }

    async fn save_settings(&self, e: &Endpoint, reenabled: bool) -> Result<bool, StoreError> {
        self.endpoints.save_settings(e, reenabled).await
    }

    async fn rotate_secret(
        &self,
        e: &Endpoint,
        new: &SealedToken,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.endpoints.rotate_secret(e, new, until, now).await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.endpoints.delete(id).await
    }

    async fn attempts(
        &self,
        endpoint_id: &str,
        q: &AttemptQuery,
    ) -> Result<(Vec<Attempt>, Option<String>), StoreError> {
        self.endpoints.attempts(endpoint_id, q).await
    }

    async fn count_events(&self, filter: &ReplayFilter) -> Result<u64, StoreError> {
        count_events(&self.dynamodb, &self.events_table, filter).await
    }

    async fn put_replay(&self, job: &ReplayJob, now: OffsetDateTime) -> Result<(), StoreError> {
        self.endpoints.put_replay(job, now).await
    }

    async fn replay(&self, id: &str) -> Result<Option<ReplayJob>, StoreError> {
        self.endpoints.replay(id).await
    }

    async fn start_replay(&self, id: &str) -> Result<(), StoreError> {
        let sent = self
            .sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(json!({ "replay_id": id }).to_string())
            .send()
            .await;
        sent.map(drop)
            .map_err(|e| StoreError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))
    }

    async fn withdraw_replay(&self, id: &str) -> Result<bool, StoreError> {
        self.endpoints.withdraw_replay(id).await
    }
}
