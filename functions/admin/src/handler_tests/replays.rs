//! `/admin/replays`: a replay counts the stored events of its range, stores
//! its job and starts it on the delivery queue; a dry run only counts.

use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use shared::aws_sdk_dynamodb::types::AttributeValue;
use shared::clock::rfc3339_millis;
use shared::time::Duration;

use super::memory::{EventItem, Memory};
use super::{call, handler, request, stored, Handler, NOW};

/// A stored event of `kind` about `account`, `hours_ago` hours before NOW.
fn event(kind: &str, account: &str, hours_ago: i64) -> EventItem {
    let at = rfc3339_millis(NOW - Duration::hours(hours_ago));
    let s = |v: &str| AttributeValue::S(v.into());
    EventItem::from([
        (
            "event_id".to_string(),
            s(&format!("{kind}-{account}-{hours_ago}")),
        ),
        ("kind".to_string(), s(kind)),
        ("account_id".to_string(), s(account)),
        ("occurred_at".to_string(), s(&at)),
    ])
}

/// A store with endpoint `ep_a` and events over the last 3 days.
fn store() -> Memory {
    let store = Memory::default();
    store.tables().endpoints = vec![stored("ep_a", 1)];
    store.tables().events = vec![
        event("messages", "1784", 1),
        event("messages", "1784", 30),
        event("comments", "1784", 2),
        event("messages", "9999", 3),
        event("messages", "1784", 72),
    ];
    store
}

async fn replay(h: &Handler, body: Value) -> (StatusCode, Value) {
    call(h, request("POST", "/admin/replays", body)).await
}

#[tokio::test]
async fn a_replay_counts_its_events_stores_its_job_and_starts_it() {
    let store = store();
    let h = handler(&store);
    let body = json!({"endpoint_id": "ep_a", "account_id": "1784", "kinds": ["messages"],
        "since": "2026-11-20T00:00:00Z", "until": "2026-11-21T12:00:00Z"});
    let (status, answer) = replay(&h, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["events"], 2, "the day's 1784 messages");
    let id = answer["replay_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("rp_"));
    assert_eq!(store.tables().queued, vec![id.clone()]);
    let (job, stored_at) = store.tables().replays[0].clone();
    assert_eq!(
        (job.id.as_str(), job.events, stored_at),
        (id.as_str(), 2, NOW)
    );
    assert_eq!(job.filter.endpoint_id.as_deref(), Some("ep_a"));
    let path = format!("/admin/replays/{id}");
    let (status, answer) = call(&h, request("GET", &path, Value::Null)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        json!({"replay_id": id, "status": "running", "events": 2, "enqueued": 0})
    );
    let every = json!({"since": "2026-11-18T12:00:00Z", "until": "2026-11-21T12:00:00Z"});
    assert_eq!(replay(&h, every).await.1["events"], 5);
}

#[tokio::test]
async fn a_dry_run_only_counts() {
    let store = store();
    let h = handler(&store);
    let body = json!({"kinds": ["messages"], "since": "2026-11-21T08:00:00Z",
        "until": "2026-11-21T12:00:00Z", "dry_run": true});
    let (status, answer) = replay(&h, body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer, json!({"replay_id": null, "events": 2}));
    assert!(store.tables().replays.is_empty() && store.tables().queued.is_empty());
}

#[tokio::test]
async fn a_bad_range_or_an_unknown_endpoint_starts_nothing() {
    let store = store();
    let h = handler(&store);
    let until = "2026-11-21T12:00:00Z";
    for (body, status, code) in [
        (
            json!({"since": "2026-11-21T13:00:00Z", "until": until}),
            400,
            "invalid_range",
        ),
        (
            json!({"since": "2026-11-07T11:59:59Z", "until": until}),
            400,
            "invalid_range",
        ),
        (
            json!({"since": "yesterday", "until": until}),
            400,
            "invalid_range",
        ),
        (json!({"until": until}), 400, "invalid_range"),
        (
            json!({"since": until, "until": until, "kinds": ["*"]}),
            400,
            "invalid_kinds",
        ),
        (
            json!({"since": until, "until": until, "account_id": ""}),
            400,
            "invalid_accounts",
        ),
        (
            json!({"since": until, "until": until, "dry_run": "yes"}),
            400,
            "invalid_json",
        ),
        (
            json!({"since": until, "until": until, "endpoint_id": "ep_nope"}),
            404,
            "not_found",
        ),
    ] {
        let (got, answer) = replay(&h, body.clone()).await;
        assert_eq!(
            (got.as_u16(), answer["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    assert!(store.tables().replays.is_empty() && store.tables().queued.is_empty());
    // The oldest instant still kept is accepted.
    let edge = json!({"since": "2026-11-07T12:00:00Z", "until": until, "dry_run": true});
    assert_eq!(replay(&h, edge).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_unknown_replay_is_not_found() {
    let h = handler(&store());
    let (status, answer) = call(&h, request("GET", "/admin/replays/rp_nope", Value::Null)).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn an_outage_of_the_store_is_a_server_error() {
    let store = store();
    let h = handler(&store);
    let body = json!({"since": "2026-11-21T00:00:00Z", "until": "2026-11-21T12:00:00Z"});
    store.set_down(true);
    let (status, answer) = replay(&h, body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error"))
    );
    let (status, _) = call(&h, request("GET", "/admin/replays/rp_1", Value::Null)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    store.set_down(false);
    assert!(store.tables().replays.is_empty());
}

#[tokio::test]
async fn a_replay_the_queue_could_not_start_leaves_nothing_and_a_retry_makes_one_job() {
    let store = store();
    let h = handler(&store);
    let body = json!({"since": "2026-11-21T00:00:00Z", "until": "2026-11-21T12:00:00Z"});
    store.tables().queue_down = true;
    let (status, answer) = replay(&h, body.clone()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );
    assert!(store.tables().replays.is_empty() && store.tables().queued.is_empty());
    store.tables().queue_down = false;
    let (status, answer) = replay(&h, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let id = answer["replay_id"].as_str().unwrap().to_string();
    let stored: Vec<String> = store
        .tables()
        .replays
        .iter()
        .map(|(j, _)| j.id.clone())
        .collect();
    assert_eq!(stored, std::slice::from_ref(&id));
    assert_eq!(store.tables().queued, [id]);
}

#[tokio::test]
async fn a_start_that_went_out_after_all_runs_and_a_failed_withdrawal_is_a_server_error() {
    let body = json!({"since": "2026-11-21T00:00:00Z", "until": "2026-11-21T12:00:00Z"});
    // The queue's answer is lost but `deliver` has worked a page: it runs.
    let store = store();
    let h = handler(&store);
    {
        let mut t = store.tables();
        (t.queue_down, t.started_anyway) = (true, true);
    }
    let (status, answer) = replay(&h, body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(store.tables().replays.len(), 1, "the job runs on");
    // The withdrawal fails: the job stays, and the answer must not say
    // that nothing was kept.
    let store = self::store();
    let h = handler(&store);
    {
        let mut t = store.tables();
        (t.queue_down, t.withdraw_down) = (true, true);
    }
    let (status, answer) = replay(&h, body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error"))
    );
    assert_eq!(store.tables().replays.len(), 1);
}
