//! One post's steps under the run's lease, each written over the version
//! read before the next call to Meta: so a cancel (or anything else that
//! changed the post) stops the flow, and `media_publish` is called only
//! after "publishing attempted" is stored.

use serde_json::Value;
use shared::store::{Event, StoreError};
use shared::time::OffsetDateTime;
use shared::vault::DataKeys;

use super::{Held, Turn};
use crate::decide::{self, AfterPoll, ContainerStatus, MetaResult, OnError};
use crate::meta::{self, Session};
use crate::post::{Containers, Failure, NewPost, Status};
use crate::store::Write;
use crate::uploads::{self, PresignError};
use crate::{events, Inner};

impl<K: DataKeys + Send + Sync + 'static> Inner<K> {
    /// The next step; `Some`: the turn is over.
    pub(super) async fn step(
        &self,
        held: &mut Held<'_>,
        s: &Session<'_>,
    ) -> Result<Option<Turn>, StoreError> {
        let now = self.clock.now();
        let Some(containers) = held.post.containers.clone() else {
            return self.create(held, s).await;
        };
        let status = match s.container_status(&containers.parent).await {
            MetaResult::Ok(body) => match ContainerStatus::of(&body) {
                Some(status) => status,
                None => {
                    return self
                        .on_error(held, s, MetaResult::Transient(body))
                        .await
                        .map(Some)
                }
            },
            other => return self.on_error(held, s, other).await.map(Some),
        };
        match decide::after_poll(&held.post, &status, now) {
            AfterPoll::Wait(at) => {
                let st = decide::working_status(&held.post, now, true);
                self.wait(held, st, at).await.map(Some)
            }
            AfterPoll::WaitUntil(at) => self.wait(held, Status::Scheduled, at).await.map(Some),
            AfterPoll::Publish => self.publish(held, s, &containers.parent).await,
            AfterPoll::AlreadyPublished => self.published(held, None, s).await.map(Some),
            AfterPoll::Fail(f) => self.fail(held, f).await.map(Some),
            AfterPoll::Recreate => self.recreate(held).await,
        }
    }

    /// Reads the quota, then makes the containers (carousel children
    /// first) and stores them.
    async fn create(
        &self,
        held: &mut Held<'_>,
        s: &Session<'_>,
    ) -> Result<Option<Turn>, StoreError> {
        let now = self.clock.now();
        match s.quota().await {
            MetaResult::Ok(body) if decide::quota_has_room(&body) => {}
            MetaResult::Ok(_) => {
                return self
                    .wait(held, Status::WaitingForQuota, now + decide::QUOTA_RECHECK)
                    .await
                    .map(Some)
            }
            other => return self.on_error(held, s, other).await.map(Some),
        }
        let request = match self.for_meta(&held.post.request).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "could not presign the post's uploads");
                let passing = MetaResult::Transient(Value::Null);
                return self.on_error(held, s, passing).await.map(Some);
            }
        };
        let mut children = Vec::new();
        if request.is_carousel() {
            for i in 0..request.media.len() {
                match container_id(s.create_container(meta::child_params(&request, i)).await) {
                    Ok(id) => children.push(id),
                    Err(e) => return self.on_error(held, s, e).await.map(Some),
                }
            }
        }
        let params = if request.is_carousel() {
            meta::parent_params(&request, &children)
        } else {
            meta::single_params(&request)
        };
        let parent = match container_id(s.create_container(params).await) {
            Ok(id) => id,
            Err(e) => return self.on_error(held, s, e).await.map(Some),
        };
        held.post.containers = Some(Containers {
            children,
            parent,
            created_at: now,
        });
        held.post.status = decide::working_status(&held.post, now, true);
        held.post.transient_failures = 0;
        self.keep(held, now).await
    }

    /// Stores "publishing attempted", then calls `media_publish` once.
    async fn publish(
        &self,
        held: &mut Held<'_>,
        s: &Session<'_>,
        container: &str,
    ) -> Result<Option<Turn>, StoreError> {
        let now = self.clock.now();
        // A call after an unknown outcome: Meta may have published with the
        // first one, whatever this one answers.
        let retry = held.post.publish_attempted;
        held.post.publish_attempted = true;
        held.post.status = Status::Publishing;
        if self.keep(held, now).await?.is_some() {
            return Ok(Some(Turn::Busy));
        }
        match s.media_publish(container).await {
            MetaResult::Ok(body) => {
                let id = body.get("id").and_then(Value::as_str).map(str::to_string);
                self.published(held, id, s).await.map(Some)
            }
            // Meta may have published (no answer, a 5xx, an unknown error):
            // the container's status decides (next turn) before any retry.
            unknown @ (MetaResult::Unknown | MetaResult::Transient(_)) => {
                self.on_error(held, s, unknown).await.map(Some)
            }
            refused => {
                // Meta refused: this call did not publish. An earlier call
                // whose outcome was unknown still may have: then the post
                // keeps "attempted", so no new container is ever made for it.
                held.post.publish_attempted = retry;
                self.on_error(held, s, refused).await.map(Some)
            }
        }
    }

    async fn published(
        &self,
        held: &mut Held<'_>,
        media_id: Option<String>,
        s: &Session<'_>,
    ) -> Result<Turn, StoreError> {
        let now = self.clock.now();
        if let Some(id) = &media_id {
            held.post.permalink = s.permalink(id).await;
        }
        held.post.media_id = media_id;
        held.post.status = Status::Published;
        held.post.published_at = Some(now);
        held.post.error = None;
        self.finish(held, Some(Turn::Published)).await
    }

    /// The post as Meta sees it: each upload (`s3://` media URL, or cover)
    /// as a presigned `GET` valid 2 hours.
    async fn for_meta(&self, request: &NewPost) -> Result<NewPost, PresignError> {
        let mut request = request.clone();
        let Some(media) = &self.media else {
            return Ok(request);
        };
        for m in &mut request.media {
            if let Some(key) = uploads::object_key(&m.url, &media.bucket) {
                m.url = media.presign_get(key).await?;
            }
        }
        let cover = request.options.get("cover_url").and_then(Value::as_str);
        if let Some(key) = cover.and_then(|c| uploads::object_key(c, &media.bucket)) {
            let url = media.presign_get(key).await?;
            request.options["cover_url"] = Value::String(url);
        }
        Ok(request)
    }

    pub(super) async fn fail(
        &self,
        held: &mut Held<'_>,
        failure: Failure,
    ) -> Result<Turn, StoreError> {
        held.post.status = Status::Failed;
        held.post.error = Some(failure);
        self.finish(held, Some(Turn::Failed)).await
    }

    async fn recreate(&self, held: &mut Held<'_>) -> Result<Option<Turn>, StoreError> {
        held.post.containers = None;
        self.keep(held, self.clock.now()).await
    }

    /// What a failed call means (decided in `decide::on_error`); a dead
    /// token also marks the connection, as the proxy does.
    async fn on_error(
        &self,
        held: &mut Held<'_>,
        s: &Session<'_>,
        result: MetaResult,
    ) -> Result<Turn, StoreError> {
        let now = self.clock.now();
        if matches!(result, MetaResult::NeedsReauth(_)) {
            self.token_died(s, now).await;
        }
        let counts = matches!(
            result,
            MetaResult::Transient(_) | MetaResult::Unknown | MetaResult::NewContainer(_)
        );
        match decide::on_error(&result, &held.post, now) {
            OnError::Fail(f) => self.fail(held, f).await,
            OnError::Wait(status, at) => {
                if counts {
                    held.post.transient_failures += 1;
                }
                self.wait(held, status, at).await
            }
            OnError::Recreate => {
                held.post.transient_failures += 1;
                held.post.containers = None;
                self.wait(held, held.post.status, now + decide::POLL_EVERY)
                    .await
            }
        }
    }

    async fn token_died(&self, s: &Session<'_>, now: OffsetDateTime) {
        let event = Event::needs_reauth(&s.conn, now, self.config.store.event_retention);
        if let Err(e) = self
            .store
            .graph
            .mark_needs_reauth(&s.conn, &event, now)
            .await
        {
            tracing::error!(error = %e, "could not mark the connection needs_reauth");
        }
    }

    /// Writes the post under the lease, still held; `Some(Busy)`: it
    /// changed meanwhile (cancelled): stop.
    async fn keep(
        &self,
        held: &mut Held<'_>,
        now: OffsetDateTime,
    ) -> Result<Option<Turn>, StoreError> {
        held.post.updated_at = now;
        let w = Write {
            due: Some(now),
            lease: Some((held.owner, held.until)),
            keep_lease: true,
        };
        let written = self.store.posts.save(&mut held.post, &w, None).await?;
        Ok((!written).then_some(Turn::Busy))
    }

    /// Writes the post due again `at` and releases the lease.
    pub(super) async fn wait(
        &self,
        held: &mut Held<'_>,
        status: Status,
        at: OffsetDateTime,
    ) -> Result<Turn, StoreError> {
        held.post.status = status;
        held.post.updated_at = self.clock.now();
        let w = Write {
            due: Some(at),
            lease: Some((held.owner, held.until)),
            keep_lease: false,
        };
        let written = self.store.posts.save(&mut held.post, &w, None).await?;
        Ok(if written { Turn::Waiting } else { Turn::Busy })
    }

    /// Writes a post that is done (out of the due index), with its event.
    pub(super) async fn finish(
        &self,
        held: &mut Held<'_>,
        turn: Option<Turn>,
    ) -> Result<Turn, StoreError> {
        let now = self.clock.now();
        held.post.updated_at = now;
        let event = events::outcome(&held.post, now, self.config.store.event_retention);
        let w = Write {
            due: None,
            lease: Some((held.owner, held.until)),
            keep_lease: false,
        };
        let event = event.filter(|_| turn.is_some());
        let written = self
            .store
            .posts
            .save(&mut held.post, &w, event.as_ref())
            .await?;
        if written {
            tracing::info!(status = held.post.status.as_str(), "post finished");
        }
        Ok(match (written, turn) {
            (true, Some(t)) => t,
            _ => Turn::Busy,
        })
    }
}

fn container_id(result: MetaResult) -> Result<String, MetaResult> {
    match result {
        MetaResult::Ok(body) => match body.get("id").and_then(Value::as_str) {
            Some(id) => Ok(id.to_string()),
            None => Err(MetaResult::Transient(body)),
        },
        other => Err(other),
    }
}
