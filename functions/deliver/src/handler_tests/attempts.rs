//! An attempt message: the signed `POST`, its record, the next attempt and
//! its delay, the dead letters after 72 hours, what is dropped, what waits,
//! and outages.

use shared::metrics::Capture;
use shared::outbound::attempt::AttemptError;
use shared::outbound::endpoint::DisabledReason;
use shared::outbound::lane::Lane;
use shared::outbound::signature::verify;
use shared::time::Duration;

use super::receiver::Receiver;
use super::{attempt_record, first, world, FAST, NOW, SLOW};
use crate::message::AttemptMessage;
use crate::queue::To;

#[tokio::test]
async fn an_attempt_posts_the_event_signed_and_records_it() {
    let w = world();
    let metrics = Capture::start();
    let backend = Receiver::answering(204, &[]).await;
    let secret = w.endpoint("ep_a", &backend.url, |_| {}).await;
    w.stored_event("mid.1", "messages", "1784");
    let failed = w
        .handle(vec![attempt_record("m1", &first("ep_a", "mid.1"), FAST)])
        .await;
    assert!(failed.is_empty(), "{failed:?}");

    let got = backend.received();
    assert_eq!(got.len(), 1, "one POST");
    let post = &got[0];
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/hook")
    );
    assert_eq!(post.header("content-type"), "application/json");
    assert_eq!(post.header("webhook-id"), "mid.1");
    let timestamp = NOW.unix_timestamp().to_string();
    assert_eq!(
        post.header("webhook-timestamp"),
        timestamp,
        "the fixed clock's"
    );
    let signed = post.header("webhook-signature");
    let now = NOW.unix_timestamp();
    assert!(
        verify(&secret, "mid.1", &timestamp, signed, &post.body, now),
        "a signature the backend's secret verifies: {signed}"
    );
    let body: serde_json::Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["type"], "messages");
    assert_eq!(body["data"]["event_id"], "mid.1");
    assert_eq!(body["data"]["account_id"], "1784");
    assert_eq!(body["data"]["payload"]["message"]["text"], "hi");

    let attempts = w.tables().attempts.clone();
    assert_eq!(attempts.len(), 1, "one attempt recorded");
    let a = &attempts[0];
    assert_eq!(
        (a.endpoint_id.as_str(), a.event_id.as_str()),
        ("ep_a", "mid.1")
    );
    assert_eq!(
        (a.attempt, a.at, a.status, a.error),
        (1, NOW, Some(204), None)
    );
    assert_eq!((a.outcome(), a.next_attempt_at), ("delivered", None));
    assert!(w.sqs().sent.is_empty(), "nothing more to send");
    assert_eq!(metrics.total("deliver", "Delivered"), 1.0);
}

#[tokio::test]
async fn a_failed_attempt_is_recorded_and_retried_5_seconds_later() {
    let w = world();
    let metrics = Capture::start();
    let backend = Receiver::answering(500, &[]).await;
    w.endpoint("ep_a", &backend.url, |_| {}).await;
    w.stored_event("mid.1", "messages", "1784");
    let failed = w
        .handle(vec![attempt_record("m1", &first("ep_a", "mid.1"), FAST)])
        .await;
    assert!(failed.is_empty(), "retried, not handed back: {failed:?}");
    assert_eq!(backend.received().len(), 1);

    let attempts = w.tables().attempts.clone();
    assert_eq!(attempts.len(), 1);
    let a = &attempts[0];
    assert_eq!((a.attempt, a.at, a.status), (1, NOW, Some(500)));
    assert_eq!(
        (a.error, a.outcome()),
        (Some(AttemptError::HttpStatus), "failed")
    );
    assert_eq!(a.next_attempt_at, Some(NOW + Duration::seconds(5)));

    let retries = w.sqs().attempts(To::Lane(Lane::Fast));
    let second = AttemptMessage {
        attempt: 2,
        first_attempt_at: Some(NOW.unix_timestamp()),
        due_at: NOW.unix_timestamp() + 5,
        ..first("ep_a", "mid.1")
    };
    assert_eq!(retries, vec![(second, Some(5))], "delayed until due");
    let failing_since = w.tables().endpoint("ep_a").failing_since;
    assert_eq!(failing_since, Some(NOW), "marked failing");
    assert_eq!(metrics.total("deliver", "DeliveryFailed"), 1.0);
}

#[tokio::test]
async fn a_later_attempt_waits_longer_than_sqs_delays_and_keeps_the_first_instant() {
    let w = world();
    let backend = Receiver::answering(500, &[]).await;
    w.endpoint("ep_a", &backend.url, |e| {
        e.failing_since = Some(NOW - Duration::minutes(6))
    })
    .await;
    w.stored_event("mid.1", "messages", "1784");
    // The third attempt: the first was 6 minutes ago; the next wait is 30 min.
    let first_at = (NOW - Duration::minutes(6)).unix_timestamp();
    let third = AttemptMessage {
        attempt: 3,
        first_attempt_at: Some(first_at),
        ..first("ep_a", "mid.1")
    };
    assert!(w
        .handle(vec![attempt_record("m3", &third, FAST)])
        .await
        .is_empty());
    let recorded = w.tables().attempts[0].next_attempt_at;
    assert_eq!(recorded, Some(NOW + Duration::minutes(30)));
    let fourth = AttemptMessage {
        attempt: 4,
        due_at: NOW.unix_timestamp() + 1800,
        ..third
    };
    let retries = w.sqs().attempts(To::Lane(Lane::Fast));
    assert_eq!(retries, vec![(fourth, Some(900))], "SQS's longest delay");
    let failing_since = w.tables().endpoint("ep_a").failing_since;
    assert_eq!(failing_since, Some(NOW - Duration::minutes(6)), "kept");
}

#[tokio::test]
async fn a_410_is_retried_like_any_other_failure_and_retry_after_is_honoured() {
    let w = world();
    let gone = Receiver::answering(410, &[]).await;
    let busy = Receiver::answering(429, &[("retry-after", "120")]).await;
    w.endpoint("ep_gone", &gone.url, |_| {}).await;
    w.endpoint("ep_busy", &busy.url, |_| {}).await;
    w.stored_event("mid.1", "messages", "1784");
    let records = vec![
        attempt_record("m1", &first("ep_gone", "mid.1"), FAST),
        attempt_record("m2", &first("ep_busy", "mid.1"), FAST),
    ];
    assert!(w.handle(records).await.is_empty());
    let retries = w.sqs().attempts(To::Lane(Lane::Fast));
    let due = |id: &str| {
        let (m, delay) = retries.iter().find(|(m, _)| m.endpoint_id == id).unwrap();
        (m.attempt, m.due_at - NOW.unix_timestamp(), *delay)
    };
    assert_eq!(due("ep_gone"), (2, 5, Some(5)), "a 410 disables nothing");
    assert_eq!(
        due("ep_busy"),
        (2, 120, Some(120)),
        "the receiver's Retry-After"
    );
    assert_eq!(w.tables().endpoint("ep_gone").disabled, None);
}

#[tokio::test]
async fn after_72_hours_a_failing_delivery_goes_to_the_dead_letters() {
    let w = world();
    let metrics = Capture::start();
    let backend = Receiver::answering(503, &[]).await;
    w.endpoint("ep_a", &backend.url, |_| {}).await;
    w.stored_event("mid.1", "messages", "1784");
    // The next wait (12 h) would end after the first attempt's 72 hours.
    let ninth = AttemptMessage {
        attempt: 9,
        first_attempt_at: Some((NOW - Duration::hours(71)).unix_timestamp()),
        ..first("ep_a", "mid.1")
    };
    assert!(w
        .handle(vec![attempt_record("m9", &ninth, FAST)])
        .await
        .is_empty());
    assert_eq!(backend.received().len(), 1, "the last attempt was made");
    let sqs = w.sqs();
    let dead = sqs.attempts(To::DeadLetters);
    assert_eq!(dead, vec![(ninth, None)], "the delivery as it stands");
    assert!(
        sqs.attempts(To::Lane(Lane::Fast)).is_empty(),
        "no more attempts"
    );
    let attempts = w.tables().attempts.clone();
    assert_eq!(
        (attempts[0].status, attempts[0].next_attempt_at),
        (Some(503), None)
    );
    assert_eq!(metrics.total("deliver", "DeadLettered"), 1.0);
}

#[tokio::test]
async fn a_disabled_deleted_or_filtered_endpoint_and_a_gone_event_are_dropped() {
    let w = world();
    let backend = Receiver::answering(200, &[]).await;
    let disabled = |e: &mut shared::outbound::endpoint::Endpoint| {
        e.disabled = Some(DisabledReason::Manual);
    };
    w.endpoint("ep_off", &backend.url, disabled).await;
    w.endpoint("ep_failing", &backend.url, |e| {
        e.disabled = Some(DisabledReason::Failing);
    })
    .await;
    w.endpoint("ep_comments", &backend.url, |e| {
        e.kinds = Some(vec!["comments".into()]);
    })
    .await;
    w.endpoint("ep_on", &backend.url, |_| {}).await;
    w.stored_event("mid.1", "messages", "1784");
    let records = vec![
        attempt_record("m1", &first("ep_off", "mid.1"), FAST),
        attempt_record("m2", &first("ep_failing", "mid.1"), SLOW),
        attempt_record("m3", &first("ep_comments", "mid.1"), FAST),
        attempt_record("m4", &first("ep_deleted", "mid.1"), FAST),
        attempt_record("m5", &first("ep_on", "mid.expired"), FAST),
    ];
    let failed = w.handle(records).await;
    assert!(
        failed.is_empty(),
        "dropped for good, not handed back: {failed:?}"
    );
    assert!(backend.received().is_empty(), "nothing posted");
    assert!(w.tables().attempts.is_empty(), "no attempt recorded");
    let sqs = w.sqs();
    assert!(
        sqs.sent.is_empty() && sqs.hidden.is_empty(),
        "nothing queued"
    );
}

#[tokio::test]
async fn an_attempt_not_yet_due_waits_in_its_queue_without_a_post() {
    let w = world();
    let backend = Receiver::answering(200, &[]).await;
    w.endpoint("ep_a", &backend.url, |_| {}).await;
    w.stored_event("mid.1", "messages", "1784");
    let due_in = |seconds: i64| AttemptMessage {
        attempt: 2,
        due_at: NOW.unix_timestamp() + seconds,
        first_attempt_at: Some(NOW.unix_timestamp() - 300),
        ..first("ep_a", "mid.1")
    };
    let records = vec![
        attempt_record("soon", &due_in(60), FAST),
        attempt_record("later", &due_in(7200), FAST),
        attempt_record("later-slow", &due_in(3600), SLOW),
    ];
    let failed = w.handle(records).await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.contains(&"later".into()) && failed.contains(&"later-slow".into()));
    assert!(backend.received().is_empty());
    let sqs = w.sqs();
    let copy = sqs.attempts(To::Lane(Lane::Fast));
    assert_eq!(copy, vec![(due_in(60), Some(60))], "a delayed copy");
    let mut hidden = sqs.hidden.clone();
    hidden.sort_by_key(|h| h.2);
    assert_eq!(
        hidden,
        vec![
            (Lane::Slow, "receipt-later-slow".into(), 3600),
            (Lane::Fast, "receipt-later".into(), 7200),
        ],
        "hidden in their own queue until due"
    );
    assert!(w.tables().attempts.is_empty());
}

#[tokio::test]
async fn a_store_outage_fails_the_record_before_any_post() {
    let w = world();
    let metrics = Capture::start();
    let backend = Receiver::answering(200, &[]).await;
    w.endpoint("ep_a", &backend.url, |_| {}).await;
    w.stored_event("mid.1", "messages", "1784");
    w.store.set_down(true);
    let failed = w
        .handle(vec![attempt_record("m1", &first("ep_a", "mid.1"), FAST)])
        .await;
    assert_eq!(failed, vec!["m1"], "SQS hands it back: nothing lost");
    assert!(backend.received().is_empty());
    assert!(w.sqs().sent.is_empty());
    assert_eq!(metrics.total("deliver", "RecordErrors"), 1.0);
}

#[tokio::test]
async fn a_queue_outage_fails_a_failed_attempts_record_but_not_a_delivered_one() {
    let w = world();
    let failing = Receiver::answering(500, &[]).await;
    let fine = Receiver::answering(200, &[]).await;
    w.endpoint("ep_failing", &failing.url, |_| {}).await;
    w.endpoint("ep_fine", &fine.url, |_| {}).await;
    w.stored_event("mid.1", "messages", "1784");
    w.queues.set_down(true);
    let records = vec![
        attempt_record("m1", &first("ep_failing", "mid.1"), FAST),
        attempt_record("m2", &first("ep_fine", "mid.1"), FAST),
    ];
    let failed = w.handle(records).await;
    assert_eq!(
        failed,
        vec!["m1"],
        "its retry was not queued: SQS hands it back"
    );
    assert_eq!((failing.received().len(), fine.received().len()), (1, 1));
    assert_eq!(w.tables().attempts.len(), 2, "both attempts recorded");
}
