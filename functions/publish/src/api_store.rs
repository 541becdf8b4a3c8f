//! What the routes ask of the store, as a trait: DynamoDB ([`Stores`]) in
//! Lambda, an in-memory version in the routes' unit tests (which then need
//! no server), as the `webhook`, `graph` and `admin` functions do. The run
//! works the DynamoDB tables of [`Stores`] directly (leases, the due index).
//! A listing's page is made of reads of the store as DynamoDB's query
//! answers them (`crate::listing`), so the unit tests work the paging too;
//! what only DynamoDB can show (the create's transaction, a cancel racing a
//! run, the indexes themselves) stays in the integration tests against moto
//! (`tests/tests/publish*`).

use std::future::Future;

use shared::connection::Connection;
use shared::graph::store::GraphStore;
use shared::store::{ConnectionStore, StoreError, UserConnections};
use shared::time::OffsetDateTime;
use shared::Provider;

use crate::post::Post;
use crate::store::{IdemRecord, Place, PostStore, Read, Write};

/// Every answer is `Err` when the store failed: the route answers `503
/// service_unavailable`.
pub trait PostsApi: Send + Sync {
    /// The caller's connection; another user's is `None`.
    fn connection(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> impl Future<Output = Result<Option<Connection>, StoreError>> + Send;

    /// Stores a new post, due at `due`, with its idempotency record.
    /// `Ok(None)`: stored; `Ok(Some(record))`: the key was used before
    /// (nothing stored), here is its record.
    fn create(
        &self,
        post: &Post,
        due: OffsetDateTime,
        idem: Option<&IdemRecord>,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<IdemRecord>, StoreError>> + Send;

    fn get(&self, post_id: &str) -> impl Future<Output = Result<Option<Post>, StoreError>> + Send;

    /// One read of a connection's posts (`owner`: `store::owner_key`),
    /// newest first, after `after`, as DynamoDB's query answers it: at most
    /// `limit` posts read, only those of `status` (when given) returned,
    /// and where it stopped whenever it reached `limit`, whether or not
    /// more follow ([`PostStore::read_owned`]).
    fn read_posts(
        &self,
        owner: &str,
        status: Option<&str>,
        after: Option<Place>,
        limit: usize,
    ) -> impl Future<Output = Result<Read, StoreError>> + Send;

    /// Writes `post` (its version bumped) over the version it was read at.
    /// `Ok(false)`: it changed meanwhile, nothing written.
    fn save(
        &self,
        post: &mut Post,
        w: &Write<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The DynamoDB tables: the posts, the connections, and the connections'
/// write the run makes when a token died (the proxy's).
#[derive(Clone)]
pub struct Stores {
    pub posts: PostStore,
    pub connections: ConnectionStore,
    /// Only its connections-table write is used (no proxy records).
    pub graph: GraphStore,
}

impl PostsApi for Stores {
    async fn connection(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> Result<Option<Connection>, StoreError> {
        let found = self.connections.get(user_id, provider, account_id).await?;
        Ok(found.map(|(conn, _)| conn))
    }

    async fn create(
        &self,
        post: &Post,
        due: OffsetDateTime,
        idem: Option<&IdemRecord>,
        now: OffsetDateTime,
    ) -> Result<Option<IdemRecord>, StoreError> {
        self.posts.create(post, due, idem, now).await
    }

    async fn get(&self, post_id: &str) -> Result<Option<Post>, StoreError> {
        self.posts.get(post_id).await
    }

    async fn read_posts(
        &self,
        owner: &str,
        status: Option<&str>,
        after: Option<Place>,
        limit: usize,
    ) -> Result<Read, StoreError> {
        self.posts.read_owned(owner, status, after, limit).await
    }

    async fn save(&self, post: &mut Post, w: &Write<'_>) -> Result<bool, StoreError> {
        self.posts.save(post, w, None).await
    }
}
