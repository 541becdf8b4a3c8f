//! The routes' store in memory: connections, posts (with where each is due,
//! as the sparse `by_due` index holds it) and idempotency records, written
//! as `store.rs` writes them: a create stores the post and its record
//! together or neither, a save only over the version read, a read of a
//! connection's posts as DynamoDB's query gives it: newest first, the status
//! filtered within the posts read (a filter expression applies after the
//! limit), and where it stopped whenever it reached the limit, even when no
//! more posts follow.

use std::collections::HashMap;

use shared::connection::Connection;
use shared::store::StoreError;
use shared::testing::InMemory;
use shared::time::OffsetDateTime;
use shared::Provider;

use crate::api_store::PostsApi;
use crate::post::Post;
use crate::store::{owner_key, place, IdemRecord, Place, Read, Write, KEEP_IDEMPOTENCY};

/// A stored post and when it is due (`None`: not in the due index).
#[derive(Clone, Debug)]
pub struct Row {
    pub post: Post,
    pub due: Option<OffsetDateTime>,
}

#[derive(Default)]
pub struct Tables {
    pub connections: Vec<Connection>,
    /// By post id.
    pub posts: HashMap<String, Row>,
    /// By key hash, with when the record expires.
    pub records: HashMap<String, (IdemRecord, OffsetDateTime)>,
    /// Only the posts table is down: connections still read.
    pub posts_down: bool,
}

pub type Memory = InMemory<Tables>;

/// Tables holding `connections`.
pub fn with(connections: Vec<Connection>) -> Memory {
    InMemory::new(Tables {
        connections,
        ..Tables::default()
    })
}

/// The tables for a posts call: down when all are, or the posts table is.
fn posts(memory: &Memory) -> Result<std::sync::MutexGuard<'_, Tables>, StoreError> {
    let tables = memory.up()?;
    if tables.posts_down {
        return Err(StoreError("the posts table is down".into()));
    }
    Ok(tables)
}

impl PostsApi for Memory {
    async fn connection(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> Result<Option<Connection>, StoreError> {
        let tables = self.up()?;
        let found = tables
            .connections
            .iter()
            .find(|c| shared::testing::is_connection(c, user_id, provider, account_id));
        Ok(found.cloned())
    }

    async fn create(
        &self,
        post: &Post,
        due: OffsetDateTime,
        idem: Option<&IdemRecord>,
        now: OffsetDateTime,
    ) -> Result<Option<IdemRecord>, StoreError> {
        let mut tables = posts(self)?;
        if let Some((earlier, expires)) = idem.and_then(|r| tables.records.get(&r.key_hash)) {
            if *expires < now {
                return Err(StoreError("an expired idempotency record".into()));
            }
            return Ok(Some(earlier.clone()));
        }
        if tables.posts.contains_key(&post.post_id) {
            return Err(StoreError("a new post's id already exists".into()));
        }
        let row = Row {
            post: post.clone(),
            due: Some(due),
        };
        tables.posts.insert(post.post_id.clone(), row);
        if let Some(r) = idem {
            let kept = (r.clone(), now + KEEP_IDEMPOTENCY);
            tables.records.insert(r.key_hash.clone(), kept);
        }
        Ok(None)
    }

    async fn get(&self, post_id: &str) -> Result<Option<Post>, StoreError> {
        Ok(posts(self)?.posts.get(post_id).map(|r| r.post.clone()))
    }

    async fn read_posts(
        &self,
        owner: &str,
        status: Option<&str>,
        after: Option<Place>,
        limit: usize,
    ) -> Result<Read, StoreError> {
        let tables = posts(self)?;
        let mut read: Vec<&Post> = (tables.posts.values())
            .map(|r| &r.post)
            .filter(|p| owner_key(&p.user_id, p.provider.as_str(), &p.account_id) == owner)
            .filter(|p| after.as_ref().is_none_or(|a| place(p) < *a))
            .collect();
        read.sort_by_key(|p| std::cmp::Reverse(place(p)));
        read.truncate(limit);
        let stopped_at = read
            .last()
            .filter(|_| read.len() == limit)
            .map(|p| place(p));
        let posts = read
            .into_iter()
            .filter(|p| status.is_none_or(|s| p.status.as_str() == s));
        Ok(Read {
            posts: posts.cloned().collect(),
            stopped_at,
        })
    }

    async fn save(&self, post: &mut Post, w: &Write<'_>) -> Result<bool, StoreError> {
        if w.lease.is_some() {
            return Err(StoreError("the routes never write under a lease".into()));
        }
        let mut tables = posts(self)?;
        let Some(row) = tables.posts.get_mut(&post.post_id) else {
            return Ok(false);
        };
        if row.post.version != post.version {
            return Ok(false);
        }
        post.version += 1;
        *row = Row {
            post: post.clone(),
            due: w.due,
        };
        Ok(true)
    }
}
