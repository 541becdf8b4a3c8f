//! The delivery queue holds every wait: a retry due within 15 minutes is a
//! message with `DelaySeconds`; a longer one is a message that, received
//! early, is hidden (visibility timeout, at most 12 hours) until it is due.
//! No function ever sleeps through a wait.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use shared::outbound::lane::Lane;
use time::OffsetDateTime;

use crate::message::AttemptMessage;

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY_SECONDS: i64 = 900;
/// A little under SQS's 12-hour visibility limit.
pub const MAX_HIDE_SECONDS: i64 = 43_000;

#[derive(Debug, thiserror::Error)]
#[error("queue failed: {0}")]
pub struct QueueError(String);

fn queue_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_sqs::error::SdkError<E, R>,
) -> QueueError {
    QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

#[derive(Clone)]
pub struct Queue {
    pub sqs: aws_sdk_sqs::Client,
    /// The delivery queue, the fast lane (this function's own source).
    pub url: String,
    /// The slow lane's queue (its other source; see `lane`).
    pub slow: String,
    /// Where deliveries go after 72 hours of failures.
    pub dead_letters: String,
    /// The longest `DelaySeconds` used: 900, or 0 where a test drives the
    /// clock and reads the queue at once.
    pub max_delay: i64,
}

impl Queue {
    fn url_of(&self, lane: Lane) -> &str {
        match lane {
            Lane::Fast => &self.url,
            Lane::Slow => &self.slow,
        }
    }

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
        for chunk in messages.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(serde_json::to_string(m).expect("messages serialize"))
                        .delay_seconds(self.delay(m, now))
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
        self.sqs
            .send_message()
            .queue_url(&self.dead_letters)
            .message_body(serde_json::to_string(m).expect("messages serialize"))
            .send()
            .await
            .map(drop)
            .map_err(queue_error)
    }

    /// The next page of a replay job, as a message of its own.
    pub async fn continue_replay(&self, replay_id: &str) -> Result<(), QueueError> {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(serde_json::json!({ "replay_id": replay_id }).to_string())
            .send()
            .await
            .map(drop)
            .map_err(queue_error)
    }

    /// Hides a message received from `lane` until it is due (at most ~12
    /// hours).
    pub async fn hide(
        &self,
        receipt_handle: &str,
        seconds: i64,
        lane: Lane,
    ) -> Result<(), QueueError> {
        self.sqs
            .change_message_visibility()
            .queue_url(self.url_of(lane))
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds.clamp(1, MAX_HIDE_SECONDS) as i32)
            .send()
            .await
            .map(drop)
            .map_err(queue_error)
    }
}
