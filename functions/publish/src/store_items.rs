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
            // Where and what kind, not serde's text: it quotes what it met
            // (a caption, a media URL).
            let (kind, line, column) = (e.classify(), e.line(), e.column());
            tracing::error!(?kind, line, column, "a stored post does not parse");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_post_that_does_not_parse_is_skipped_and_its_text_is_never_logged() {
        let sink = Sink::default();
        let writer = sink.clone();
        let logs = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        // serde_json's error would quote the string it met.
        let doc = r#"{"transient_failures": "a caption, never logged"}"#;
        let item = Item::from([("doc".to_string(), AttributeValue::S(doc.into()))]);
        let parsed = tracing::subscriber::with_default(logs, || parse(&item));
        assert!(parsed.is_none());
        let logged = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("a stored post does not parse"), "{logged}");
        assert!(!logged.contains("caption"), "{logged}");
    }
}
