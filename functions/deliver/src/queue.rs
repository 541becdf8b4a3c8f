//! The delivery queue holds every wait: a retry due within 15 minutes is a
//! message with `DelaySeconds`; a longer one is a message that, received
//! early, is hidden (visibility timeout, at most 12 hours) until it is due.
//! No function ever sleeps through a wait.
//!
//! What `deliver` asks of SQS is a trait, [`Queues`]: SQS ([`SqsQueues`]) in
//! Lambda, an in-memory version in the handler's unit tests. [`Queue`] makes
//! those requests (lanes, delays, batches of 10) over either.

use std::future::Future;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use shared::outbound::lane::Lane;
use time::OffsetDateTime;

use crate::message::AttemptMessage;

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY_SECONDS: i64 = 900;
/// A little under SQS's 12-hour visibility limit.
pub const MAX_HIDE_SECONDS: i64 = 43_000;
/// SQS's most messages per `SendMessageBatch`.
pub const MAX_BATCH: usize = 10;

#[derive(Debug, thiserror::Error)]
#[error("queue failed: {0}")]
pub struct QueueError(pub String);

/// A message's body.
fn written(m: &AttemptMessage) -> Result<String, QueueError> {
    serde_json::to_string(m).map_err(|e| QueueError(format!("a message did not serialize: {e}")))
}

fn queue_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_sqs::error::SdkError<E, R>,
) -> QueueError {
    QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

/// A queue `deliver` sends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    Lane(Lane),
    /// Where deliveries go after 72 hours of failures.
    DeadLetters,
}

/// Every answer is `Err` when the queue failed: the record fails (SQS hands
/// it back).
pub trait Queues: Send + Sync {
    /// `SendMessageBatch` to `lane`'s queue of at most [`MAX_BATCH`]
    /// messages, each a body and its `DelaySeconds`. `Err` unless every one
    /// was accepted.
    fn send_batch(
        &self,
        lane: Lane,
        batch: &[(String, i32)],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// `SendMessage`, without a delay.
    fn send(&self, to: To, body: String) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// `ChangeMessageVisibility` of a message received from `lane`.
    fn change_visibility(
        &self,
        lane: Lane,
        receipt_handle: &str,
        seconds: i32,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The queues in SQS, by URL.
#[derive(Clone)]
pub struct SqsQueues {
    pub sqs: aws_sdk_sqs::Client,
    /// The delivery queue, the fast lane (this function's own source).
    pub url: String,
    /// The slow lane's queue (its other source; see `lane`).
    pub slow: String,
    /// Where deliveries go after 72 hours of failures.
    pub dead_letters: String,
}

impl SqsQueues {
    fn url_of(&self, lane: Lane) -> &str {
        match lane {
            Lane::Fast => &self.url,
            Lane::Slow => &self.slow,
        }
    }
}

impl Queues for SqsQueues {
    async fn send_batch(&self, lane: Lane, batch: &[(String, i32)]) -> Result<(), QueueError> {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, (body, delay))| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .delay_seconds(*delay)
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        let out = self
            .sqs
            .send_message_batch()
            .queue_url(self.url_of(lane))
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(queue_error)?;
        if !out.failed().is_empty() {
            return Err(QueueError(format!("{} not enqueued", out.failed().len())));
        }
        Ok(())
    }

    async fn send(&self, to: To, body: String) -> Result<(), QueueError> {
        let url = match to {
            To::Lane(lane) => self.url_of(lane),
            To::DeadLetters => &self.dead_letters,
        };
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map(drop)
            .map_err(queue_error)
    }

    async fn change_visibility(
        &self,
        lane: Lane,
        receipt_handle: &str,
        seconds: i32,
    ) -> Result<(), QueueError> {
        self.sqs
            .change_message_visibility()
            .queue_url(self.url_of(lane))
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map(drop)
            .map_err(queue_error)
    }
}

#[derive(Clone)]
pub struct Queue<Q = SqsQueues> {
    pub queues: Q,
    /// The longest `DelaySeconds` used: 900, or 0 where a test drives the
    /// clock and reads the queue at once.
    pub max_delay: i64,
}

impl<Q: Queues> Queue<Q> {
    fn delay(&self, m: &AttemptMessage, now: OffsetDateTime) -> i32 {
        let wait = m.due_at - now.unix_timestamp();
        wait.clamp(0, self.max_delay.min(MAX_DELAY_SECONDS)) as i32
    }

    /// Enqueues attempts in `lane` (10 per request). Fails if any was not
    /// accepted.
    pub async fn schedule(
        &self,
        messages: &[AttemptMessage],
        now: OffsetDateTime,
        lane: Lane,
    ) -> Result<(), QueueError> {
        for chunk in messages.chunks(MAX_BATCH) {
            let batch = chunk
                .iter()
                .map(|m| Ok((written(m)?, self.delay(m, now))))
                .collect::<Result<Vec<(String, i32)>, QueueError>>()?;
            self.queues.send_batch(lane, &batch).await?;
        }
        Ok(())
    }

    /// Enqueues attempts, each in its lane.
    pub async fn schedule_in_lanes(
        &self,
        messages: &[(Lane, AttemptMessage)],
        now: OffsetDateTime,
    ) -> Result<(), QueueError> {
        for lane in [Lane::Fast, Lane::Slow] {
            let these: Vec<AttemptMessage> = messages
                .iter()
                .filter(|(l, _)| *l == lane)
                .map(|(_, m)| m.clone())
                .collect();
            if !these.is_empty() {
                self.schedule(&these, now, lane).await?;
            }
        }
        Ok(())
    }

    /// After 72 hours: the delivery, as it stands, to the dead-letter queue.
    pub async fn dead_letter(&self, m: &AttemptMessage) -> Result<(), QueueError> {
        self.queues.send(To::DeadLetters, written(m)?).await
    }

    /// The next page of a replay job, as a message of its own.
    pub async fn continue_replay(&self, replay_id: &str) -> Result<(), QueueError> {
        let body = serde_json::json!({ "replay_id": replay_id }).to_string();
        self.queues.send(To::Lane(Lane::Fast), body).await
    }

    /// Hides a message received from `lane` until it is due (at most ~12
    /// hours).
    pub async fn hide(
        &self,
        receipt_handle: &str,
        seconds: i64,
        lane: Lane,
    ) -> Result<(), QueueError> {
        let seconds = seconds.clamp(1, MAX_HIDE_SECONDS) as i32;
        self.queues
            .change_visibility(lane, receipt_handle, seconds)
            .await
    }
}
