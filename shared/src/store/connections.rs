//! Connections, with the one-owner-per-account rule enforced atomically.
//!
//! Items:
//! - connection: `pk = USER#<user>`, `sk = CONN#<provider>#<account>`.
//! - owner claim: `pk = ACCOUNT#<account>`, `sk = OWNER`, `owner_user_id`,
//!   `providers` (set). Webhook routing reads it; connecting writes it in the
//!   same transaction as the connection, on condition that nobody else owns it.
//!
//! Sparse index `by_due` (`due_bucket`, `due_at`) lists what the refresher
//! must look at; `by_meta_user` (`meta_user_id`) finds a person's connections
//! when Meta calls deauthorize or data deletion.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValue, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;

use super::{epoch, get_b, get_n, get_s, get_time, n, query_all, s, Event, Item, StoreError};
use crate::connection::{Connection, Status};
use crate::provider::Provider;
use crate::vault::SealedToken;

use crate::refresh::FACEBOOK_CHECK_EVERY;

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("the account is linked to another user")]
    AlreadyLinked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct ConnectionStore {
    client: Client,
    table: String,
    events_table: String,
}

pub fn user_pk(user_id: &str) -> String {
    format!("USER#{user_id}")
}

pub fn conn_sk(provider: Provider, account_id: &str) -> String {
    format!("CONN#{provider}#{account_id}")
}

fn account_pk(account_id: &str) -> String {
    format!("ACCOUNT#{account_id}")
}

fn page_pk(page_id: &str) -> String {
    format!("PAGE#{page_id}")
}

fn deletion_pk(code: &str) -> String {
    format!("DELETION#{code}")
}

/// Who a webhook entry belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub user_id: String,
    /// The Instagram account (for a Page entry, the account linked to it).
    pub account_id: String,
    /// The providers through which the owner connected it.
    pub providers: Vec<String>,
}

/// A data-deletion request, for the status page Meta links to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionRecord {
    pub code: String,
    pub status: String,
    pub requested_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
}

impl ConnectionStore {
    pub fn new(client: Client, table: impl Into<String>, events_table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            events_table: events_table.into(),
        }
    }

    /// Who owns the account, if anyone.
    pub async fn owner_of(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(account_pk(account_id)))
            .key("sk", s("OWNER"))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(out.item.as_ref().and_then(|i| get_s(i, "owner_user_id")))
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
        let claim = Update::builder()
            .table_name(&self.table)
            .key("pk", s(account_pk(&conn.account_id)))
            .key("sk", s("OWNER"))
            .update_expression("SET owner_user_id = :u, updated_at = :now ADD providers :p")
            .condition_expression("attribute_not_exists(owner_user_id) OR owner_user_id = :u")
            .expression_attribute_values(":u", s(&conn.user_id))
            .expression_attribute_values(":now", epoch(now))
            .expression_attribute_values(
                ":p",
                AttributeValue::Ss(vec![conn.provider.as_str().to_string()]),
            )
            .build()
            .expect("claim update is complete");

        // When the refresher must look next: Instagram tokens by expiry (it
        // queries up to now + its window), Page tokens daily, and at once when
        // the webhook subscription is missing.
        let (due_bucket, due_at) = match (conn.provider, conn.token_expires_at) {
            _ if !conn.webhooks_subscribed => (conn.provider.as_str(), now),
            (Provider::Instagram, Some(exp)) => ("instagram", exp),
            (Provider::Instagram, None) => ("instagram", now),
            (Provider::Facebook, _) => ("facebook", now + FACEBOOK_CHECK_EVERY),
        };
        let mut values = vec![
            (":user_id", s(&conn.user_id)),
            (":provider", s(conn.provider.as_str())),
            (":account_id", s(&conn.account_id)),
            (":username", s(&conn.username)),
            (":status", s(Status::Active.as_str())),
            (
                ":webhooks",
                s(if conn.webhooks_subscribed {
                    "subscribed"
                } else {
                    "unsubscribed"
                }),
            ),
            (
                ":scopes",
                AttributeValue::L(conn.scopes.iter().map(s).collect()),
            ),
            (":connected_at", epoch(conn.connected_at)),
            (":issued_at", epoch(conn.token_issued_at)),
            (":meta_user_id", s(&conn.meta_user_id)),
            (":token", token_attr(token)),
            (":due_bucket", s(due_bucket)),
            (":due_at", epoch(due_at)),
            (":now", epoch(now)),
            (":zero", n(0)),
            (":one", n(1)),
        ];
        let mut set = vec![
            "user_id = :user_id",
            "provider = :provider",
            "account_id = :account_id",
            "username = :username",
            "#status = :status",
            "webhooks = :webhooks",
            "scopes = :scopes",
            "connected_at = if_not_exists(connected_at, :connected_at)",
            "token_issued_at = :issued_at",
            "meta_user_id = :meta_user_id",
            "#token = :token",
            "due_bucket = :due_bucket",
            "due_at = :due_at",
            "updated_at = :now",
            "refresh_failures = :zero",
            "version = if_not_exists(version, :zero) + :one",
        ];
        let mut remove = vec!["last_refreshed_at", "last_refresh_failure_at"];
        match conn.token_expires_at {
            Some(exp) => {
                values.push((":expires", epoch(exp)));
                set.push("token_expires_at = :expires");
            }
            None => remove.push("token_expires_at"),
        }
        match (&conn.page_id, &conn.page_name) {
            (Some(id), name) => {
                values.push((":page_id", s(id)));
                values.push((":page_name", s(name.clone().unwrap_or_default())));
                set.push("page_id = :page_id");
                set.push("page_name = :page_name");
            }
            _ => {
                remove.push("page_id");
                remove.push("page_name");
            }
        }
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(user_pk(&conn.user_id)))
            .key("sk", s(conn_sk(conn.provider, &conn.account_id)))
            .update_expression(format!(
                "SET {} REMOVE {}",
                set.join(", "),
                remove.join(", ")
            ))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#token", "token");
        for (k, v) in values {
            update = update.expression_attribute_values(k, v);
        }
        let update = update.build().expect("connection update is complete");

        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(claim).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(
                TransactWriteItem::builder()
                    .put(event.to_put(&self.events_table))
                    .build(),
            );
        if let Some(page_id) = &conn.page_id {
            // Page webhooks carry the Page id: route them to this account.
            let alias = Put::builder()
                .table_name(&self.table)
                .set_item(Some(Item::from([
                    ("pk".into(), s(page_pk(page_id))),
                    ("sk".into(), s("ACCOUNT")),
                    ("account_id".into(), s(&conn.account_id)),
                    ("owner_user_id".into(), s(&conn.user_id)),
                ])))
                .build()
                .expect("alias put is complete");
            tx = tx.transact_items(TransactWriteItem::builder().put(alias).build());
        }
        let result = tx.send().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let claim_refused = e
                    .as_service_error()
                    .and_then(|se| match se {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                            c.cancellation_reasons().first().and_then(|r| r.code()).map(|c| c == "ConditionalCheckFailed")
                        }
                        _ => None,
                    })
                    .unwrap_or(false);
                if claim_refused {
                    Err(SaveError::AlreadyLinked)
                } else {
                    Err(SaveError::Store(StoreError::from_sdk(e)))
                }
            }
        }
    }

    /// The caller's connections.
    pub async fn list_for_user(&self, user_id: &str) -> Result<Vec<Connection>, StoreError> {
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
    pub async fn get(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> Result<Option<(Connection, Option<SealedToken>)>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(user_pk(user_id)))
            .key("sk", s(conn_sk(provider, account_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| Some((parse_connection(i)?, parse_token(i)))))
    }
}

impl ConnectionStore {
    /// The owners of webhook entry ids (Instagram accounts or Pages), in one
    /// read. Ids nobody connected are absent.
    pub async fn owners(&self, entry_ids: &[&str]) -> Result<HashMap<String, Owner>, StoreError> {
        let mut owners = HashMap::new();
        let mut ids: Vec<&str> = entry_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        // BatchGetItem takes 100 keys; each id asks for two.
        for chunk in ids.chunks(50) {
            let mut keys = Vec::new();
            for id in chunk {
                keys.push(Item::from([
                    ("pk".into(), s(account_pk(id))),
                    ("sk".into(), s("OWNER")),
                ]));
                keys.push(Item::from([
                    ("pk".into(), s(page_pk(id))),
                    ("sk".into(), s("ACCOUNT")),
                ]));
            }
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .expect("keys are set"),
            );
            while let Some(req) = request.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(StoreError::from_sdk)?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let pk = get_s(&item, "pk").unwrap_or_default();
                    let Some(user_id) = get_s(&item, "owner_user_id") else {
                        continue;
                    };
                    if let Some(account) = pk.strip_prefix("ACCOUNT#") {
                        let providers = item
                            .get("providers")
                            .and_then(|v| v.as_ss().ok())
                            .cloned()
                            .unwrap_or_default();
                        owners.insert(
                            account.to_string(),
                            Owner {
                                user_id,
                                account_id: account.to_string(),
                                providers,
                            },
                        );
                    } else if let Some(page) = pk.strip_prefix("PAGE#") {
                        let account_id = get_s(&item, "account_id").unwrap_or_default();
                        owners.entry(page.to_string()).or_insert(Owner {
                            user_id,
                            account_id,
                            providers: vec!["facebook".into()],
                        });
                    }
                }
                request = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
            }
        }
        Ok(owners)
    }

    /// The connections of a Meta person (deauthorize and data-deletion
    /// callbacks name them by their app-scoped id).
    pub async fn by_meta_user(&self, meta_user_id: &str) -> Result<Vec<Connection>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by_meta_user")
            .key_condition_expression("meta_user_id = :m")
            .expression_attribute_values(":m", s(meta_user_id));
        let mut out = Vec::new();
        // The index holds keys only: read each row (a person has few).
        for key in query_all(query, usize::MAX).await? {
            let (Some(pk), Some(sk)) = (get_s(&key, "pk"), get_s(&key, "sk")) else {
                continue;
            };
            let item = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .consistent_read(true)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            if let Some(c) = item.item.as_ref().and_then(parse_connection) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Deletes the connection's token and marks it `revoked`, writing `event`
    /// in the same transaction. Idempotent: an already revoked connection
    /// without a token is left alone (`Ok(false)`).
    pub async fn revoke(
        &self,
        conn: &Connection,
        event: &Event,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(user_pk(&conn.user_id)))
            .key("sk", s(conn_sk(conn.provider, &conn.account_id)))
            .update_expression(
                "SET #status = :revoked, updated_at = :now, version = version + :one \
                 REMOVE #token, due_bucket, due_at",
            )
            .condition_expression(
                "attribute_exists(pk) AND (#status <> :revoked OR attribute_exists(#token))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":revoked", s(Status::Revoked.as_str()))
            .expression_attribute_values(":now", epoch(now))
            .expression_attribute_values(":one", n(1))
            .build()
            .expect("revoke update is complete");
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(
                TransactWriteItem::builder()
                    .put(event.to_put(&self.events_table))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(StoreError::from_sdk(e)),
        }
    }

    pub async fn put_deletion(&self, record: &DeletionRecord) -> Result<(), StoreError> {
        let mut item = Item::from([
            ("pk".into(), s(deletion_pk(&record.code))),
            ("sk".into(), s("REQUEST")),
            ("status".into(), s(&record.status)),
            ("requested_at".into(), epoch(record.requested_at)),
        ]);
        if let Some(done) = record.completed_at {
            item.insert("completed_at".into(), epoch(done));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }

    pub async fn get_deletion(&self, code: &str) -> Result<Option<DeletionRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(deletion_pk(code)))
            .key("sk", s("REQUEST"))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(out.item.as_ref().and_then(|i| {
            Some(DeletionRecord {
                code: code.to_string(),
                status: get_s(i, "status")?,
                requested_at: get_time(i, "requested_at")?,
                completed_at: get_time(i, "completed_at"),
            })
        }))
    }
}

/// What a refresh run decided for one connection, written over the version
/// it leased.
#[derive(Default)]
pub struct Settle {
    /// A refreshed token and its expiry.
    pub new_token: Option<(SealedToken, Option<OffsetDateTime>)>,
    pub status: Option<Status>,
    pub webhooks_subscribed: Option<bool>,
    /// (failure days in a row, last failure), or reset with `(0, None)`.
    pub failures: Option<(u32, Option<OffsetDateTime>)>,
    /// When to look next; `None` takes it out of the refresh index.
    pub due: Option<(String, OffsetDateTime)>,
    pub refreshed_at: Option<OffsetDateTime>,
}

/// A deleted connection's sealed token, kept only until the refresher (which
/// may use KMS) has unsubscribed and revoked it at Meta.
#[derive(Clone, Debug)]
pub struct CleanupJob {
    pub sk: String,
    pub user_id: String,
    pub provider: Provider,
    pub account_id: String,
    pub meta_user_id: String,
    pub page_id: Option<String>,
    pub token: SealedToken,
}

impl ConnectionStore {
    /// Keys of connections in `bucket` due up to `until`, soonest first.
    pub async fn due(
        &self,
        bucket: &str,
        until: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by_due")
            .key_condition_expression("due_bucket = :b AND due_at <= :until")
            .expression_attribute_values(":b", s(bucket))
            .expression_attribute_values(":until", epoch(until));
        Ok(query_all(query, limit)
            .await?
            .iter()
            .filter_map(|i| Some((get_s(i, "pk")?, get_s(i, "sk")?)))
            .collect())
    }

    /// Takes a lease on one connection (a conditional write: only one run
    /// holds it) and returns the connection as it is now, re-read by the
    /// same write. `None`: someone else holds it, or it is gone.
    pub async fn take_lease(
        &self,
        key: &(String, String),
        owner: &str,
        now: OffsetDateTime,
        lease_for: time::Duration,
    ) -> Result<Option<(Connection, Option<SealedToken>)>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&key.0))
            .key("sk", s(&key.1))
            .update_expression("SET lease_owner = :o, lease_until = :until")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(lease_until) OR lease_until < :now)",
            )
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":until", epoch(now + lease_for))
            .expression_attribute_values(":now", epoch(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out
                .attributes
                .as_ref()
                .and_then(|i| Some((parse_connection(i)?, parse_token(i))))),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(StoreError::from_sdk(e)),
        }
    }

    /// Writes a run's outcome and releases the lease, only if the connection
    /// is still at the version leased and the lease is still ours. `Ok(false)`:
    /// it changed meanwhile (reconnected, deleted): nothing written.
    pub async fn settle(
        &self,
        conn: &Connection,
        owner: &str,
        outcome: Settle,
        event: Option<&Event>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut set = vec!["version = version + :one", "updated_at = :now"];
        let mut remove = vec!["lease_owner", "lease_until"];
        let mut values = vec![
            (":one", n(1)),
            (":now", epoch(now)),
            (":v", n(conn.version)),
            (":o", s(owner)),
        ];
        if let Some((token, expires)) = &outcome.new_token {
            set.push("#token = :token");
            set.push("token_issued_at = :now");
            values.push((":token", token_attr(token)));
            match expires {
                Some(e) => {
                    set.push("token_expires_at = :expires");
                    values.push((":expires", epoch(*e)));
                }
                None => remove.push("token_expires_at"),
            }
        }
        if let Some(status) = outcome.status {
            set.push("#status = :status");
            values.push((":status", s(status.as_str())));
        }
        if let Some(subscribed) = outcome.webhooks_subscribed {
            set.push("webhooks = :webhooks");
            values.push((
                ":webhooks",
                s(if subscribed {
                    "subscribed"
                } else {
                    "unsubscribed"
                }),
            ));
        }
        if let Some((count, last)) = outcome.failures {
            set.push("refresh_failures = :failures");
            values.push((":failures", n(count)));
            match last {
                Some(t) => {
                    set.push("last_refresh_failure_at = :failed_at");
                    values.push((":failed_at", epoch(t)));
                }
                None => remove.push("last_refresh_failure_at"),
            }
        }
        if let Some(t) = outcome.refreshed_at {
            set.push("last_refreshed_at = :refreshed_at");
            values.push((":refreshed_at", epoch(t)));
        }
        match &outcome.due {
            Some((bucket, at)) => {
                set.push("due_bucket = :bucket");
                set.push("due_at = :due");
                values.push((":bucket", s(bucket)));
                values.push((":due", epoch(*at)));
            }
            None => {
                remove.push("due_bucket");
                remove.push("due_at");
            }
        }
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(user_pk(&conn.user_id)))
            .key("sk", s(conn_sk(conn.provider, &conn.account_id)))
            .update_expression(format!(
                "SET {} REMOVE {}",
                set.join(", "),
                remove.join(", ")
            ))
            .condition_expression("version = :v AND lease_owner = :o");
        // DynamoDB refuses names an expression does not use.
        if outcome.new_token.is_some() {
            update = update.expression_attribute_names("#token", "token");
        }
        if outcome.status.is_some() {
            update = update.expression_attribute_names("#status", "status");
        }
        for (k, v) in values {
            update = update.expression_attribute_values(k, v);
        }
        let mut tx = self.client.transact_write_items().transact_items(
            TransactWriteItem::builder()
                .update(update.build().expect("complete"))
                .build(),
        );
        if let Some(e) = event {
            tx = tx.transact_items(
                TransactWriteItem::builder()
                    .put(e.to_put(&self.events_table))
                    .build(),
            );
        }
        match tx.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(StoreError::from_sdk(e)),
        }
    }

    /// Deletes a connection: the row, its share of the owner claim, its Page
    /// alias, and writes `event`; its sealed token moves to a cleanup job for
    /// the refresher. One transaction. `Ok(false)`: it was already gone.
    pub async fn delete(
        &self,
        conn: &Connection,
        token: Option<&SealedToken>,
        event: &Event,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        use aws_sdk_dynamodb::types::Delete;
        let row = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(user_pk(&conn.user_id)))
            .key("sk", s(conn_sk(conn.provider, &conn.account_id)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .expect("complete");
        let claim = Update::builder()
            .table_name(&self.table)
            .key("pk", s(account_pk(&conn.account_id)))
            .key("sk", s("OWNER"))
            .update_expression("DELETE providers :p SET updated_at = :now")
            .condition_expression("owner_user_id = :u")
            .expression_attribute_values(
                ":p",
                AttributeValue::Ss(vec![conn.provider.as_str().into()]),
            )
            .expression_attribute_values(":u", s(&conn.user_id))
            .expression_attribute_values(":now", epoch(now))
            .build()
            .expect("complete");
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(row).build())
            .transact_items(TransactWriteItem::builder().update(claim).build())
            .transact_items(
                TransactWriteItem::builder()
                    .put(event.to_put(&self.events_table))
                    .build(),
            );
        if let Some(page) = &conn.page_id {
            let alias = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(page_pk(page)))
                .key("sk", s("ACCOUNT"))
                .build()
                .expect("complete");
            tx = tx.transact_items(TransactWriteItem::builder().delete(alias).build());
        }
        if let Some(token) = token {
            let mut job = Item::from([
                ("pk".into(), s("CLEANUP")),
                (
                    "sk".into(),
                    s(format!(
                        "{}#{}#{}#{}",
                        now.unix_timestamp(),
                        conn.user_id,
                        conn.provider,
                        conn.account_id
                    )),
                ),
                ("user_id".into(), s(&conn.user_id)),
                ("provider".into(), s(conn.provider.as_str())),
                ("account_id".into(), s(&conn.account_id)),
                ("meta_user_id".into(), s(&conn.meta_user_id)),
                ("token".into(), token_attr(token)),
            ]);
            if let Some(page) = &conn.page_id {
                job.insert("page_id".into(), s(page));
            }
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(job))
                .build()
                .expect("complete");
            tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
        }
        match tx.send().await {
            Ok(_) => {}
            Err(e) if is_condition_failure(&e) => return Ok(false),
            Err(e) => return Err(StoreError::from_sdk(e)),
        }
        // The claim goes once no provider of this owner holds the account.
        let _ = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(account_pk(&conn.account_id)))
            .key("sk", s("OWNER"))
            .condition_expression("attribute_not_exists(providers) AND owner_user_id = :u")
            .expression_attribute_values(":u", s(&conn.user_id))
            .send()
            .await;
        Ok(true)
    }

    pub async fn cleanup_jobs(&self, limit: i32) -> Result<Vec<CleanupJob>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s("CLEANUP"))
            .limit(limit)
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(out
            .items()
            .iter()
            .filter_map(|i| {
                Some(CleanupJob {
                    sk: get_s(i, "sk")?,
                    user_id: get_s(i, "user_id")?,
                    provider: Provider::parse(&get_s(i, "provider")?)?,
                    account_id: get_s(i, "account_id")?,
                    meta_user_id: get_s(i, "meta_user_id").unwrap_or_default(),
                    page_id: get_s(i, "page_id"),
                    token: parse_token(i)?,
                })
            })
            .collect())
    }

    /// Removes a cleanup job, and with it the last copy of the token.
    pub async fn finish_cleanup(&self, job: &CleanupJob) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s("CLEANUP"))
            .key("sk", s(&job.sk))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }
}

fn is_condition_failure<R: std::fmt::Debug>(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> bool {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    matches!(
        e.as_service_error(),
        Some(E::TransactionCanceledException(c))
            if c.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
    )
}

fn token_attr(t: &SealedToken) -> AttributeValue {
    AttributeValue::M(Item::from([
        ("v".into(), n(t.version)),
        ("key_id".into(), s(&t.key_id)),
        (
            "wrapped_key".into(),
            AttributeValue::B(t.wrapped_key.clone().into()),
        ),
        ("nonce".into(), AttributeValue::B(t.nonce.clone().into())),
        (
            "ciphertext".into(),
            AttributeValue::B(t.ciphertext.clone().into()),
        ),
    ]))
}

pub(crate) fn parse_token(item: &Item) -> Option<SealedToken> {
    let m = item.get("token")?.as_m().ok()?;
    Some(SealedToken {
        version: u8::try_from(get_n(m, "v")?).ok()?,
        key_id: get_s(m, "key_id")?,
        wrapped_key: get_b(m, "wrapped_key")?,
        nonce: get_b(m, "nonce")?,
        ciphertext: get_b(m, "ciphertext")?,
    })
}

pub(crate) fn parse_connection(item: &Item) -> Option<Connection> {
    Some(Connection {
        user_id: get_s(item, "user_id")?,
        provider: Provider::parse(&get_s(item, "provider")?)?,
        account_id: get_s(item, "account_id")?,
        username: get_s(item, "username").unwrap_or_default(),
        status: Status::parse(&get_s(item, "status")?)?,
        webhooks_subscribed: get_s(item, "webhooks").as_deref() == Some("subscribed"),
        scopes: item
            .get("scopes")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        connected_at: get_time(item, "connected_at")?,
        token_expires_at: get_time(item, "token_expires_at"),
        token_issued_at: get_time(item, "token_issued_at")?,
        last_refreshed_at: get_time(item, "last_refreshed_at"),
        meta_user_id: get_s(item, "meta_user_id").unwrap_or_default(),
        page_id: get_s(item, "page_id"),
        page_name: get_s(item, "page_name"),
        version: get_n(item, "version").unwrap_or(0) as u64,
        refresh_failures: get_n(item, "refresh_failures").unwrap_or(0) as u32,
        last_refresh_failure_at: get_time(item, "last_refresh_failure_at"),
    })
}
