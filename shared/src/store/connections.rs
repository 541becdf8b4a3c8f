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

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;

use super::{epoch, get_b, get_n, get_s, get_time, n, s, Event, Item, StoreError};
use crate::connection::{Connection, Status};
use crate::provider::Provider;
use crate::vault::SealedToken;

/// Facebook Page tokens don't expire; they are checked daily.
const FACEBOOK_CHECK_EVERY: time::Duration = time::Duration::days(1);

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

        let (due_bucket, due_at) = match (conn.provider, conn.token_expires_at) {
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
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :conn)")
                .expression_attribute_values(":pk", s(user_pk(user_id)))
                .expression_attribute_values(":conn", s("CONN#"))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            out.extend(page.items().iter().filter_map(parse_connection));
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
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
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("by_meta_user")
                .key_condition_expression("meta_user_id = :m")
                .expression_attribute_values(":m", s(meta_user_id))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::from_sdk)?;
            for key in page.items() {
                let (Some(pk), Some(sk)) = (get_s(key, "pk"), get_s(key, "sk")) else {
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
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
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
    })
}
