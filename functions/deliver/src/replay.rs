//! One page of a replay job: the stored events it takes, the page claimed by
//! recording the job's place (a conditional update: a duplicate message for
//! the same page loses it and queues nothing), then the events fanned out
//! like new events (with the job's id) to its endpoint or every matching one
//! and the next page queued. A page whose attempts could not be enqueued is
//! given back (the job's place rewound) and worked again.

use shared::vault::DataKeys;

use crate::attempt::first_attempts;
use crate::message::OutboundEvent;
use crate::queue::Queues;
use crate::store::DeliverStore;
use crate::{Deliver, Outcome};

/// Events scanned per message.
const PAGE: i32 = 100;

impl<K: DataKeys, S: DeliverStore, Q: Queues> Deliver<K, S, Q> {
    pub(crate) async fn replay_page(&self, id: &str) -> Result<Outcome, String> {
        let job = match self.store.replay(id).await.map_err(|e| e.to_string())? {
            Some(job) if !job.complete => job,
            _ => return Ok(Outcome::Dropped),
        };
        let cursor = job.cursor.as_deref();
        let page = self.store.scan_events(&job.filter, cursor, PAGE).await;
        let (items, next) = page.map_err(|e| e.to_string())?;
        let mut endpoints = self.store.endpoints().await.map_err(|e| e.to_string())?;
        if let Some(only) = &job.filter.endpoint_id {
            endpoints.retain(|e| &e.id == only);
        }
        let now = self.clock.now();
        let mut messages = Vec::new();
        for event in items.iter().filter_map(OutboundEvent::from_item) {
            for (lane, mut m) in first_attempts(&endpoints, &event, now) {
                m.replay_id = Some(job.id.clone());
                messages.push((lane, m));
            }
        }
        // Claimed first: a duplicate message working the same page loses
        // here and enqueues nothing.
        let store = &self.store;
        let matched = items.len() as u64;
        let claimed = store.advance_replay(&job, next.clone(), matched).await;
        if !claimed.map_err(|e| e.to_string())? {
            return Ok(Outcome::Dropped);
        }
        if let Err(e) = self.queue.schedule_in_lanes(&messages, now).await {
            // Given back, so that SQS's next try works this page again.
            if let Err(r) = store.rewind_replay(&job, next, matched).await {
                tracing::error!(error = %r, "a replay page could not be given back");
            }
            return Err(e.to_string());
        }
        if next.is_some() {
            self.queue
                .continue_replay(&job.id)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(Outcome::Replayed(messages.len()))
    }
}
