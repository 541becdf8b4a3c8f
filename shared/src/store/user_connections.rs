//! What the connections function asks of the store, as a trait: the
//! DynamoDB [`ConnectionStore`] in Lambda, an in-memory version in the
//! handler's unit tests (which then need no server). What only DynamoDB can
//! show (the transaction's conditions, the owner claim) stays in the
//! integration tests against moto.

use std::future::Future;

use time::OffsetDateTime;

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};

use super::connections::{condition_failed_only_at, ConnectionKey};
use super::items::{parse_connection, parse_token};
use super::{
    cleanup, get_consistent, is_condition_failure, owners, query_all, s, tombstones, user_pk,
    ConnectionStore, Event, StoreError,
};
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

    /// Deletes it and writes `event`, keeping the person's link to the
    /// account (a tombstone) as long as `event` is kept; `Ok(false)`: it was
    /// already gone.
    fn delete(
        &self,
        conn: &Connection,
        token: Option<&SealedToken>,
        event: &Event,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl UserConnections for ConnectionStore {
    /// The caller's connections.
    async fn list_for_user(&self, user_id: &str) -> Result<Vec<Connection>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :conn)")
            .expression_attribute_values(":pk", s(user_pk(user_id)))
            .expression_attribute_values(":conn", s("CONN#"));
        let items = query_all(query, usize::MAX).await?;
        Ok(items.iter().filter_map(parse_connection).collect())
    }

    /// One connection and its sealed token.
    async fn get(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> Result<Option<Stored>, StoreError> {
        let key = ConnectionKey {
            user_id: user_id.to_string(),
            provider,
            account_id: account_id.to_string(),
        };
        let item = get_consistent(&self.client, &self.table, key.item()).await?;
        Ok(item
            .as_ref()
            .and_then(|i| Some((parse_connection(i)?, parse_token(i)))))
    }

    /// Deletes a connection: the row, its share of the owner claim, its Page
    /// alias (only while it still routes the Page to this connection: a Page
    /// linked since to another user's account keeps their routing), and
    /// writes `event`; its sealed token moves to a cleanup job for the
    /// refresher; its tombstone keeps the Meta user → account link until
    /// `event` expires (the event retention), for data deletion. One
    /// transaction. `Ok(false)`: it was already gone.
    async fn delete(
        &self,
        conn: &Connection,
        token: Option<&SealedToken>,
        event: &Event,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // The alias may change between its read and the transaction (its
        // delete is conditional): read it again and retry then.
        for _ in 0..3 {
            let alias_ours = self.alias_is_still(conn).await?;
            let row = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(ConnectionKey::of(conn).item()))
                .condition_expression("attribute_exists(pk)")
                .build()
                .expect("complete");
            let mut items = vec![
                TransactWriteItem::builder().delete(row).build(),
                owners::release(&self.table, conn, now),
                self.event_item(event),
            ];
            items.extend(token.map(|t| cleanup::enqueue(&self.table, conn, t, now)));
            items.extend(tombstones::put(&self.table, conn, now, event.expires_at));
            let alias_at = items.len();
            if alias_ours {
                items.extend(owners::delete_alias(&self.table, conn));
            }
            match self.transact(items).await {
                Ok(()) => {
                    self.drop_unused_claim(conn).await;
                    return Ok(true);
                }
                Err(e) if condition_failed_only_at(&e, alias_at) => continue,
                Err(e) if is_condition_failure(&e) => return Ok(false),
                Err(e) => return Err(StoreError::from_sdk(e)),
            }
        }
        Err(StoreError(
            "the Page alias kept changing during a delete".into(),
        ))
    }
}
