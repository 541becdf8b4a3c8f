//! The proxy's limits (CONTRACT.md, "Per-caller limits"). Before Meta is
//! called: the caller's token buckets (its user's and its connection's) and
//! Meta's blocks (the account's and the whole app's), all taken or read in
//! the same round trip as the connection. After Meta answered: the block(s)
//! its answer causes, for every container.

use serde_json::{json, Value};
use shared::connection::Connection;
use shared::graph::ratelimit::Blocks;
use shared::graph::store::{Block, Bucket, Taken};
use shared::meta::proxy::GraphAnswer;
use shared::store::StoreError;
use shared::time::OffsetDateTime;
use shared::vault::DataKeys;
use shared::Provider;

use crate::{Graph, ProxyAnswer, ProxyRequest, ProxyStore};

/// `Some(answer)`: the caller is over a bucket (`429`), or its buckets could
/// not be taken (`503`).
type BucketAnswer = Result<Option<ProxyAnswer>, StoreError>;

/// What the store said before Meta is called.
pub(crate) struct Limits {
    /// Meta's block on the account or on the whole app, whichever ends later.
    pub(crate) block: Result<Option<Block>, StoreError>,
    /// The caller's buckets (both doors name the user).
    pub(crate) buckets: BucketAnswer,
}

impl<K: DataKeys, S: ProxyStore> Graph<K, S> {
    /// The blocks and the caller's buckets.
    pub(crate) async fn limits(&self, req: &ProxyRequest, now: OffsetDateTime) -> Limits {
        let provider = req.provider;
        let (account, app, buckets) = tokio::join!(
            self.store.block(provider, &req.account_id, now),
            self.store.app_block(provider, now),
            self.take_buckets(&req.user_id, provider, &req.account_id, now)
        );
        Limits {
            block: later(account, app),
            buckets,
        }
    }

    /// `Some(429)` when the caller is over its user's or its connection's
    /// bucket; `Some(503)` when they could not be taken.
    pub(crate) async fn over_bucket(&self, buckets: BucketAnswer) -> Option<ProxyAnswer> {
        buckets.unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not take from the caller's buckets");
            Some(ProxyAnswer::unavailable())
        })
    }

    async fn take_buckets(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
        now: OffsetDateTime,
    ) -> BucketAnswer {
        let rules = self.config.limits;
        let connection = Bucket::Connection {
            user_id,
            provider,
            account_id,
        };
        let (user, connection) = tokio::join!(
            self.store.take(Bucket::User(user_id), rules.user, now),
            self.store.take(connection, rules.connection, now)
        );
        Ok(match (user?, connection?) {
            (Taken::Limited { retry_after }, _) => Some(rate_limited("you", retry_after)),
            (_, Taken::Limited { retry_after }) => {
                Some(rate_limited("this connection", retry_after))
            }
            (Taken::Allowed, Taken::Allowed) => None,
        })
    }

    /// Records the block(s) Meta's answer causes. Another account's owner
    /// sees the app's block: only Meta's error or the app's usage, never
    /// this account's usage (its id is in it).
    pub(crate) async fn record_blocks(
        &self,
        conn: &Connection,
        blocks: Blocks,
        block: &Block,
        answer: &GraphAnswer,
    ) {
        let account = async {
            if blocks.account {
                self.store
                    .put_block(conn.provider, &conn.account_id, block)
                    .await?;
            }
            Ok::<_, StoreError>(())
        };
        let app = async {
            if blocks.app {
                let app_block = Block {
                    until: block.until,
                    meta: app_meta(&block.meta, answer),
                };
                self.store.put_app_block(conn.provider, &app_block).await?;
                tracing::warn!(provider = %conn.provider, "meta throttles the whole app");
            }
            Ok::<_, StoreError>(())
        };
        let (account, app) = tokio::join!(account, app);
        for e in [account.err(), app.err()].into_iter().flatten() {
            tracing::error!(error = %e, "could not record Meta's block");
        }
    }
}

fn rate_limited(whom: &str, retry_after: i64) -> ProxyAnswer {
    ProxyAnswer::error(
        429,
        "rate_limited",
        &format!(
            "Too many calls for {whom} through the proxy. Try again after Retry-After seconds."
        ),
    )
    .header("retry-after", retry_after.max(1).to_string())
}

/// The block that ends later.
fn later(
    account: Result<Option<Block>, StoreError>,
    app: Result<Option<Block>, StoreError>,
) -> Result<Option<Block>, StoreError> {
    Ok(match (account?, app?) {
        (Some(a), Some(b)) => Some(if b.until > a.until { b } else { a }),
        (a, b) => a.or(b),
    })
}

/// What the callers of the app's other accounts are shown.
fn app_meta(meta: &Value, answer: &GraphAnswer) -> Value {
    if meta.get("code").is_some() {
        let keep = ["code", "type", "message", "is_transient"];
        Value::Object(
            keep.iter()
                .filter_map(|k| Some((k.to_string(), meta.get(*k)?.clone())))
                .collect(),
        )
    } else {
        let usage = answer
            .header("x-app-usage")
            .and_then(|v| serde_json::from_str::<Value>(v).ok())
            .unwrap_or(Value::Null);
        json!({"usage": {"x-app-usage": usage}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(minute: u8) -> Block {
        Block {
            until: OffsetDateTime::from_unix_timestamp(1_796_385_600).unwrap()
                + shared::time::Duration::minutes(minute.into()),
            meta: json!({"m": minute}),
        }
    }

    #[test]
    fn the_block_that_ends_later_wins() {
        assert_eq!(later(Ok(None), Ok(None)).unwrap(), None);
        assert_eq!(later(Ok(Some(block(1))), Ok(None)).unwrap(), Some(block(1)));
        assert_eq!(later(Ok(None), Ok(Some(block(2)))).unwrap(), Some(block(2)));
        assert_eq!(
            later(Ok(Some(block(5))), Ok(Some(block(2)))).unwrap(),
            Some(block(5))
        );
        assert_eq!(
            later(Ok(Some(block(1))), Ok(Some(block(2)))).unwrap(),
            Some(block(2))
        );
        assert!(later(Ok(Some(block(1))), Err(StoreError("down".into()))).is_err());
    }

    #[test]
    fn other_accounts_see_metas_error_or_the_apps_usage_only() {
        let answer = GraphAnswer {
            status: 400,
            headers: vec![
                ("x-app-usage".into(), r#"{"call_count":100}"#.into()),
                (
                    "x-business-use-case-usage".into(),
                    r#"{"17841400000000001":[{"call_count":100}]}"#.into(),
                ),
            ],
            body: Vec::new(),
            latency: std::time::Duration::ZERO,
        };
        let error = json!({"code": 4, "type": "OAuthException", "message": "Application request limit reached",
            "fbtrace_id": "t", "error_data": {"account": "17841400000000001"}});
        let shown = app_meta(&error, &answer);
        assert_eq!(
            shown,
            json!({"code": 4, "type": "OAuthException", "message": "Application request limit reached"})
        );
        let usage = json!({"usage": {"x-business-use-case-usage": {"17841400000000001": []}}});
        let shown = app_meta(&usage, &answer).to_string();
        assert!(!shown.contains("17841400000000001"), "{shown}");
        assert!(shown.contains("call_count"), "{shown}");
    }
}
