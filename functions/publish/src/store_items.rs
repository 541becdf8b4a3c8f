//! How a post and its keys are written as DynamoDB attributes, and read
//! back.

use std::collections::HashMap;

use shared::aws_sdk_dynamodb::types::AttributeValue;

use crate::post::Post;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn get_s(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key)?.as_n().ok()?.parse().ok()
}

pub(super) fn created_ms(post: &Post) -> i64 {
    (post.created_at.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(super) fn parse(item: &Item) -> Option<Post> {
    let doc = get_s(item, "doc")?;
    match serde_json::from_str::<Post>(&doc) {
        Ok(mut post) => {
            post.version = get_n(item, "version").unwrap_or(0) as u64;
            Some(post)
        }
        Err(e) => {
            tracing::error!(error = %e, "a stored post does not parse");
            None
        }
    }
}

pub(super) fn condition_failed<R>(
    e: &shared::aws_sdk_dynamodb::error::SdkError<
        shared::aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> bool {
    use shared::aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    matches!(
        e.as_service_error(),
        Some(E::TransactionCanceledException(c))
            if c.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
    )
}
