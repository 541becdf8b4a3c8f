//! An endpoint's health and lane after its attempts: marked failing,
//! cleared, disabled after 5 days of failures (and said so), moved to the
//! slow lane when it does not answer in time, and back when it is quick.

use std::time::Duration as StdDuration;

use shared::event_kind::EventKind;
use shared::metrics::Capture;
use shared::outbound::endpoint::DisabledReason;
use shared::outbound::lane::{Bounds, Lane};
use shared::time::Duration;

use super::receiver::Receiver;
use super::{attempt_record, first, world, world_with, FAST, NOW, SLOW};
use crate::queue::To;
use crate::DISABLED_EVENT_ID_PREFIX;

#[tokio::test]
async fn five_days_of_failures_disable_the_endpoint_and_say_so() {
    let w = world();
    let metrics = Capture::start();
    let backend = Receiver::answering(500, &[]).await;
    w.endpoint("ep_a", &backend.url, |e| {
        e.failing_since = Some(NOW - Duration::days(5));
    })
    .await;
    w.endpoint("ep_new", &backend.url, |e| {
        e.failing_since = Some(NOW - Duration::days(4));
    })
    .await;
    w.stored_event("mid.1", "messages", "1784");
    let records = vec![
        attempt_record("m1", &first("ep_a", "mid.1"), FAST),
        attempt_record("m2", &first("ep_new", "mid.1"), FAST),
    ];
    assert!(w.handle(records).await.is_empty());
    let tables = w.tables();
    let disabled = tables.endpoint("ep_a");
    assert_eq!(disabled.disabled, Some(DisabledReason::Failing));
    assert_eq!(disabled.updated_at, NOW);
    assert_eq!(tables.endpoint("ep_new").disabled, None, "4 days are not 5");
    assert_eq!(tables.written.len(), 1, "one event about it");
    let event = &tables.written[0];
    assert!(event.event_id.starts_with(DISABLED_EVENT_ID_PREFIX));
    assert_eq!(event.kind, EventKind::EndpointDisabled);
    assert_eq!(event.account_id, "ep_a");
    let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
    assert_eq!(payload["disabled_reason"], "failing");
    assert_eq!(payload["endpoint_id"], "ep_a");
    assert_eq!(metrics.total("deliver", "EndpointsDisabled"), 1.0);
}

#[tokio::test]
async fn a_success_clears_the_failing_mark() {
    let w = world();
    let backend = Receiver::answering(200, &[]).await;
    w.endpoint("ep_a", &backend.url, |e| {
        e.failing_since = Some(NOW - Duration::days(2));
    })
    .await;
    w.stored_event("mid.1", "messages", "1784");
    assert!(w
        .handle(vec![attempt_record("m1", &first("ep_a", "mid.1"), FAST)])
        .await
        .is_empty());
    assert_eq!(w.tables().endpoint("ep_a").failing_since, None);
}

#[tokio::test]
async fn no_answer_within_the_fast_lanes_patience_hands_the_attempt_to_the_slow_lane() {
    let w = world_with(Bounds {
        min: StdDuration::from_millis(50),
        max: StdDuration::from_millis(200),
    });
    let backend = Receiver::silent().await;
    w.endpoint("ep_a", &backend.url, |_| {}).await;
    w.stored_event("mid.1", "messages", "1784");
    let m = first("ep_a", "mid.1");
    assert!(w
        .handle(vec![attempt_record("m1", &m, FAST)])
        .await
        .is_empty());
    assert_eq!(backend.received().len(), 1, "it was sent");
    assert_eq!(
        w.sqs().attempts(To::Lane(Lane::Slow)),
        vec![(m, Some(0))],
        "unchanged"
    );
    assert_eq!(w.tables().endpoint("ep_a").slow_since, Some(NOW));
    assert!(w.tables().attempts.is_empty(), "the slow lane records it");
}

#[tokio::test]
async fn a_slow_endpoints_attempt_goes_to_the_slow_lane_and_a_quick_answer_brings_it_back() {
    let w = world();
    let backend = Receiver::answering(200, &[]).await;
    let since = NOW - Duration::minutes(11);
    w.endpoint("ep_slow", &backend.url, |e| {
        e.slow_since = Some(NOW - Duration::minutes(11));
    })
    .await;
    w.stored_event("mid.1", "messages", "1784");
    let m = first("ep_slow", "mid.1");
    assert!(w
        .handle(vec![attempt_record("m1", &m, FAST)])
        .await
        .is_empty());
    assert!(backend.received().is_empty(), "not from the fast lane");
    assert_eq!(
        w.sqs().attempts(To::Lane(Lane::Slow)),
        vec![(m.clone(), Some(0))]
    );
    assert_eq!(w.tables().endpoint("ep_slow").slow_since, Some(since));

    assert!(w
        .handle(vec![attempt_record("m2", &m, SLOW)])
        .await
        .is_empty());
    assert_eq!(backend.received().len(), 1, "the slow lane posts it");
    assert_eq!(w.tables().attempts.len(), 1);
    assert_eq!(
        w.tables().endpoint("ep_slow").slow_since,
        None,
        "back to the fast lane"
    );
}
