//! The endpoint's health after an attempt: a success clears `failing_since`;
//! a failure sets it, and after 5 days of nothing but failures disables the
//! endpoint (`disabled_reason: failing`), writes `webhook_endpoint.disabled`
//! (delivered to the other endpoints) and counts `EndpointsDisabled` (alarm).

use rand::Rng;
use shared::clock::rfc3339;
use shared::event_kind::EventKind;
use shared::metrics::Metrics;
use shared::outbound::endpoint::Endpoint;
use shared::outbound::health::should_disable;
use shared::outbound::lane::Lane;
use shared::store::Event;
use shared::vault::DataKeys;
use time::OffsetDateTime;

use crate::queue::Queues;
use crate::store::DeliverStore;
use crate::Deliver;

/// What the ids of those events start with (the template lets `deliver`
/// write no other event).
pub const DISABLED_EVENT_ID_PREFIX: &str = "wd_";

impl<K: DataKeys, S: DeliverStore, Q: Queues> Deliver<K, S, Q> {
    pub(crate) async fn record_health(
        &self,
        endpoint: &Endpoint,
        delivered: bool,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let store = &self.store;
        let done = match (delivered, endpoint.failing_since) {
            (true, None) => Ok(()),
            (true, Some(_)) => store.clear_failing(&endpoint.id).await,
            (false, None) => store.mark_failing(&endpoint.id, now).await,
            (false, Some(since)) if should_disable(Some(since), now) => {
                return self.disable(endpoint, since, now).await;
            }
            (false, Some(_)) => Ok(()),
        };
        done.map_err(|e| e.to_string())
    }

    /// Marks the endpoint slow, or clears the mark, when `lane` (where its
    /// next attempt goes) says otherwise than the endpoint.
    pub(crate) async fn record_lane(
        &self,
        endpoint: &Endpoint,
        lane: Lane,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let slow = lane == Lane::Slow;
        if slow == endpoint.slow_since.is_some() {
            return Ok(());
        }
        let set = self.store.set_slow(&endpoint.id, slow, now).await;
        set.map_err(|e| e.to_string())
    }

    async fn disable(
        &self,
        endpoint: &Endpoint,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let disabled = self.store.disable_failing(&endpoint.id, since, now).await;
        if !disabled.map_err(|e| e.to_string())? {
            return Ok(()); // another attempt disabled it, or it was re-enabled
        }
        tracing::error!(endpoint = %endpoint.id, "endpoint disabled: every attempt failed for 5 days");
        Metrics::new("deliver").count("EndpointsDisabled", 1).emit();
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        let event = Event {
            event_id: format!("{DISABLED_EVENT_ID_PREFIX}{}", hex::encode(id)),
            kind: EventKind::EndpointDisabled,
            provider: None,
            // The endpoint stands where an account would: the events table's
            // account index needs a value, and no Meta id starts with `ep_`.
            account_id: endpoint.id.clone(),
            user_id: None,
            occurred_at: now,
            received_at: now,
            payload: serde_json::json!({
                "endpoint_id": endpoint.id,
                "disabled_reason": "failing",
                "failing_since": rfc3339(since),
            })
            .to_string(),
            expires_at: now + self.config.event_retention,
        };
        self.store
            .put_event(&event)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
