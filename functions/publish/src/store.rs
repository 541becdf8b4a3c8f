//! Posts in DynamoDB (`POSTS_TABLE`): one item per post (its JSON in `doc`,
//! the attributes the indexes and conditions need beside it), idempotency
//! records next to them, a sparse sharded `by_due` index (only posts with
//! work left are in it), `by_owner` for listing, a lease per post, and every
//! change written only over the version read.

use sha2::Digest;
use shared::aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem};
use shared::aws_sdk_dynamodb::Client;
use shared::store::{Event, StoreError};
use shared::time::{Duration, OffsetDateTime};

use crate::post::Post;

#[path = "store_items.rs"]
mod items;

use items::{condition_failed, created_ms, get_n, get_s, n, parse, s, Item};

/// Shards of the due index: a minute's posts spread over this many partitions.
pub const DUE_SHARDS: u8 = 16;
/// Finished posts are kept this long, then expire (TTL).
pub const KEEP_FINISHED: Duration = Duration::days(90);
/// Idempotency records are kept 24 hours.
pub const KEEP_IDEMPOTENCY: Duration = Duration::hours(24);

pub fn post_pk(post_id: &str) -> String {
    format!("POST#{post_id}")
}

/// The listing key of a connection's posts.
pub fn owner_key(user_id: &str, provider: &str, account_id: &str) -> String {
    format!("{user_id}|{provider}|{account_id}")
}

/// The due-index shard of a post (stable: a hash of its id).
pub fn shard_of(post_id: &str) -> String {
    let h = sha2::Sha256::digest(post_id.as_bytes());
    (h[0] % DUE_SHARDS).to_string()
}

/// A post's place in its connection's listing (the `by_owner` index's
/// order): its creation in ms and its id.
pub type Place = (i64, String);

pub fn place(post: &Post) -> Place {
    (created_ms(post), post.post_id.clone())
}

/// One read of a connection's posts ([`PostStore::read_owned`]).
#[derive(Clone, Debug, Default)]
pub struct Read {
    /// The posts read that are of the status asked (all, without one).
    pub posts: Vec<Post>,
    /// Where the read stopped when it reached its limit: more posts may
    /// follow, or none. `None`: none follow.
    pub stopped_at: Option<Place>,
}

/// A stored answer to a create with an `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdemRecord {
    /// A hash of (owner, connection as connected, key).
    pub key_hash: String,
    /// A hash of the request, to tell a reused key.
    pub request_hash: String,
    pub post_id: String,
    pub status: u16,
}

/// What taking a post's lease came to.
pub enum Lease {
    Taken(Box<Post>),
    /// Another run holds it, or the post is no longer due.
    Busy,
}

/// Where a post goes after a write: due again at a time (in the index), or
/// not (finished).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write<'a> {
    pub due: Option<OffsetDateTime>,
    /// The lease this write is made under (kept when `keep_lease`).
    pub lease: Option<(&'a str, OffsetDateTime)>,
    pub keep_lease: bool,
}

#[derive(Clone)]
pub struct PostStore {
    client: Client,
    table: String,
    events_table: String,
}

impl PostStore {
    pub fn new(client: Client, table: &str, events_table: &str) -> Self {
        Self {
            client,
            table: table.into(),
            events_table: events_table.into(),
        }
    }

    fn item(&self, post: &Post, w: &Write<'_>) -> Result<Item, StoreError> {
        let mut item = Item::from([
            ("pk".into(), s(post_pk(&post.post_id))),
            ("doc".into(), s(serde_json::to_string(post)?)),
            ("status".into(), s(post.status.as_str())),
            ("version".into(), n(post.version)),
            (
                "owner_key".into(),
                s(owner_key(
                    &post.user_id,
                    post.provider.as_str(),
                    &post.account_id,
                )),
            ),
            ("created_ms".into(), n(created_ms(post))),
        ]);
        if let Some(due) = w.due {
            item.insert("due_shard".into(), s(shard_of(&post.post_id)));
            item.insert("due_at".into(), n(due.unix_timestamp()));
        }
        if let (true, Some((owner, until))) = (w.keep_lease, w.lease) {
            item.insert("lease_owner".into(), s(owner));
            item.insert("lease_until".into(), n(until.unix_timestamp()));
        }
        if post.status.is_final() {
            let expires = post.updated_at + KEEP_FINISHED;
            item.insert("expires_at".into(), n(expires.unix_timestamp()));
        }
        Ok(item)
    }

    /// Stores a new post (and its idempotency record). `Ok(None)`: stored;
    /// `Ok(Some(record))`: the key was used before, here is its record.
    pub async fn create(
        &self,
        post: &Post,
        due: OffsetDateTime,
        idem: Option<&IdemRecord>,
        now: OffsetDateTime,
    ) -> Result<Option<IdemRecord>, StoreError> {
        let w = Write {
            due: Some(due),
            lease: None,
            keep_lease: false,
        };
        let put_post = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.item(post, &w)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("complete");
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_post).build());
        if let Some(r) = idem {
            let item = Item::from([
                ("pk".into(), s(format!("IDEM#{}", r.key_hash))),
                ("request_hash".into(), s(&r.request_hash)),
                ("post_id".into(), s(&r.post_id)),
                ("status_code".into(), n(r.status)),
                (
                    "expires_at".into(),
                    n((now + KEEP_IDEMPOTENCY).unix_timestamp()),
                ),
            ]);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .expect("complete");
            tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
        }
        match tx.send().await {
            Ok(_) => Ok(None),
            Err(e) if condition_failed(&e) => match idem {
                Some(r) => self.idem(&r.key_hash, now).await,
                None => Err(StoreError("a new post's id already exists".into())),
            },
            Err(e) => Err(StoreError::from_sdk(e)),
        }
    }

    async fn idem(
        &self,
        key_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<IdemRecord>, StoreError> {
        let Some(item) = self.read(&format!("IDEM#{key_hash}")).await? else {
            return Err(StoreError("the idempotency record vanished".into()));
        };
        if get_n(&item, "expires_at").is_some_and(|t| t < now.unix_timestamp()) {
            return Err(StoreError(
                "an expired idempotency record is still stored".into(),
            ));
        }
        Ok(Some(IdemRecord {
            key_hash: key_hash.into(),
            request_hash: get_s(&item, "request_hash").unwrap_or_default(),
            post_id: get_s(&item, "post_id").unwrap_or_default(),
            status: get_n(&item, "status_code").unwrap_or(200) as u16,
        }))
    }

    async fn read(&self, pk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(out.item)
    }

    pub async fn get(&self, post_id: &str) -> Result<Option<Post>, StoreError> {
        Ok(self.read(&post_pk(post_id)).await?.as_ref().and_then(parse))
    }

    /// Writes `post` (its version bumped) over the version it was read at,
    /// with `event` in the same transaction. `Ok(false)`: it changed
    /// meanwhile (cancelled, another run): nothing written.
    pub async fn save(
        &self,
        post: &mut Post,
        w: &Write<'_>,
        event: Option<&Event>,
    ) -> Result<bool, StoreError> {
        let read_at = post.version;
        post.version += 1;
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.item(post, w)?))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(read_at));
        if let Some((owner, _)) = w.lease {
            put = put
                .condition_expression("version = :v AND lease_owner = :o")
                .expression_attribute_values(":o", s(owner));
        }
        let put = put.build().expect("complete");
        let result = match event {
            None => self.put_one(put).await,
            Some(event) => self.put_with_event(put, event).await,
        };
        if !matches!(result, Ok(true)) {
            post.version = read_at;
        }
        result
    }

    /// One conditional put: `false` when its condition failed.
    async fn put_one(&self, put: Put) -> Result<bool, StoreError> {
        let r = self
            .client
            .put_item()
            .table_name(put.table_name())
            .set_item(Some(put.item().clone()))
            .set_condition_expression(put.condition_expression().map(str::to_string))
            .set_expression_attribute_values(put.expression_attribute_values().cloned())
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::from_sdk(e)),
        }
    }

    /// The put and its event in one transaction: `false` when its condition failed.
    async fn put_with_event(&self, put: Put, event: &Event) -> Result<bool, StoreError> {
        let r = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(
                TransactWriteItem::builder()
                    .put(event.to_put(&self.events_table))
                    .build(),
            )
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(StoreError::from_sdk(e)),
        }
    }

    /// Ids of posts in `shard` due up to `until`, soonest first, at most
    /// `limit`, and whether more are due.
    pub async fn due(
        &self,
        shard: &str,
        until: OffsetDateTime,
        limit: i32,
    ) -> Result<(Vec<String>, bool), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by_due")
            .key_condition_expression("due_shard = :s AND due_at <= :u")
            .expression_attribute_values(":s", s(shard))
            .expression_attribute_values(":u", n(until.unix_timestamp()))
            .limit(limit)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let ids = out
            .items()
            .iter()
            .filter_map(|i| get_s(i, "pk")?.strip_prefix("POST#").map(str::to_string))
            .collect();
        Ok((ids, out.last_evaluated_key().is_some()))
    }

    /// Takes a post's lease (a conditional write: only one run holds it,
    /// and only while the post is still due) and returns the post as that
    /// write left it.
    pub async fn take_lease(
        &self,
        post_id: &str,
        owner: &str,
        now: OffsetDateTime,
        lease_for: Duration,
    ) -> Result<Lease, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(post_pk(post_id)))
            .update_expression("SET lease_owner = :o, lease_until = :until")
            .condition_expression(
                "attribute_exists(due_at) AND due_at <= :t AND (attribute_not_exists(lease_until) OR lease_until < :t)",
            )
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":until", n((now + lease_for).unix_timestamp()))
            .expression_attribute_values(":t", n(now.unix_timestamp()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(match out.attributes.as_ref().and_then(parse) {
                Some(post) => Lease::Taken(Box::new(post)),
                None => Lease::Busy,
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(Lease::Busy)
            }
            Err(e) => Err(StoreError::from_sdk(e)),
        }
    }

    /// One read of a connection's posts (`owner`), newest first, after
    /// `after`: at most `limit` posts read, of which only those of `status`
    /// (when given) come back, as DynamoDB applies a filter after the limit.
    /// DynamoDB says where it stopped whenever it reached `limit` (or 1 MB),
    /// whether or not more posts follow.
    pub async fn read_owned(
        &self,
        owner: &str,
        status: Option<&str>,
        after: Option<Place>,
        limit: usize,
    ) -> Result<Read, StoreError> {
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by_owner")
            .key_condition_expression("owner_key = :o")
            .expression_attribute_values(":o", s(owner))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        if let Some(st) = status {
            q = q
                .filter_expression("#st = :st")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":st", s(st));
        }
        if let Some((ms, id)) = after {
            q = q.set_exclusive_start_key(Some(Item::from([
                ("pk".into(), s(post_pk(&id))),
                ("owner_key".into(), s(owner)),
                ("created_ms".into(), n(ms)),
            ])));
        }
        let out = q.send().await.map_err(StoreError::from_sdk)?;
        let posts = out.items().iter().filter_map(parse).collect();
        let stopped_at = out.last_evaluated_key.as_ref().and_then(|k| {
            let id = get_s(k, "pk")?.strip_prefix("POST#")?.to_string();
            Some((get_n(k, "created_ms")?, id))
        });
        Ok(Read { posts, stopped_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_spread_over_the_due_shards_and_keep_theirs() {
        let shards: std::collections::HashSet<String> =
            (0..200).map(|i| shard_of(&format!("post_{i}"))).collect();
        assert_eq!(shards.len(), DUE_SHARDS as usize);
        assert_eq!(shard_of("post_x"), shard_of("post_x"));
    }
}
