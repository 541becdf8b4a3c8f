//! DynamoDB stores. Keys and attribute names live here and nowhere else.

mod batch;
mod cleanup;
pub mod connections;
mod deletions;
pub mod events;
pub(crate) mod items;
mod leases;
mod owners;
pub mod states;
mod tombstones;
mod update;
mod user_connections;

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;

pub use cleanup::CleanupJob;
pub use connections::{conn_sk, user_pk, ConnectionKey, ConnectionStore, SaveError};
pub use deletions::{
    DeletionAccount, DeletionPerson, DeletionRecord, DeletionStatus, DELETIONS_PER_PERSON,
};
pub use events::{Event, EventStore};
pub use owners::Owner;
pub use states::StateStore;
pub(crate) use update::UpdateExpr;
pub use user_connections::{Stored, UserConnections};

#[derive(Debug, thiserror::Error)]
#[error("store failed: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn from_sdk<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> Self
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        Self(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self(format!("an item did not serialize: {e}"))
    }
}

pub(crate) type Item = HashMap<String, AttributeValue>;

/// The `pk`/`sk` key of an item in the connections table.
pub(crate) fn item_key(pk: String, sk: &str) -> Item {
    Item::from([("pk".into(), s(pk)), ("sk".into(), s(sk))])
}

/// One item, read strongly consistent.
pub(crate) async fn get_consistent(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: Item,
) -> Result<Option<Item>, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(StoreError::from_sdk)?;
    Ok(out.item)
}

/// A conditional single-item write: `Ok(true)` written, `Ok(false)` its
/// condition did not hold.
pub(crate) fn written<T, E, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.code() == Some("ConditionalCheckFailedException")) =>
        {
            Ok(false)
        }
        Err(e) => Err(StoreError::from_sdk(e)),
    }
}

/// `update` (built for a transaction) as a single UpdateItem, with the same
/// key, expressions and condition.
pub(crate) fn update_alone(
    client: &aws_sdk_dynamodb::Client,
    update: aws_sdk_dynamodb::types::Update,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    client
        .update_item()
        .table_name(update.table_name())
        .set_key(Some(update.key().clone()))
        .update_expression(update.update_expression())
        .set_condition_expression(update.condition_expression().map(str::to_string))
        .set_expression_attribute_names(update.expression_attribute_names().cloned())
        .set_expression_attribute_values(update.expression_attribute_values().cloned())
        .set_return_values_on_condition_check_failure(
            update.return_values_on_condition_check_failure().cloned(),
        )
}

/// A transaction: `Ok(true)` written, `Ok(false)` one of its conditions did
/// not hold (a conflict or any other cancellation is an error).
pub(crate) fn transacted<T, R: std::fmt::Debug>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>>,
) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failure(&e) => Ok(false),
        Err(e) => Err(StoreError::from_sdk(e)),
    }
}

/// Whether a transaction was cancelled because a condition failed.
pub(crate) fn is_condition_failure<R>(
    e: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>,
) -> bool {
    matches!(
        e.as_service_error(),
        Some(TransactWriteItemsError::TransactionCanceledException(c))
            if c.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
    )
}

/// Every item a query returns, following its pages, up to `limit`.
pub(crate) async fn query_all(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    limit: usize,
) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    query_each(query, limit, |item| items.push(item.clone())).await?;
    Ok(items)
}

/// Hands every item a query returns to `read`, following its pages, up to
/// `limit`; how many it read. Each page is read as it arrives, so only one
/// page of raw items is held at a time (a long query, such as the refresh
/// run's due keys, keeps only what `read` keeps).
pub(crate) async fn query_each(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    limit: usize,
    mut read: impl FnMut(&Item),
) -> Result<usize, StoreError> {
    let mut count = 0;
    let mut start = None;
    loop {
        let page = query
            .clone()
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        for item in page.items().iter().take(limit - count) {
            read(item);
            count += 1;
        }
        start = page.last_evaluated_key;
        if start.is_none() || count >= limit {
            return Ok(count);
        }
    }
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn get_b(item: &Item, key: &str) -> Option<Vec<u8>> {
    item.get(key)
        .and_then(|v| v.as_b().ok())
        .map(|b| b.as_ref().to_vec())
}

pub(crate) fn epoch(t: time::OffsetDateTime) -> AttributeValue {
    n(t.unix_timestamp())
}

pub(crate) fn get_time(item: &Item, key: &str) -> Option<time::OffsetDateTime> {
    get_n(item, key).and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
}

/// The `webhooks` attribute of a connection.
pub(crate) fn webhooks_attr(subscribed: bool) -> AttributeValue {
    s(if subscribed {
        "subscribed"
    } else {
        "unsubscribed"
    })
}
