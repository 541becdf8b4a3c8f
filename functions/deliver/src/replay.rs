//! One page of a replay job: the stored events it takes, fanned out like new
//! events (with the job's id) to its endpoint or every matching one, then the
//! job's place recorded and the next page queued. A duplicate message for
//! the same page loses the conditional update and queues nothing more.

use shared::outbound::replay::scan_events;
use shared::vault::DataKeys;

use crate::attempt::first_attempts;
use crate::message::OutboundEvent;
use crate::{Deliver, Outcome};

/// Events scanned per message.
const PAGE: i32 = 100;

impl<K: DataKeys> Deliver<K> {
    pub(crate) async fn replay_page(&self, id: &str) -> Result<Outcome, String> {
        let job = match self.endpoints.replay(id).await.map_err(|e| e.to_string())? {
            Some(job) if !job.complete => job,
            _ => return Ok(Outcome::Dropped),
        };
        let table = &self.config.events_table;
        let cursor = job.cursor.as_deref();
        let page = scan_events(&self.dynamodb, table, &job.filter, cursor, PAGE).await;
        let (items, next) = page.map_err(|e| e.to_string())?;
        let mut endpoints = self.endpoints.list().await.map_err(|e| e.to_string())?;
        if let Some(only) = &job.filter.endpoint_id {
            endpoints.retain(|e| &e.id == only);
        }
        let now = self.clock.now();
        let mut messages = Vec::new();
        for event in items.iter().filter_map(OutboundEvent::from_item) {
            for mut m in first_attempts(&endpoints, &event, now) {
                m.replay_id = Some(job.id.clone());
                messages.push(m);
            }
        }
        self.queue
            .schedule(&messages, now)
            .await
            .map_err(|e| e.to_string())?;
        let advanced = self
            .endpoints
            .advance_replay(&job, next.clone(), items.len() as u64)
            .await
            .map_err(|e| e.to_string())?;
        if advanced && next.is_some() {
            self.queue
                .continue_replay(&job.id)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(Outcome::Replayed(messages.len()))
    }
}
