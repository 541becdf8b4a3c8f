//! Owner claims and Page aliases: who a webhook entry belongs to.
//!
//! Items, in the connections table:
//! - owner claim: `pk = ACCOUNT#<account>`, `sk = OWNER`, `owner_user_id`,
//!   `providers` (set). Connecting writes it in the same transaction as the
//!   connection, on condition that nobody else holds the account. A claim
//!   whose `providers` is gone (its last connection was deleted, and the
//!   claim's own delete failed) holds nothing: it neither blocks anyone
//!   from connecting the account nor routes webhooks.
//! - Page alias: `pk = PAGE#<page>`, `sk = ACCOUNT`, `account_id`,
//!   `owner_user_id`, `linked_at`. Page webhooks carry the Page id: it routes
//!   them. A Page links one Instagram account at a time, and Meta may link it
//!   to another one later: the newest link wins (an older write never
//!   replaces a newer one), and a delete removes an alias only while it is
//!   still the deleted connection's, so one user's delete never removes
//!   another's routing.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use time::OffsetDateTime;

use super::batch::jittered;
use super::{epoch, get_consistent, get_s, item_key, s, ConnectionStore, Item, StoreError};
use crate::connection::Connection;
use crate::logging::tag;
use crate::provider::Provider;

/// Who a webhook entry belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub user_id: String,
    /// The Instagram account (for a Page entry, the account linked to it).
    pub account_id: String,
    /// The providers through which the owner connected it.
    pub providers: Vec<Provider>,
}

fn claim_key(account_id: &str) -> Item {
    item_key(format!("ACCOUNT#{account_id}"), "OWNER")
}

fn alias_key(page_id: &str) -> Item {
    item_key(format!("PAGE#{page_id}"), "ACCOUNT")
}

fn providers_attr(provider: Provider) -> AttributeValue {
    AttributeValue::Ss(vec![provider.as_str().to_string()])
}

/// Claims the account for the connection's user (or adds a provider to their
/// claim); fails the transaction if another user holds it.
pub(super) fn claim(table: &str, conn: &Connection, now: OffsetDateTime) -> TransactWriteItem {
    let set = "SET owner_user_id = :u, updated_at = :now ADD providers :p";
    // A set never stays empty in DynamoDB: no `providers`, nobody holds it.
    let condition = "attribute_not_exists(owner_user_id) OR owner_user_id = :u \
                     OR attribute_not_exists(providers)";
    claim_update(table, conn, now, set, condition)
}

/// Takes the connection's provider out of its owner's claim.
pub(super) fn release(table: &str, conn: &Connection, now: OffsetDateTime) -> TransactWriteItem {
    let set = "DELETE providers :p SET updated_at = :now";
    claim_update(table, conn, now, set, "owner_user_id = :u")
}

/// An update of the claim binding `:u` (the user), `:p` (the provider) and
/// `:now`.
fn claim_update(
    table: &str,
    conn: &Connection,
    now: OffsetDateTime,
    expression: &str,
    condition: &str,
) -> TransactWriteItem {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(claim_key(&conn.account_id)))
        .update_expression(expression)
        .condition_expression(condition)
        .expression_attribute_values(":u", s(&conn.user_id))
        .expression_attribute_values(":now", epoch(now))
        .expression_attribute_values(":p", providers_attr(conn.provider))
        .build()
        .expect("claim update is complete");
    TransactWriteItem::builder().update(update).build()
}

/// The Page alias of a Facebook connection, if it has a Page: on condition
/// that no newer link of the Page was written meanwhile.
pub(super) fn put_alias(
    table: &str,
    conn: &Connection,
    now: OffsetDateTime,
) -> Option<TransactWriteItem> {
    let mut item = alias_key(conn.page_id.as_deref()?);
    item.insert("account_id".into(), s(&conn.account_id));
    item.insert("owner_user_id".into(), s(&conn.user_id));
    item.insert("linked_at".into(), epoch(now));
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(
            "attribute_not_exists(pk) OR attribute_not_exists(linked_at) \
             OR linked_at <= :now OR owner_user_id = :u",
        )
        .expression_attribute_values(":now", epoch(now))
        .expression_attribute_values(":u", s(&conn.user_id))
        .build()
        .expect("alias put is complete");
    Some(TransactWriteItem::builder().put(put).build())
}

/// Deletes the connection's Page alias on condition that it still routes the
/// Page to this connection (the caller checked it does: [`alias_is_of`]).
pub(super) fn delete_alias(table: &str, conn: &Connection) -> Option<TransactWriteItem> {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(alias_key(conn.page_id.as_deref()?)))
        .condition_expression("owner_user_id = :u AND account_id = :a")
        .expression_attribute_values(":u", s(&conn.user_id))
        .expression_attribute_values(":a", s(&conn.account_id))
        .build()
        .expect("complete");
    Some(TransactWriteItem::builder().delete(delete).build())
}

/// Whether an alias item routes its Page to `conn`.
fn alias_is_of(item: &Item, conn: &Connection) -> bool {
    get_s(item, "owner_user_id").as_deref() == Some(conn.user_id.as_str())
        && get_s(item, "account_id").as_deref() == Some(conn.account_id.as_str())
}

/// Attempts at the owner claim's last delete, and the pause before the first
/// retry (doubled each time, with jitter).
const CLAIM_DELETE_ATTEMPTS: u32 = 4;
const CLAIM_DELETE_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

impl ConnectionStore {
    /// Who owns the account, if anyone (a released claim is nobody's).
    pub async fn owner_of(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        let item = get_consistent(&self.client, &self.table, claim_key(account_id)).await?;
        Ok(item
            .as_ref()
            .and_then(owner_from)
            .map(|(_, owner, _)| owner.user_id))
    }

    /// Deletes the owner claim once no provider of this owner holds the
    /// account any more. Retried with backoff; a claim it still cannot
    /// delete is logged (by a hash of the account) and holds nothing (see
    /// the module docs), so it never blocks the account.
    pub(super) async fn drop_unused_claim(&self, conn: &Connection) {
        let mut pause = CLAIM_DELETE_PAUSE;
        for attempt in 1..=CLAIM_DELETE_ATTEMPTS {
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(claim_key(&conn.account_id)))
                .condition_expression("attribute_not_exists(providers) AND owner_user_id = :u")
                .expression_attribute_values(":u", s(&conn.user_id))
                .send()
                .await;
            match result {
                Ok(_) => return,
                // Still held (another provider of this owner), or taken since.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
                {
                    return
                }
                Err(e) if attempt == CLAIM_DELETE_ATTEMPTS => {
                    tracing::error!(
                        account = %tag(&conn.account_id),
                        error = %StoreError::from_sdk(e),
                        "could not delete a released owner claim; it holds nothing"
                    );
                }
                Err(_) => {
                    tokio::time::sleep(jittered(pause)).await;
                    pause *= 2;
                }
            }
        }
    }

    /// Whether the connection's Page alias still routes its Page to it.
    pub(super) async fn alias_is_still(&self, conn: &Connection) -> Result<bool, StoreError> {
        let Some(page) = conn.page_id.as_deref() else {
            return Ok(false);
        };
        let item = get_consistent(&self.client, &self.table, alias_key(page)).await?;
        Ok(item.is_some_and(|i| alias_is_of(&i, conn)))
    }

    /// Whether a connection made through `provider` holds the account now
    /// (anyone's, any time after a delete): then the webhook subscription at
    /// Meta (the account's, or for Facebook its Page's) is that connection's
    /// and must stay.
    pub async fn subscription_in_use(
        &self,
        provider: Provider,
        account_id: &str,
        page_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let claim = get_consistent(&self.client, &self.table, claim_key(account_id)).await?;
        let held = claim
            .as_ref()
            .and_then(owner_from)
            .is_some_and(|(_, owner, _)| owner.providers.contains(&provider));
        if held {
            return Ok(true);
        }
        match (provider, page_id) {
            (Provider::Facebook, Some(page)) => {
                Ok(get_consistent(&self.client, &self.table, alias_key(page))
                    .await?
                    .is_some())
            }
            _ => Ok(false),
        }
    }

    /// The owners of webhook entry ids (Instagram accounts or Pages), in one
    /// read. Ids nobody connected are absent.
    pub async fn owners(&self, entry_ids: &[&str]) -> Result<HashMap<String, Owner>, StoreError> {
        let mut owners = HashMap::new();
        let mut ids: Vec<&str> = entry_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        // BatchGetItem takes 100 keys; each id asks for two.
        for chunk in ids.chunks(50) {
            let keys = chunk
                .iter()
                .flat_map(|id| [claim_key(id), alias_key(id)])
                .collect();
            for item in self.batch_get(keys).await? {
                match owner_from(&item) {
                    Some((id, owner, true)) => {
                        owners.insert(id, owner);
                    }
                    // An account's own claim wins over a Page alias.
                    Some((id, owner, false)) => {
                        owners.entry(id).or_insert(owner);
                    }
                    None => {}
                }
            }
        }
        Ok(owners)
    }
}

/// The entry id an owner claim or Page alias answers for, its owner, and
/// whether it is a claim (rather than an alias).
fn owner_from(item: &Item) -> Option<(String, Owner, bool)> {
    let pk = get_s(item, "pk").unwrap_or_default();
    let user_id = get_s(item, "owner_user_id")?;
    if let Some(account) = pk.strip_prefix("ACCOUNT#") {
        let providers: Vec<Provider> = item
            .get("providers")
            .and_then(|v| v.as_ss().ok())
            .map(|ps| ps.iter().filter_map(|p| Provider::parse(p)).collect())
            .unwrap_or_default();
        if providers.is_empty() {
            return None; // released: nobody's
        }
        let owner = Owner {
            user_id,
            account_id: account.to_string(),
            providers,
        };
        Some((account.to_string(), owner, true))
    } else if let Some(page) = pk.strip_prefix("PAGE#") {
        let owner = Owner {
            user_id,
            account_id: get_s(item, "account_id").unwrap_or_default(),
            providers: vec![Provider::Facebook],
        };
        Some((page.to_string(), owner, false))
    } else {
        None
    }
}
