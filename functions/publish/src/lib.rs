//! Publishing and scheduling posts (CONTRACT.md, "Publishing"): the product
//! sends what to post and when; the service runs Meta's container flow,
//! respects the account's publishing limit, calls `media_publish` at most
//! once per post, and reports the outcome as events.
//!
//! Two doors (`PUBLISH_DOOR`, one Lambda function each): the HTTP routes
//! with the user's JWT, and direct invocation by the product's backend,
//! which also takes the every-minute schedule's event (the run). Decisions
//! are plain functions (`validate`, `decide`); `api` answers the routes,
//! `listing` pages a connection's posts, `run` works what is due, `meta`
//! calls Meta, `store` keeps the posts.

pub mod api;
mod api_store;
pub mod decide;
mod doors;
mod events;
#[cfg(test)]
mod handler_tests;
mod listing;
mod meta;
pub mod post;
pub mod run;
pub mod store;
pub mod uploads;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

pub use api::{Action, Answer, Request};
pub use api_store::{PostsApi, Stores};
pub use doors::{Door, CONTINUATION, DEADLINE_MARGIN};
pub use run::RunSummary;

use shared::config::{self, MetaAppConfig, StoreConfig};
use shared::graph::store::GraphStore;
use shared::meta::{ClientError, MetaClient};
use shared::secrets::SecretsCache;
use shared::vault::{DataKeys, KmsDataKeys, TokenVault};
use shared::{Clock, EnvReader, FromEnv};

use store::PostStore;
use uploads::MediaBucket;

#[derive(Clone, Debug)]
pub struct PublishConfig {
    pub store: StoreConfig,
    pub posts_table: String,
    pub token_key_id: String,
    pub meta_secret_id: String,
    pub meta: MetaAppConfig,
    /// Which door this function is (`PUBLISH_DOOR`: `http` or `invoke`).
    pub door: Door,
    /// Posts worked at once by one run (`PUBLISH_CONCURRENCY`).
    pub concurrency: usize,
    /// The private media bucket of uploads (`MEDIA_BUCKET`; empty: no
    /// uploads).
    pub media_bucket: String,
}

impl FromEnv for PublishConfig {
    fn read(env: &mut EnvReader) -> Option<Self> {
        let door = env.or_default("PUBLISH_DOOR", "invoke");
        let door = Door::parse(&door).unwrap_or_else(|| {
            env.problem(format!("PUBLISH_DOOR must be http or invoke, not {door:?}"));
            Door::Invoke
        });
        Some(Self {
            store: StoreConfig::read(env),
            posts_table: config::table(env, "POSTS_TABLE"),
            token_key_id: env.required("TOKEN_KEY_ID"),
            meta_secret_id: env.required("META_SECRET_ID"),
            meta: MetaAppConfig::read(env),
            door,
            concurrency: env.number_or("PUBLISH_CONCURRENCY", 16, 1, 128) as usize,
            media_bucket: env.optional("MEDIA_BUCKET"),
        })
    }
}

/// The function: both doors and the run share it, over its token keys
/// (KMS) and its store (DynamoDB: [`Stores`]; the routes take any
/// [`PostsApi`], the run only DynamoDB's).
pub struct Publisher<K = KmsDataKeys, S = Stores> {
    inner: Arc<Inner<K, S>>,
}

impl<K, S> Clone for Publisher<K, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Clone)]
struct Inner<K, S = Stores> {
    config: PublishConfig,
    store: S,
    meta: MetaClient,
    /// Uploads, when a media bucket is configured.
    media: Option<MediaBucket>,
    vault: TokenVault<K>,
    secrets: SecretsCache,
    clock: Clock,
    /// Due posts one run reads per shard (one query page).
    due_page: i32,
}

impl<K: DataKeys + Send + Sync + 'static> Publisher<K> {
    pub fn new(
        config: PublishConfig,
        dynamodb: shared::aws_sdk_dynamodb::Client,
        secrets: shared::aws_sdk_secretsmanager::Client,
        keys: K,
        clock: Clock,
        media: Option<MediaBucket>,
    ) -> Result<Self, ClientError> {
        let stores = Stores {
            posts: PostStore::new(
                dynamodb.clone(),
                &config.posts_table,
                &config.store.events_table,
            ),
            connections: config.store.connections(&dynamodb),
            graph: GraphStore::new(
                dynamodb,
                "",
                &config.store.connections_table,
                &config.store.events_table,
            ),
        };
        let secrets = SecretsCache::new(secrets, &config.meta_secret_id);
        Self::with_store(config, stores, secrets, keys, clock, media)
    }
}

impl<K: DataKeys + Send + Sync + 'static, S: PostsApi> Publisher<K, S> {
    /// The function over any store for its routes (the unit tests' is in
    /// memory; only DynamoDB's [`Stores`] also runs what is due).
    pub fn with_store(
        config: PublishConfig,
        store: S,
        secrets: SecretsCache,
        keys: K,
        clock: Clock,
        media: Option<MediaBucket>,
    ) -> Result<Self, ClientError> {
        let inner = Inner {
            media,
            store,
            meta: MetaClient::new(config.meta.clone())?,
            vault: TokenVault::new(keys),
            secrets,
            config,
            clock,
            due_page: run::PER_SHARD,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Reads at most `page` due posts per shard in a run (tests make a
    /// shard hold more than a page). A publisher already shared gets a copy
    /// of its own.
    pub fn with_due_page(self, page: i32) -> Self
    where
        K: Clone,
        S: Clone,
    {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.due_page = page;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Waits at most `timeout` for Meta's whole answer (tests shorten it).
    pub fn with_meta_timeout(self, timeout: Duration) -> Result<Self, ClientError>
    where
        K: Clone,
        S: Clone,
    {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.meta = MetaClient::with_timeout(inner.config.meta.clone(), timeout)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }
}
