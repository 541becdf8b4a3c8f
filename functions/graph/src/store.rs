//! What the proxy asks of the store, as a trait: DynamoDB ([`Stores`]) in
//! Lambda, an in-memory version in the handler's unit tests (which then need
//! no server), as the `connections` and `webhook` functions do. What only
//! DynamoDB can show (conditional takes under concurrency, claims raced by
//! two containers, TTLs) stays in the integration tests against moto.

use std::future::Future;

use shared::connection::Connection;
use shared::graph::buckets::BucketRule;
use shared::graph::store::{Block, Bucket, Claim, GraphStore, IdemKey, StoredAnswer, Taken};
use shared::store::{ConnectionStore, Event, StoreError, Stored, UserConnections};
use shared::time::{Duration, OffsetDateTime};
use shared::Provider;

/// Every answer is `Err` when the store failed; the proxy answers `503`
/// then, or goes on where the contract says it may (a lost settlement).
pub trait ProxyStore: Send + Sync {
    /// The caller's connection and its sealed token; another user's is `None`.
    fn connection(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> impl Future<Output = Result<Option<Stored>, StoreError>> + Send;

    /// Meta's block on an account, if still in force at `now`.
    fn block(
        &self,
        provider: Provider,
        account_id: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<Block>, StoreError>> + Send;

    /// Meta's block on the provider's whole app, if still in force.
    fn app_block(
        &self,
        provider: Provider,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<Block>, StoreError>> + Send;

    /// Records a block on an account (a later one never shortens it).
    fn put_block(
        &self,
        provider: Provider,
        account_id: &str,
        block: &Block,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn put_app_block(
        &self,
        provider: Provider,
        block: &Block,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes a token from a caller's bucket.
    fn take(
        &self,
        bucket: Bucket<'_>,
        rule: BucketRule,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Taken, StoreError>> + Send;

    /// Claims an idempotency key for a request with `fingerprint`.
    fn claim(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Keeps a claimed request's answer for replays.
    fn finish(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
        answer: &StoredAnswer,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Frees a claimed key: Meta did not act.
    fn release(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Keeps a claimed key as `outcome_unknown`: never sent again.
    fn outcome_unknown(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks an `active` connection `needs_reauth` with `event`;
    /// `Ok(false)`: it had changed, nothing written.
    fn mark_needs_reauth(
        &self,
        conn: &Connection,
        event: &Event,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The DynamoDB tables: the connections, and the proxy's own (blocks,
/// buckets, idempotency records).
pub struct Stores {
    pub connections: ConnectionStore,
    pub graph: GraphStore,
}

impl ProxyStore for Stores {
    async fn connection(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> Result<Option<Stored>, StoreError> {
        self.connections.get(user_id, provider, account_id).await
    }

    async fn block(
        &self,
        provider: Provider,
        account_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Block>, StoreError> {
        self.graph.block(provider, account_id, now).await
    }

    async fn app_block(
        &self,
        provider: Provider,
        now: OffsetDateTime,
    ) -> Result<Option<Block>, StoreError> {
        self.graph.app_block(provider, now).await
    }

    async fn put_block(
        &self,
        provider: Provider,
        account_id: &str,
        block: &Block,
    ) -> Result<(), StoreError> {
        self.graph.put_block(provider, account_id, block).await
    }

    async fn put_app_block(&self, provider: Provider, block: &Block) -> Result<(), StoreError> {
        self.graph.put_app_block(provider, block).await
    }

    async fn take(
        &self,
        bucket: Bucket<'_>,
        rule: BucketRule,
        now: OffsetDateTime,
    ) -> Result<Taken, StoreError> {
        self.graph.take(bucket, rule, now).await
    }

    async fn claim(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.graph.claim(key, fingerprint, now, lease).await
    }

    async fn finish(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        self.graph.finish(key, fingerprint, answer).await
    }

    async fn release(&self, key: &IdemKey<'_>, fingerprint: &str) -> Result<(), StoreError> {
        self.graph.release(key, fingerprint).await
    }

    async fn outcome_unknown(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        self.graph.outcome_unknown(key, fingerprint).await
    }

    async fn mark_needs_reauth(
        &self,
        conn: &Connection,
        event: &Event,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.graph.mark_needs_reauth(conn, event, now).await
    }
}
