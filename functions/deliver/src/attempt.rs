//! One attempt message: is it due, is the endpoint still there and enabled,
//! the signed `POST`, its record, and what comes next.

use shared::logging::tag;
use shared::metrics::Metrics;
use shared::outbound::attempt::Attempt;
use shared::outbound::attempt::AttemptError;
use shared::outbound::endpoint::Endpoint;
use shared::outbound::lane::{self, Lane};
use shared::outbound::schedule::{next_attempt, Next};
use shared::outbound::signature::signature_header;
use shared::outbound::target::validate_url;
use shared::vault::DataKeys;
use time::OffsetDateTime;

use crate::message::{AttemptMessage, OutboundEvent};
use crate::patience::Patience;
use crate::queue::{Queues, MAX_DELAY_SECONDS};
use crate::send::{post, Sent, Signed};
use crate::store::DeliverStore;
use crate::{Deliver, Outcome};

/// Where an attempt message was received, and, in the fast lane, how long
/// its batch waits for answers.
pub(crate) struct Source {
    pub receipt: String,
    pub lane: Lane,
    /// `None`: the slow lane, which waits for the full 15 s.
    pub patience: Option<std::sync::Arc<Patience>>,
}

/// The first attempt of `event` for every enabled endpoint that takes it,
/// each in its endpoint's lane.
pub fn first_attempts(
    endpoints: &[Endpoint],
    event: &OutboundEvent,
    now: OffsetDateTime,
) -> Vec<(Lane, AttemptMessage)> {
    endpoints
        .iter()
        .filter(|e| e.receives(&event.kind, &event.account_id))
        .map(|e| {
            let first = AttemptMessage {
                endpoint_id: e.id.clone(),
                event_id: event.event_id.clone(),
                attempt: 1,
                first_attempt_at: None,
                due_at: now.unix_timestamp(),
                replay_id: None,
            };
            (Lane::of(e.slow_since.is_some()), first)
        })
        .collect()
}

/// A step after the `POST` that failed: logged and counted, not retried.
fn bookkeeping<T>(step: &str, done: Result<T, String>) -> Option<T> {
    match done {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, step, "bookkeeping after a delivery attempt failed");
            Metrics::new("deliver").count("RecordErrors", 1).emit();
            None
        }
    }
}

/// What the lanes need to know of an answer.
fn answered(endpoint: &Endpoint, sent: &Sent, now: OffsetDateTime) -> lane::Answered {
    let slow_for = endpoint.slow_since.map(|t| (now - t).unsigned_abs());
    lane::Answered {
        latency: std::time::Duration::from_millis(sent.latency_ms),
        timed_out: sent.error == Some(AttemptError::Timeout),
        slow_for,
    }
}

/// What is kept of an attempt (never the response body).
fn record_of(m: &AttemptMessage, sent: &Sent, next: Option<Next>, now: OffsetDateTime) -> Attempt {
    Attempt {
        endpoint_id: m.endpoint_id.clone(),
        event_id: m.event_id.clone(),
        attempt: m.attempt,
        at: now,
        error: sent.error,
        status: sent.status,
        latency_ms: sent.latency_ms,
        next_attempt_at: match next {
            Some(Next::RetryAt(at)) => Some(at),
            _ => None,
        },
    }
}

impl<K: DataKeys, S: DeliverStore, Q: Queues> Deliver<K, S, Q> {
    pub(crate) async fn attempt(
        &self,
        m: AttemptMessage,
        from: &Source,
    ) -> Result<Outcome, String> {
        let now = self.clock.now();
        let wait = m.due_at - now.unix_timestamp();
        if wait > 0 {
            return self.wait(m, from, wait, now).await;
        }
        let Some(endpoint) = self
            .store
            .endpoint(&m.endpoint_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(Outcome::Dropped);
        };
        let Some(event) = self.stored_event(&m.event_id).await? else {
            return Ok(Outcome::Dropped); // expired or deleted meanwhile
        };
        // Disabled, or its filters changed since the event was fanned out.
        if !endpoint.receives(&event.kind, &event.account_id) {
            return Ok(Outcome::Dropped);
        }
        if from.lane == Lane::Fast && endpoint.slow_since.is_some() {
            return self.hand_off(m, now).await;
        }
        let Some(sent) = self.send(&endpoint, &event, now, from).await? else {
            // No answer within the fast lane's patience.
            let marked = self.store.set_slow(&endpoint.id, true, now).await;
            bookkeeping("mark the endpoint slow", marked.map_err(|e| e.to_string()));
            return self.hand_off(m, now).await;
        };
        self.after_send(&endpoint, m, &sent, from.lane, now).await
    }

    /// The attempt, unchanged, to the slow lane (no record: the slow lane
    /// makes the attempt and records it).
    async fn hand_off(&self, m: AttemptMessage, now: OffsetDateTime) -> Result<Outcome, String> {
        let event = tag(&m.event_id);
        tracing::info!(endpoint = %m.endpoint_id, event = %event, attempt = m.attempt, "attempt handed to the slow lane");
        let queued = self.queue.schedule(&[m], now, Lane::Slow).await;
        queued.map_err(|e| e.to_string())?;
        Ok(Outcome::HandedOff)
    }

    /// What follows a `POST` that was made: the record, the next attempt,
    /// the endpoint's health. Only a next attempt (or dead letter) that
    /// could not be enqueued fails the message (SQS hands it back: one more
    /// `POST`, still one retry chain); the record and the health, before
    /// and after it, are logged and counted (`RecordErrors`) when they fail,
    /// since failing the message then would mean a second `POST` and a
    /// second retry chain.
    async fn after_send(
        &self,
        endpoint: &Endpoint,
        m: AttemptMessage,
        sent: &Sent,
        lane: Lane,
        now: OffsetDateTime,
    ) -> Result<Outcome, String> {
        let first = m
            .first_attempt_at
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .unwrap_or(now);
        let next = sent.error.map(|_| {
            let jitter = (self.jitter)();
            next_attempt(m.attempt, first, now, sent.retry_after, jitter)
        });
        let record = record_of(&m, sent, next, now);
        let (event, attempt) = (tag(&m.event_id), m.attempt);
        tracing::info!(
            endpoint = %m.endpoint_id, event = %event, attempt,
            outcome = record.outcome(), status = ?sent.status,
            error = sent.error.map(|e| e.as_str()), "delivery attempt"
        );
        let recorded = self.store.put_attempt(&record).await;
        bookkeeping("record the attempt", recorded.map_err(|e| e.to_string()));
        let lane = lane::after_answer(lane, answered(endpoint, sent, now), self.bounds);
        let outcome = self.follow_up(m, next, first, now, lane).await?;
        let health = self
            .record_health(endpoint, sent.error.is_none(), now)
            .await;
        bookkeeping("record the endpoint's health", health);
        bookkeeping(
            "record the endpoint's lane",
            self.record_lane(endpoint, lane, now).await,
        );
        Ok(outcome)
    }
    /// The event as stored now; `None`: it is gone.
    async fn stored_event(&self, event_id: &str) -> Result<Option<OutboundEvent>, String> {
        let item = self.store.event(event_id).await;
        let item = item.map_err(|e| e.to_string())?;
        Ok(item.as_ref().and_then(OutboundEvent::from_item))
    }

    /// Signs and sends. A stored URL that no longer passes is refused
    /// without a request (it was checked when it was stored).
    /// `None`: no answer within the fast lane's patience (`from`'s).
    async fn send(
        &self,
        endpoint: &Endpoint,
        event: &OutboundEvent,
        now: OffsetDateTime,
        from: &Source,
    ) -> Result<Option<Sent>, String> {
        if validate_url(&endpoint.url, self.config.outbound.allow_loopback).is_err() {
            return Ok(Some(Sent {
                status: None,
                error: Some(shared::outbound::attempt::AttemptError::RefusedAddress),
                retry_after: None,
                latency_ms: 0,
            }));
        }
        let secrets = self
            .secrets
            .signing(endpoint, now)
            .await
            .map_err(|e| e.to_string())?;
        let body = event.body().map_err(|e| e.to_string())?;
        let timestamp = now.unix_timestamp();
        let signature = signature_header(&secrets, &event.event_id, timestamp, &body)
            .map_err(|e| e.to_string())?;
        let req = Signed {
            url: &endpoint.url,
            event_id: &event.event_id,
            timestamp,
            signature,
            body,
        };
        let post = post(&self.client, req, now);
        let Some(patience) = &from.patience else {
            return Ok(Some(post.await));
        };
        tokio::select! {
            sent = post => {
                patience.answered();
                Ok(Some(sent))
            }
            () = patience.run_out() => Ok(None),
        }
    }

    /// The next attempt into `lane`, or the delivery to the dead letters.
    async fn follow_up(
        &self,
        m: AttemptMessage,
        next: Option<Next>,
        first: OffsetDateTime,
        now: OffsetDateTime,
        lane: Lane,
    ) -> Result<Outcome, String> {
        match next {
            None => Ok(Outcome::Delivered),
            Some(Next::RetryAt(at)) => {
                let retry = AttemptMessage {
                    attempt: m.attempt + 1,
                    first_attempt_at: Some(first.unix_timestamp()),
                    due_at: at.unix_timestamp(),
                    ..m
                };
                self.queue
                    .schedule(&[retry], now, lane)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Outcome::Failed)
            }
            Some(Next::DeadLetter) => {
                let event = tag(&m.event_id);
                tracing::warn!(endpoint = %m.endpoint_id, event = %event, "delivery dead-lettered after 72 hours");
                self.queue
                    .dead_letter(&m)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Outcome::DeadLettered)
            }
        }
    }

    /// Not due yet: a short wait becomes a delayed copy; a long one hides
    /// this message until it is due.
    async fn wait(
        &self,
        m: AttemptMessage,
        from: &Source,
        wait: i64,
        now: OffsetDateTime,
    ) -> Result<Outcome, String> {
        if wait <= MAX_DELAY_SECONDS.min(self.queue.max_delay) {
            self.queue
                .schedule(&[m], now, from.lane)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(Outcome::Requeued);
        }
        self.queue
            .hide(&from.receipt, wait, from.lane)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Outcome::Waiting)
    }
}
