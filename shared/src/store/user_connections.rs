//! What the connections function asks of the store, as a trait: the
//! DynamoDB [`ConnectionStore`] in Lambda, an in-memory version in the
//! handler's unit tests (which then need no server). What only DynamoDB can
//! show (the transaction's conditions, the owner claim) stays in the
//! integration tests against moto.

use std::future::Future;

use time::OffsetDateTime;

use super::{ConnectionStore, Event, StoreError};
use crate::connection::Connection;
use crate::provider::Provider;
use crate::vault::SealedToken;

/// A connection and its sealed token, if one is stored.
pub type Stored = (Connection, Option<SealedToken>);

pub trait UserConnections: Send + Sync {
    /// The user's connections, in no particular order.
    fn list_for_user(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<Connection>, StoreError>> + Send;

    /// One of the user's connections; another user's is `None`.
    fn get(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> impl Future<Output = Result<Option<Stored>, StoreError>> + Send;

    /// Deletes it and writes `event`; `Ok(false)`: it was already gone.
    fn delete(
        &self,
        conn: &Connection,
        token: Option<&SealedToken>,
        event: &Event,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl UserConnections for ConnectionStore {
    async fn list_for_user(&self, user_id: &str) -> Result<Vec<Connection>, StoreError> {
        ConnectionStore::list_for_user(self, user_id).await
    }

    async fn get(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> Result<Option<Stored>, StoreError> {
        ConnectionStore::get(self, user_id, provider, account_id).await
    }

    async fn delete(
        &self,
        conn: &Connection,
        token: Option<&SealedToken>,
        event: &Event,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        ConnectionStore::delete(self, conn, token, event, now).await
    }
}
