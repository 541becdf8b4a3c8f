//! A new event from the bus: one first attempt per endpoint that takes it,
//! each in its endpoint's lane; unreadable records; what a batch reports.

use shared::metrics::Capture;
use shared::outbound::endpoint::DisabledReason;
use shared::outbound::lane::Lane;
use shared::time::Duration;

use super::receiver::Receiver;
use super::{attempt_record, bus_event, first, record, world, FAST, NOW};
use crate::message::AttemptMessage;
use crate::queue::To;

/// The endpoints the attempts sent to `to` are for, sorted.
fn endpoints_of(attempts: &[(AttemptMessage, Option<i32>)]) -> Vec<&str> {
    let mut ids: Vec<&str> = attempts
        .iter()
        .map(|(m, _)| m.endpoint_id.as_str())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn a_new_event_fans_out_to_every_enabled_endpoint_that_takes_it() {
    let w = world();
    let url = "https://backend.example.com/hook";
    w.endpoint("ep_all", url, |_| {}).await;
    w.endpoint("ep_1784", url, |e| e.accounts = Some(vec!["1784".into()]))
        .await;
    w.endpoint("ep_other", url, |e| e.accounts = Some(vec!["9999".into()]))
        .await;
    w.endpoint("ep_comments", url, |e| {
        e.kinds = Some(vec!["comments".into()])
    })
    .await;
    w.endpoint("ep_off", url, |e| e.disabled = Some(DisabledReason::Manual))
        .await;
    w.endpoint("ep_slow", url, |e| {
        e.slow_since = Some(NOW - Duration::hours(1))
    })
    .await;
    let failed = w
        .handle(vec![record(
            "e1",
            &bus_event("mid.1", "messages", "1784"),
            FAST,
        )])
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    let sqs = w.sqs();
    let fast = sqs.attempts(To::Lane(Lane::Fast));
    assert_eq!(endpoints_of(&fast), vec!["ep_1784", "ep_all"]);
    for (m, delay) in &fast {
        let expected = first(&m.endpoint_id, "mid.1");
        assert_eq!(
            (m, *delay),
            (&expected, Some(0)),
            "a first attempt, due now"
        );
    }
    let slow = sqs.attempts(To::Lane(Lane::Slow));
    assert_eq!(
        slow,
        vec![(first("ep_slow", "mid.1"), Some(0))],
        "in its lane"
    );
    assert_eq!(sqs.sent.len(), 3, "nothing else");
}

#[tokio::test]
async fn an_unreadable_record_is_dropped_not_handed_back() {
    let w = world();
    w.endpoint("ep_all", "https://backend.example.com/hook", |_| {})
        .await;
    let no_image = r#"{"detail-type": "messages", "detail": {}}"#;
    let records = vec![
        record("r1", "{", FAST),
        record("r2", "{}", FAST),
        record("r3", no_image, FAST),
        record("r4", r#"{"endpoint_id": "ep_all"}"#, FAST),
    ];
    let failed = w.handle(records).await;
    assert!(failed.is_empty(), "it could never be delivered: {failed:?}");
    assert!(w.sqs().sent.is_empty());
    assert!(w.tables().attempts.is_empty());
}

#[tokio::test]
async fn a_batch_reports_only_the_records_to_be_handed_back() {
    let w = world();
    let metrics = Capture::start();
    let fine = Receiver::answering(200, &[]).await;
    let failing = Receiver::answering(500, &[]).await;
    w.endpoint("ep_fine", &fine.url, |_| {}).await;
    w.endpoint("ep_failing", &failing.url, |_| {}).await;
    w.stored_event("mid.1", "messages", "1784");
    let later = AttemptMessage {
        due_at: NOW.unix_timestamp() + 7200,
        ..first("ep_fine", "mid.1")
    };
    let records = vec![
        record("junk", "not json", FAST),
        attempt_record("delivered", &first("ep_fine", "mid.1"), FAST),
        attempt_record("retried", &first("ep_failing", "mid.1"), FAST),
        attempt_record("waiting", &later, FAST),
        record("new", &bus_event("mid.2", "messages", "1784"), FAST),
    ];
    let failed = w.handle(records).await;
    assert_eq!(
        failed,
        vec!["waiting"],
        "kept by SQS until due; the rest are done"
    );
    assert_eq!(metrics.total("deliver", "Delivered"), 1.0);
    assert_eq!(metrics.total("deliver", "DeliveryFailed"), 1.0);
    assert_eq!(metrics.total("deliver", "RecordErrors"), 0.0);
}

#[tokio::test]
async fn a_store_or_queue_outage_fails_the_new_events_record() {
    let w = world();
    w.endpoint("ep_all", "https://backend.example.com/hook", |_| {})
        .await;
    let new = || vec![record("e1", &bus_event("mid.1", "messages", "1784"), FAST)];
    w.store.set_down(true);
    assert_eq!(w.handle(new()).await, vec!["e1"], "the endpoints unread");
    w.store.set_down(false);
    w.queues.set_down(true);
    assert_eq!(w.handle(new()).await, vec!["e1"], "its attempts not queued");
    assert!(w.sqs().sent.is_empty());
    w.queues.set_down(false);
    assert!(
        w.handle(new()).await.is_empty(),
        "handed back, then fanned out"
    );
    assert_eq!(w.sqs().attempts(To::Lane(Lane::Fast)).len(), 1);
}
