//! The every-minute run: what is due (the sparse, sharded `by_due` index,
//! never a scan), a lease per post (a conditional write; the post re-read by
//! it), bounded concurrency, and for each post the container flow as steps,
//! each written over the version read: quota, containers (carousel children
//! first), status polls, `media_publish` once, the permalink, the event.

use serde::Serialize;
use shared::connection::Status as ConnStatus;
use shared::continuation::Deadline;
use shared::metrics::Metrics;
use shared::store::{StoreError, UserConnections};
use shared::time::{Duration, OffsetDateTime};
use shared::vault::{DataKeys, TokenOwner};
use shared::Provider;

use crate::decide;
use crate::meta::Session;
use crate::post::{Failure, Post};
use crate::store::{Lease, DUE_SHARDS};
use crate::{Inner, Publisher};

/// A lease outlives the run that took it: Lambda stops the function at its
/// timeout (`PublishFunction`'s `Timeout`, 120 s), so no other run can take
/// a post while a killed run might still be calling `media_publish` for it
/// (a template test holds the two together: at least a minute apart).
pub const LEASE_FOR: Duration = Duration::minutes(3);
/// Due posts one run loads per shard.
pub const PER_SHARD: i32 = 1_000;
/// Steps one post may take in one run (create, poll, publish, ...).
const MAX_STEPS: usize = 6;

/// What a run did: returned, logged, counted.
#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub examined: usize,
    pub published: usize,
    pub failed: usize,
    /// Posts left waiting (processing, scheduled ahead, quota, throttled).
    pub waiting: usize,
    /// Posts another run held, or that changed meanwhile.
    pub busy: usize,
    /// Posts whose containers were made more than [`STUCK_AFTER`] ago and
    /// are still not published (Meta's processing is slow or stuck).
    pub stuck: usize,
    /// Due posts this run had no time for, plus one for each shard that had
    /// more due than one page: a continuation takes them.
    pub left_for_next_run: usize,
}

/// Containers older than this and not yet published count as stuck.
pub const STUCK_AFTER: Duration = Duration::minutes(30);

/// How one post's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    Published,
    Failed,
    Waiting,
    Busy,
}

impl<K: DataKeys + Send + Sync + 'static> Publisher<K> {
    /// One run: every due post, `concurrency` at a time, starting none once
    /// `deadline` says stop.
    pub async fn run(&self, deadline: Deadline) -> Result<RunSummary, StoreError> {
        let now = self.inner.clock.now();
        let mut due = Vec::new();
        let mut summary = RunSummary::default();
        for shard in 0..DUE_SHARDS {
            let (ids, more) = self
                .inner
                .store
                .posts
                .due(&shard.to_string(), now, self.inner.due_page)
                .await?;
            due.extend(ids);
            // More due than a page: the continuation reads the rest.
            summary.left_for_next_run += usize::from(more);
        }
        let owner = lease_owner();
        let mut pending = due.into_iter();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < self.inner.config.concurrency {
                let Some(id) = pending.next() else { break };
                if !deadline.may_start() {
                    summary.left_for_next_run += 1;
                    continue;
                }
                let (inner, owner) = (self.inner.clone(), owner.clone());
                running.spawn(async move { inner.turn(&id, &owner).await });
            }
            match running.join_next().await {
                None => break,
                Some(Ok(turn)) => summary.count(turn),
                Some(Err(e)) => tracing::error!(error = %e, "a post's turn panicked"),
            }
        }
        tracing::info!(?summary, "publish run");
        Ok(summary)
    }
}

impl RunSummary {
    /// The run's figures as CloudWatch metrics (EMF, namespace `IgConnect`,
    /// dimension `function=publish`): what the alarms watch.
    pub fn metrics(&self) -> Metrics {
        Metrics::new("publish")
            .count("Examined", self.examined as u64)
            .count("Published", self.published as u64)
            .count("Failed", self.failed as u64)
            .count("Waiting", self.waiting as u64)
            .count("Busy", self.busy as u64)
            .count("StuckProcessing", self.stuck as u64)
            .count("LeftForNextRun", self.left_for_next_run as u64)
    }

    fn count(&mut self, (turn, stuck): (Result<Turn, StoreError>, bool)) {
        self.examined += 1;
        self.stuck += usize::from(stuck);
        match turn {
            Ok(Turn::Published) => self.published += 1,
            Ok(Turn::Failed) => self.failed += 1,
            Ok(Turn::Waiting) => self.waiting += 1,
            Ok(Turn::Busy) => self.busy += 1,
            Err(e) => {
                tracing::error!(error = %e, "a post's turn could not be written");
                self.busy += 1;
            }
        }
    }
}

fn lease_owner() -> String {
    let mut id = [0u8; 8];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    format!("run_{}", hex::encode(id))
}

/// A post under this run's lease.
struct Held<'a> {
    post: Post,
    owner: &'a str,
    until: OffsetDateTime,
}

impl<K: DataKeys + Send + Sync + 'static> Inner<K> {
    /// One post's turn, and whether it looked stuck.
    async fn turn(&self, post_id: &str, owner: &str) -> (Result<Turn, StoreError>, bool) {
        let now = self.clock.now();
        let post = match self
            .store
            .posts
            .take_lease(post_id, owner, now, LEASE_FOR)
            .await
        {
            Ok(Lease::Taken(p)) => *p,
            Ok(Lease::Busy) => return (Ok(Turn::Busy), false),
            Err(e) => return (Err(e), false),
        };
        let stuck = post
            .containers
            .as_ref()
            .is_some_and(|c| now - c.created_at > STUCK_AFTER && !post.status.is_final())
            && decide::may_publish(&post, now);
        (self.work(post, owner, now).await, stuck)
    }

    /// A leased post's turn: connection, steps, release.
    async fn work(&self, post: Post, owner: &str, now: OffsetDateTime) -> Result<Turn, StoreError> {
        let mut held = Held {
            post,
            owner,
            until: now + LEASE_FOR,
        };
        if held.post.status.is_final() {
            return self.finish(&mut held, None).await;
        }
        if now < decide::first_due(&held.post) {
            let at = decide::first_due(&held.post);
            let status = held.post.status;
            return self.wait(&mut held, status, at).await;
        }
        let session = match self.session(&held.post).await {
            Ok(s) => s,
            Err(Some(failure)) => return self.fail(&mut held, failure).await,
            Err(None) => {
                let status = held.post.status;
                return self.wait(&mut held, status, now + decide::POLL_EVERY).await;
            }
        };
        for _ in 0..MAX_STEPS {
            match self.step(&mut held, &session).await? {
                Some(turn) => return Ok(turn),
                None => continue,
            }
        }
        let status = held.post.status;
        self.wait(&mut held, status, self.clock.now() + decide::POLL_EVERY)
            .await
    }

    /// The connection's token, opened for this post. `Err(Some)`: the post
    /// fails (the connection is gone or must be connected again);
    /// `Err(None)`: try again later.
    async fn session(&self, post: &Post) -> Result<Session<'_>, Option<Failure>> {
        let found = self
            .store
            .connections
            .get(&post.user_id, post.provider, &post.account_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not read the connection");
                None
            })?;
        let Some((conn, Some(sealed))) = found else {
            return Err(Some(decide::fail(
                "connection_deleted",
                "The connection was deleted.",
                serde_json::Value::Null,
            )));
        };
        match conn.status {
            ConnStatus::Active => {}
            ConnStatus::NeedsReauth => {
                return Err(Some(decide::fail(
                    "connection_needs_reauth",
                    "This connection must be connected again.",
                    serde_json::Value::Null,
                )))
            }
            ConnStatus::Revoked => {
                return Err(Some(decide::fail(
                    "connection_revoked",
                    "The person removed this app at Meta.",
                    serde_json::Value::Null,
                )))
            }
        }
        let token = self
            .vault
            .open(&sealed, &TokenOwner::of(&conn))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not open the token");
                None
            })?;
        let app_secret = match conn.provider {
            Provider::Facebook => {
                let secrets = self.secrets.get().await.map_err(|e| {
                    tracing::error!(error = %e, "could not read the app secrets");
                    None
                })?;
                Some(secrets.app_secret(Provider::Facebook).clone())
            }
            Provider::Instagram => None,
        };
        Ok(Session {
            meta: &self.meta,
            app: &self.config.meta,
            conn,
            token,
            app_secret,
        })
    }
}

#[path = "steps.rs"]
mod steps;
