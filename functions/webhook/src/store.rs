//! What the webhook's routes ask of the store, as a trait: DynamoDB
//! ([`Stores`]) in Lambda, an in-memory version in the handler's unit tests
//! (which then need no server), as the `connections` function does. What
//! only DynamoDB can show (conditions under races, the owner claims' and
//! tombstones' items) stays in the integration tests against moto. The
//! data-deletion job has stores of its own ([`crate::deletion`]).

use std::collections::HashMap;
use std::future::Future;

use shared::connection::Connection;
use shared::store::{
    ConnectionStore, DeletionAccount, DeletionPerson, DeletionRecord, Event, EventStore, Owner,
    StoreError, Stored, UserConnections,
};
use shared::time::OffsetDateTime;
use shared::Provider;

/// Every answer is `Err` when the store failed: the route answers `503`
/// and Meta retries.
pub trait MetaStore: Send + Sync {
    /// The owners of these webhook entry ids (Instagram accounts or Pages),
    /// for those connected.
    fn owners(
        &self,
        entry_ids: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, Owner>, StoreError>> + Send;

    /// Stores every event not stored before; how many were new. `Err` if any
    /// write failed (what was written stays; a retry skips it).
    fn put_events(
        &self,
        events: &[Event],
        concurrency: usize,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Stores one event unless stored before; `Ok(false)`: it was.
    fn put_event(&self, event: &Event) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The connections a Meta user granted (not deleted ones).
    fn by_meta_user(
        &self,
        meta_user: &str,
    ) -> impl Future<Output = Result<Vec<Connection>, StoreError>> + Send;

    /// One connection and its sealed token.
    fn connection(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> impl Future<Output = Result<Option<Stored>, StoreError>> + Send;

    /// Revokes `conn` (token deleted) with `event`, only if its current
    /// token was issued at or before `issued_at`; `Ok(false)`: nothing
    /// changed.
    fn revoke_granted_before(
        &self,
        conn: &Connection,
        issued_at: OffsetDateTime,
        event: &Event,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The accounts the person deleted within the event retention.
    fn deleted_accounts(
        &self,
        meta_user: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<DeletionAccount>, StoreError>> + Send;

    /// Who holds `account_id` now, if anyone.
    fn owner_of(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The person's deletion requests so far.
    fn deletion_person(
        &self,
        meta_user: &str,
    ) -> impl Future<Output = Result<Option<DeletionPerson>, StoreError>> + Send;

    fn deletion(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<Option<DeletionRecord>, StoreError>> + Send;

    /// Writes `record` and counts it for the person, only if the person's
    /// count is still `before`; `Ok(false)`: it changed meanwhile.
    fn start_deletion(
        &self,
        meta_user: &str,
        issued_at: Option<i64>,
        record: &DeletionRecord,
        before: Option<&DeletionPerson>,
        count: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The DynamoDB tables: connections (with owner claims, tombstones and
/// deletion records) and events.
pub struct Stores {
    pub connections: ConnectionStore,
    pub events: EventStore,
}

impl MetaStore for Stores {
    async fn owners(&self, entry_ids: &[&str]) -> Result<HashMap<String, Owner>, StoreError> {
        self.connections.owners(entry_ids).await
    }

    async fn put_events(&self, events: &[Event], concurrency: usize) -> Result<usize, StoreError> {
        self.events.put_all(events, concurrency).await
    }

    async fn put_event(&self, event: &Event) -> Result<bool, StoreError> {
        self.events.put(event).await
    }

    async fn by_meta_user(&self, meta_user: &str) -> Result<Vec<Connection>, StoreError> {
        self.connections.by_meta_user(meta_user).await
    }

    async fn connection(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> Result<Option<Stored>, StoreError> {
        self.connections.get(user_id, provider, account_id).await
    }

    async fn revoke_granted_before(
        &self,
        conn: &Connection,
        issued_at: OffsetDateTime,
        event: &Event,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        (self.connections)
            .revoke_granted_before(conn, issued_at, event, now)
            .await
    }

    async fn deleted_accounts(
        &self,
        meta_user: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<DeletionAccount>, StoreError> {
        self.connections.deleted_accounts(meta_user, now).await
    }

    async fn owner_of(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        self.connections.owner_of(account_id).await
    }

    async fn deletion_person(&self, meta_user: &str) -> Result<Option<DeletionPerson>, StoreError> {
        self.connections.deletion_person(meta_user).await
    }

    async fn deletion(&self, code: &str) -> Result<Option<DeletionRecord>, StoreError> {
        self.connections.get_deletion(code).await
    }

    async fn start_deletion(
        &self,
        meta_user: &str,
        issued_at: Option<i64>,
        record: &DeletionRecord,
        before: Option<&DeletionPerson>,
        count: i64,
    ) -> Result<bool, StoreError> {
        (self.connections)
            .start_deletion(meta_user, issued_at, record, before, count)
            .await
    }
}
