//! Connections, with the one-owner-per-account rule enforced atomically.
//!
//! Item: `pk = USER#<user>`, `sk = CONN#<provider>#<account>`. Connecting
//! writes it with its owner claim (`owners.rs`) in one transaction; deleting
//! queues its token for the refresher (`cleanup.rs`). The refresher's lease
//! and outcome writes are in `leases.rs`, data-deletion records in
//! `deletions.rs`.
//!
//! Sparse index `by_due` (`due_bucket`, `due_at`) lists what the refresher
//! must look at (`refresh::Due` decides the values); `by_meta_user`
//! (`meta_user_id`) finds a person's connections when Meta calls deauthorize
//! or data deletion, and the tombstones of those they deleted
//! (`tombstones.rs`).

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;

use super::items::{connected_update, parse_connection};
use super::{
    epoch, get_consistent, get_s, item_key, n, owners, query_all, s, tombstones, transacted, Event,
    Item, StoreError,
};
use crate::connection::{Connection, Status};
use crate::provider::Provider;
use crate::vault::SealedToken;

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("the account is linked to another user")]
    AlreadyLinked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The connections table: connections, owner claims, Page aliases, refresh
/// leases, the cleanup queue and data-deletion records (one file each).
#[derive(Clone)]
pub struct ConnectionStore {
    pub(super) client: Client,
    pub(super) table: String,
    pub(super) events_table: String,
}

pub fn user_pk(user_id: &str) -> String {
    format!("USER#{user_id}")
}

pub fn conn_sk(provider: Provider, account_id: &str) -> String {
    format!("CONN#{provider}#{account_id}")
}

/// What taking a refresh lease on a connection found.
#[derive(Debug)]
pub enum Lease {
    /// Leased: the connection as the lease write returned it.
    Taken(Box<(Connection, Option<SealedToken>)>),
    /// Another run holds it, or it is gone.
    Busy,
    /// Leased, but the row does not parse: `attribute` is the first one
    /// missing or malformed. Left as it is (the lease lapses by itself).
    Unreadable { attribute: &'static str },
}

/// What the `by_due` index lists as due.
#[derive(Debug, Default)]
pub struct DueKeys {
    pub keys: Vec<ConnectionKey>,
    /// Tags ([`key_tag`]) of index entries whose keys are not a connection's.
    pub unreadable: Vec<String>,
    /// The query stopped at its limit: more may be due than were loaded.
    pub capped: bool,
}

/// A row's keys as a log may show them: a short hash, never the values.
pub fn key_tag(pk: &str, sk: &str) -> String {
    crate::logging::tag(&format!("{pk}\n{sk}"))
}

/// Which connection a row is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionKey {
    pub user_id: String,
    pub provider: Provider,
    pub account_id: String,
}

impl ConnectionKey {
    pub fn of(conn: &Connection) -> Self {
        Self {
            user_id: conn.user_id.clone(),
            provider: conn.provider,
            account_id: conn.account_id.clone(),
        }
    }

    /// From the row's `pk` and `sk` (what a keys-only index returns).
    pub fn parse(pk: &str, sk: &str) -> Option<Self> {
        let (provider, account_id) = sk.strip_prefix("CONN#")?.split_once('#')?;
        Some(Self {
            user_id: pk.strip_prefix("USER#")?.to_string(),
            provider: Provider::parse(provider)?,
            account_id: account_id.to_string(),
        })
    }

    /// This row's [`key_tag`].
    pub fn tag(&self) -> String {
        key_tag(
            &user_pk(&self.user_id),
            &conn_sk(self.provider, &self.account_id),
        )
    }

    pub(crate) fn item(&self) -> Item {
        item_key(
            user_pk(&self.user_id),
            &conn_sk(self.provider, &self.account_id),
        )
    }
}

impl ConnectionStore {
    pub fn new(client: Client, table: impl Into<String>, events_table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            events_table: events_table.into(),
        }
    }

    /// The event's put, as one item of a transaction.
    pub(super) fn event_item(&self, event: &Event) -> TransactWriteItem {
        TransactWriteItem::builder()
            .put(event.to_put(&self.events_table))
            .build()
    }

    /// Writes a connected (or reconnected) account, its sealed token, the
    /// owner claim and the lifecycle event in one transaction. Reconnecting by
    /// the same user updates the connection in place; another owner makes it
    /// fail with [`SaveError::AlreadyLinked`] and nothing is written.
    pub async fn save_connected(
        &self,
        conn: &Connection,
        token: &SealedToken,
        event: &Event,
        now: OffsetDateTime,
    ) -> Result<(), SaveError> {
        let row = connected_update(conn, token, now)
            .apply(Update::builder())
            .table_name(&self.table)
            .set_key(Some(ConnectionKey::of(conn).item()))
            .build()
            .expect("connection update is complete");
        let mut items = vec![
            owners::claim(&self.table, conn, now),
            TransactWriteItem::builder().update(row).build(),
            self.event_item(event),
        ];
        items.extend(owners::put_alias(&self.table, conn, now));
        match self.transact(items).await {
            Ok(()) => Ok(()),
            // The claim comes first: its condition failing means another owner.
            Err(e) if first_condition_failed(&e) => Err(SaveError::AlreadyLinked),
            Err(e) => Err(SaveError::Store(StoreError::from_sdk(e))),
        }
    }

    /// The connections of a Meta person (deauthorize and data-deletion
    /// callbacks name them by their app-scoped id).
    pub async fn by_meta_user(&self, meta_user_id: &str) -> Result<Vec<Connection>, StoreError> {
        let mut out = Vec::new();
        // The index holds keys only: read each row (a person has few).
        for (pk, sk) in self.person_keys(meta_user_id).await? {
            if tombstones::is_tombstone(&sk) {
                continue; // a deleted connection's link: `deleted_accounts`
            }
            let key = Item::from([("pk".into(), s(pk)), ("sk".into(), s(sk))]);
            if let Some(c) = get_consistent(&self.client, &self.table, key)
                .await?
                .as_ref()
                .and_then(parse_connection)
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The keys of every row of a Meta person (connections and tombstones),
    /// from the keys-only index `by_meta_user`.
    pub(super) async fn person_keys(
        &self,
        meta_user_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by_meta_user")
            .key_condition_expression("meta_user_id = :m")
            .expression_attribute_values(":m", s(meta_user_id));
        Ok(query_all(query, usize::MAX)
            .await?
            .iter()
            .filter_map(|key| Some((get_s(key, "pk")?, get_s(key, "sk")?)))
            .collect())
    }

    /// Deletes the connection's token and marks it `revoked`, writing `event`
    /// in the same transaction, only if Meta issued the connection's current
    /// token at or before `issued_at` (seconds): a `signed_request` older than
    /// the grant it would touch never undoes it, even when the person connects
    /// again while it is being handled. `Ok(false)`: nothing was changed
    /// (already revoked without a token, gone, or granted after `issued_at`).
    pub async fn revoke_granted_before(
        &self,
        conn: &Connection,
        issued_at: OffsetDateTime,
        event: &Event,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(ConnectionKey::of(conn).item()))
            .update_expression(
                "SET #status = :revoked, updated_at = :now, version = version + :one \
                 REMOVE #token, due_bucket, due_at",
            )
            .condition_expression(
                "attribute_exists(pk) AND (#status <> :revoked OR attribute_exists(#token)) \
                 AND token_issued_at <= :issued",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":revoked", s(Status::Revoked.as_str()))
            .expression_attribute_values(":now", epoch(now))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":issued", epoch(issued_at))
            .build()
            .expect("revoke update is complete");
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.event_item(event),
        ];
        self.transact_if_unchanged(items).await
    }

    /// Runs a transaction; `Ok(false)` when one of its conditions failed.
    async fn transact_if_unchanged(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<bool, StoreError> {
        transacted(self.transact(items).await)
    }

    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), TransactError> {
        let write = self.client.transact_write_items();
        write.set_transact_items(Some(items)).send().await?;
        Ok(())
    }
}

type TransactError = aws_sdk_dynamodb::error::SdkError<
    TransactWriteItemsError,
    aws_sdk_dynamodb::config::http::HttpResponse,
>;

fn first_condition_failed<R>(
    e: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>,
) -> bool {
    matches!(
        e.as_service_error(),
        Some(TransactWriteItemsError::TransactionCanceledException(c))
            if c.cancellation_reasons().first().and_then(|r| r.code()) == Some("ConditionalCheckFailed")
    )
}

/// Only the item at `index` of the transaction failed its condition.
pub(super) fn condition_failed_only_at<R>(
    e: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>,
    index: usize,
) -> bool {
    matches!(
        e.as_service_error(),
        Some(TransactWriteItemsError::TransactionCanceledException(c))
            if c.cancellation_reasons().iter().enumerate().all(|(i, r)| {
                (r.code() == Some("ConditionalCheckFailed")) == (i == index)
            })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_key_reads_back_from_its_row_keys() {
        let key = ConnectionKey {
            user_id: "user#1".into(),
            provider: Provider::Facebook,
            account_id: "178#4".into(),
        };
        let item = key.item();
        let (pk, sk) = (get_s(&item, "pk").unwrap(), get_s(&item, "sk").unwrap());
        assert_eq!(
            (pk.as_str(), sk.as_str()),
            ("USER#user#1", "CONN#facebook#178#4")
        );
        assert_eq!(ConnectionKey::parse(&pk, &sk), Some(key));
        assert_eq!(ConnectionKey::parse("USER#u", "OWNER"), None);
        assert_eq!(ConnectionKey::parse("ACCOUNT#1", "CONN#instagram#1"), None);
    }
}
