//! A replay job, a page (100 events scanned) per message: the page's events
//! re-sent to the job's endpoint with the job's id, the job's place kept,
//! the next page queued; a page that could not be queued is given back.

use serde_json::json;
use shared::outbound::lane::Lane;
use shared::outbound::replay::{ReplayFilter, ReplayJob};
use shared::time::Duration;

use super::memory::Sent;
use super::{record, world, World, FAST, NOW};
use crate::queue::To;

/// `ep_a` and `ep_b` take everything; 150 stored events, `ev-000` to
/// `ev-149`, every third about another account; job `rp_1` replays
/// account 1784's to `ep_a`.
async fn replaying() -> World {
    let w = world();
    let url = "https://backend.example.com/hook";
    w.endpoint("ep_a", url, |_| {}).await;
    w.endpoint("ep_b", url, |_| {}).await;
    for i in 0..150 {
        let account = if i % 3 == 2 { "9999" } else { "1784" };
        w.stored_event(&format!("ev-{i:03}"), "messages", account);
    }
    w.tables().replays.push(ReplayJob {
        id: "rp_1".into(),
        filter: ReplayFilter {
            endpoint_id: Some("ep_a".into()),
            account_id: Some("1784".into()),
            kinds: None,
            since: NOW - Duration::hours(1),
            until: NOW,
        },
        events: 100,
        enqueued: 0,
        cursor: None,
        complete: false,
    });
    w
}

fn next_page() -> Vec<serde_json::Value> {
    vec![record("p", r#"{"replay_id": "rp_1"}"#, FAST)]
}

fn job(w: &World) -> ReplayJob {
    w.tables().replays[0].clone()
}

#[tokio::test]
async fn a_replay_page_resends_its_events_and_queues_the_next_page() {
    let w = replaying().await;
    assert!(w.handle(next_page()).await.is_empty());
    let attempts = w.sqs().attempts(To::Lane(Lane::Fast));
    assert_eq!(attempts.len(), 67, "1784's among the first 100 scanned");
    for (m, delay) in &attempts {
        assert_eq!((m.endpoint_id.as_str(), m.attempt), ("ep_a", 1), "{m:?}");
        assert_eq!((m.replay_id.as_deref(), *delay), (Some("rp_1"), Some(0)));
        assert!(m.event_id.as_str() <= "ev-099");
    }
    let job = job(&w);
    assert_eq!(
        (job.cursor.as_deref(), job.enqueued, job.complete),
        (Some("ev-099"), 67, false)
    );
    let next = Sent {
        to: To::Lane(Lane::Fast),
        body: json!({"replay_id": "rp_1"}),
        delay: None,
    };
    assert_eq!(w.sqs().sent.last(), Some(&next), "the next page, queued");

    w.sqs().sent.clear();
    assert!(w.handle(next_page()).await.is_empty());
    let attempts = w.sqs().attempts(To::Lane(Lane::Fast));
    assert_eq!(attempts.len(), 33, "the rest");
    assert!(attempts.iter().all(|(m, _)| m.event_id.as_str() > "ev-099"));
    let job = self::job(&w);
    assert_eq!((job.cursor, job.enqueued, job.complete), (None, 100, true));
    assert_eq!(w.sqs().sent.len(), 33, "no page after the last");

    assert!(w.handle(next_page()).await.is_empty(), "a finished job");
    assert_eq!(w.sqs().sent.len(), 33, "queues nothing more");
}

#[tokio::test]
async fn a_page_that_could_not_be_queued_is_given_back_and_worked_again() {
    let w = replaying().await;
    w.queues.set_down(true);
    assert_eq!(w.handle(next_page()).await, vec!["p"], "SQS hands it back");
    let job = job(&w);
    assert_eq!(
        (job.cursor, job.enqueued, job.complete),
        (None, 0, false),
        "given back"
    );
    w.queues.set_down(false);
    assert!(w.handle(next_page()).await.is_empty());
    assert_eq!(
        w.sqs().attempts(To::Lane(Lane::Fast)).len(),
        67,
        "the same page"
    );
    assert_eq!(self::job(&w).cursor.as_deref(), Some("ev-099"));
}

#[tokio::test]
async fn a_replay_with_its_store_down_fails_its_record() {
    let w = replaying().await;
    w.store.set_down(true);
    assert_eq!(w.handle(next_page()).await, vec!["p"]);
    w.store.set_down(false);
    assert_eq!(job(&w).cursor, None, "nothing claimed");
    assert!(w.sqs().sent.is_empty());
}
