//! Owner claims and Page aliases: who a webhook entry belongs to.
//!
//! Items, in the connections table:
//! - owner claim: `pk = ACCOUNT#<account>`, `sk = OWNER`, `owner_user_id`,
//!   `providers` (set). Connecting writes it in the same transaction as the
//!   connection, on condition that nobody else owns the account.
//! - Page alias: `pk = PAGE#<page>`, `sk = ACCOUNT`, `account_id`,
//!   `owner_user_id`. Page webhooks carry the Page id: it routes them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem, Update,
};
use time::OffsetDateTime;

use super::{epoch, get_s, s, ConnectionStore, Item, StoreError};
use crate::connection::Connection;
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
    Item::from([
        ("pk".into(), s(format!("ACCOUNT#{account_id}"))),
        ("sk".into(), s("OWNER")),
    ])
}

fn alias_key(page_id: &str) -> Item {
    Item::from([
        ("pk".into(), s(format!("PAGE#{page_id}"))),
        ("sk".into(), s("ACCOUNT")),
    ])
}

fn providers_attr(provider: Provider) -> AttributeValue {
    AttributeValue::Ss(vec![provider.as_str().to_string()])
}

/// Claims the account for the connection's user (or adds a provider to their
/// claim); fails the transaction if another user owns it.
pub(super) fn claim(table: &str, conn: &Connection, now: OffsetDateTime) -> TransactWriteItem {
    let set = "SET owner_user_id = :u, updated_at = :now ADD providers :p";
    let condition = "attribute_not_exists(owner_user_id) OR owner_user_id = :u";
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

/// The Page alias of a Facebook connection, if it has a Page.
pub(super) fn put_alias(table: &str, conn: &Connection) -> Option<TransactWriteItem> {
    let mut item = alias_key(conn.page_id.as_deref()?);
    item.insert("account_id".into(), s(&conn.account_id));
    item.insert("owner_user_id".into(), s(&conn.user_id));
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .expect("alias put is complete");
    Some(TransactWriteItem::builder().put(put).build())
}

pub(super) fn delete_alias(table: &str, conn: &Connection) -> Option<TransactWriteItem> {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(alias_key(conn.page_id.as_deref()?)))
        .build()
        .expect("complete");
    Some(TransactWriteItem::builder().delete(delete).build())
}

impl ConnectionStore {
    /// Who owns the account, if anyone.
    pub async fn owner_of(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(claim_key(account_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(out.item.as_ref().and_then(|i| get_s(i, "owner_user_id")))
    }

    /// Deletes the owner claim once no provider of this owner holds the
    /// account any more (best effort: a claim left behind owns nothing).
    pub(super) async fn drop_unused_claim(&self, conn: &Connection) {
        let _ = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(claim_key(&conn.account_id)))
            .condition_expression("attribute_not_exists(providers) AND owner_user_id = :u")
            .expression_attribute_values(":u", s(&conn.user_id))
            .send()
            .await;
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

    /// Every item of `keys` that exists, following unprocessed keys.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
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
            items.extend(
                out.responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default(),
            );
            request = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys().is_empty());
        }
        Ok(items)
    }
}

/// The entry id an owner claim or Page alias answers for, its owner, and
/// whether it is a claim (rather than an alias).
fn owner_from(item: &Item) -> Option<(String, Owner, bool)> {
    let pk = get_s(item, "pk").unwrap_or_default();
    let user_id = get_s(item, "owner_user_id")?;
    if let Some(account) = pk.strip_prefix("ACCOUNT#") {
        let providers = item
            .get("providers")
            .and_then(|v| v.as_ss().ok())
            .map(|ps| ps.iter().filter_map(|p| Provider::parse(p)).collect())
            .unwrap_or_default();
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
