//! The items behind the proxy's limits, in `GRAPH_TABLE` beside the
//! accounts' blocks (`RATE#<provider>#<account>`):
//!
//! - `RATE#user#<hash>` (the user id's SHA-256) and
//!   `RATE#conn#<provider>#<hash>` (of the user id and the account id): a
//!   token bucket, `full_at_us` (see [`crate::graph::buckets`]), TTL an hour
//!   after it would be full again. A connection's bucket is keyed by the
//!   caller too, so nobody can drain another user's bucket by naming an
//!   account that is not theirs.
//! - `RATE#app#<provider>`: Meta's block on every account of that provider's
//!   app, the same attributes as an account's block.

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

use super::{Block, GraphStore};
use crate::graph::buckets::{self, BucketRule, Take};
use crate::provider::Provider;
use crate::store::{get_n, n, StoreError};

/// Conditional writes tried for one take before giving up. Two always
/// decide (a full bucket, then one in use, or the other way round): a
/// bucket's `full_at` only ever moves later.
const TAKE_ATTEMPTS: usize = 3;

/// Buckets a container remembers at most (about 100 bytes each).
const HINTS: usize = 10_000;

/// The latest `full_at` this container saw of each bucket. A bucket's
/// `full_at` only moves later (until its item expires, idle, which reads as
/// full), so a hint is a lower bound: it tells which write to try first (one
/// round trip instead of two for a busy caller), and a hint already over the
/// bucket is the answer without asking DynamoDB at all.
#[derive(Clone, Default)]
pub(super) struct Hints(Arc<Mutex<HashMap<String, i64>>>);

impl Hints {
    fn get(&self, pk: &str) -> Option<i64> {
        self.0.lock().expect("hints lock").get(pk).copied()
    }

    fn learn(&self, pk: &str, full_at: i64, now_us: i64) {
        let mut map = self.0.lock().expect("hints lock");
        if map.len() >= HINTS && !map.contains_key(pk) {
            // Past instants say nothing a refill would not: drop them first.
            map.retain(|_, f| *f > now_us);
            if map.len() >= HINTS {
                map.clear();
            }
        }
        let hint = map.entry(pk.to_string()).or_insert(full_at);
        *hint = (*hint).max(full_at);
    }
}

/// Whose bucket.
#[derive(Clone, Copy, Debug)]
pub enum Bucket<'a> {
    User(&'a str),
    Connection {
        user_id: &'a str,
        provider: Provider,
        account_id: &'a str,
    },
}

impl Bucket<'_> {
    fn pk(&self) -> String {
        let digest = |parts: &[&str]| {
            // A JSON array of the parts (compact, as `serde_json::to_vec`).
            let list: Vec<serde_json::Value> = parts.iter().map(|&p| p.into()).collect();
            hex::encode(Sha256::digest(serde_json::Value::from(list).to_string()))
        };
        match self {
            Bucket::User(user) => format!("RATE#user#{}", digest(&[user])),
            Bucket::Connection {
                user_id,
                provider,
                account_id,
            } => format!("RATE#conn#{provider}#{}", digest(&[user_id, account_id])),
        }
    }
}

/// The outcome of taking a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    Allowed,
    /// The bucket is empty: wait this many whole seconds (at least 1).
    Limited {
        retry_after: i64,
    },
}

/// A conditional write: done (with the `full_at_us` written), or refused
/// with the one stored then.
enum Write {
    Done(Option<i64>),
    Stale(Option<i64>),
}

fn app_pk(provider: Provider) -> String {
    format!("RATE#app#{provider}")
}

impl GraphStore {
    /// Meta's block on every account of `provider`'s app, if in force.
    pub async fn app_block(
        &self,
        provider: Provider,
        now: OffsetDateTime,
    ) -> Result<Option<Block>, StoreError> {
        self.block_at(app_pk(provider), now).await
    }

    /// Records that Meta blocked the whole app (a later block never
    /// shortens an earlier one).
    pub async fn put_app_block(&self, provider: Provider, block: &Block) -> Result<(), StoreError> {
        self.put_block_at(app_pk(provider), block).await
    }

    /// Takes a token from `bucket` at `now`: one `UpdateItem` when this
    /// container's hint guessed the bucket's state right, two when not, none
    /// when the hint already says the bucket is empty. When the writes keep
    /// meeting changed buckets, the call is limited for a second.
    pub async fn take(
        &self,
        bucket: Bucket<'_>,
        rule: BucketRule,
        now: OffsetDateTime,
    ) -> Result<Taken, StoreError> {
        let pk = bucket.pk();
        // Without a hint, guess an idle bucket (the common case).
        let mut step = buckets::take(rule, self.hints.get(&pk), now);
        for _ in 0..TAKE_ATTEMPTS {
            let update = match step {
                Take::Limited { retry_after } => return Ok(Taken::Limited { retry_after }),
                Take::Refill { full_at } => self
                    .bucket_update(&pk, rule, now)
                    .update_expression("SET full_at_us = :full_at, expires_at = :expires")
                    .condition_expression("attribute_not_exists(pk) OR full_at_us <= :now")
                    .expression_attribute_values(":full_at", n(full_at)),
                // Atomic: concurrent takes never conflict while tokens last.
                Take::Spend { .. } => self
                    .bucket_update(&pk, rule, now)
                    .update_expression(
                        "SET full_at_us = full_at_us + :interval, expires_at = :expires",
                    )
                    .condition_expression("full_at_us > :now AND full_at_us <= :last")
                    .expression_attribute_values(":interval", n(rule.interval_us()))
                    .expression_attribute_values(":last", n(rule.last_take_at(now))),
            };
            let (result, seen) = match write(update).await? {
                Write::Done(written) => (Some(Taken::Allowed), written),
                Write::Stale(stored) => {
                    step = buckets::take(rule, stored, now);
                    (None, stored)
                }
            };
            if let Some(full_at) = seen {
                self.hints.learn(&pk, full_at, buckets::micros(now));
            }
            if let Some(taken) = result {
                return Ok(taken);
            }
        }
        Ok(Taken::Limited { retry_after: 1 })
    }

    /// An `UpdateItem` of a bucket with `:now` and `:expires` bound.
    fn bucket_update(
        &self,
        pk: &str,
        rule: BucketRule,
        now: OffsetDateTime,
    ) -> UpdateItemFluentBuilder {
        let full_by = rule.last_take_at(now) + rule.interval_us();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", crate::store::s(pk))
            .expression_attribute_values(":now", n(buckets::micros(now)))
            .expression_attribute_values(":expires", n(full_by / 1_000_000 + 3600))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }
}

async fn write(update: UpdateItemFluentBuilder) -> Result<Write, StoreError> {
    match update.send().await {
        Ok(out) => Ok(Write::Done(
            out.attributes().and_then(|item| get_n(item, "full_at_us")),
        )),
        Err(e) => match e.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(c)) => Ok(Write::Stale(
                c.item().and_then(|item| get_n(item, "full_at_us")),
            )),
            _ => Err(StoreError::from_sdk(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_hold_no_user_id_and_never_collide() {
        let user = Bucket::User("auth0|user-1");
        assert!(user.pk().starts_with("RATE#user#"));
        assert!(!user.pk().contains("user-1"));
        let conn = |user_id, account_id| Bucket::Connection {
            user_id,
            provider: Provider::Instagram,
            account_id,
        };
        assert!(conn("u", "1").pk().starts_with("RATE#conn#instagram#"));
        // Another caller naming the same account has a bucket of its own.
        assert_ne!(conn("u", "1").pk(), conn("mallory", "1").pk());
        // No splitting of '#' makes two callers' buckets one.
        assert_ne!(conn("a#b", "1").pk(), conn("a", "b#1").pk());
        assert_ne!(app_pk(Provider::Instagram), app_pk(Provider::Facebook));
        assert!(!app_pk(Provider::Instagram).starts_with("RATE#instagram#"));
    }

    #[test]
    fn hints_only_move_later_and_stay_bounded() {
        let hints = Hints::default();
        assert_eq!(hints.get("a"), None);
        hints.learn("a", 50, 0);
        hints.learn("a", 20, 0);
        assert_eq!(hints.get("a"), Some(50), "never earlier than seen");
        for i in 1..HINTS as i64 {
            hints.learn(&format!("idle{i}"), 10, 0);
        }
        // Full: a new bucket drops the ones already full again at `now`,
        // keeps the busy one.
        hints.learn("b", 200, 20);
        assert_eq!(hints.get("idle7"), None);
        assert_eq!(hints.get("a"), Some(50));
        assert_eq!(hints.get("b"), Some(200));
        // Full of busy buckets: start over.
        for i in 2..HINTS as i64 {
            hints.learn(&format!("busy{i}"), 100, 20);
        }
        hints.learn("c", 300, 20);
        assert_eq!(hints.get("a"), None);
        assert_eq!(hints.get("c"), Some(300));
        assert!(hints.0.lock().unwrap().len() <= HINTS);
    }
}
