//! The scheduled refresh and the connections API, with a movable clock,
//! against moto and the emulated Meta.

use std::time::{Duration as StdDuration, Instant};

use infra::apigw::{ApiRequest, ResponseExt};
use integration_tests::*;
use refresh::Summary;
use serde_json::json;
use time::Duration;

const DAY: Duration = Duration::days(1);

/// One connection examined and nothing else counted: each test names the
/// counters it expects on top (`Summary { refreshed: 1, ..ONE }`).
const ONE: Summary = Summary {
    examined: 1,
    refreshed: 0,
    skipped: 0,
    failed: 0,
    needs_reauth: 0,
    resubscribed: 0,
};

async fn row(
    h: &Harness,
    user: &str,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    h.connections_of(user)
        .await
        .into_iter()
        .next()
        .expect("a connection row")
}

fn n(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    key: &str,
) -> Option<i64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn instagram_tokens_are_refreshed_inside_the_window_only() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "due.soon").await;
    let first_token = h.stack.meta.tokens_for_account(&account);

    // A day later: 59 days left, nothing to do, and nothing even examined.
    h.clock.advance(DAY);
    assert_eq!(h.refresh().await, Summary::default());
    assert_eq!(h.stack.meta.calls("ig_refresh"), 0);

    // 54 days later: inside the 7-day window.
    h.clock.advance(Duration::days(53));
    let before = row(&h, "user-1").await;
    assert_eq!(
        h.refresh().await,
        Summary {
            refreshed: 1,
            ..ONE
        }
    );
    assert_eq!(h.stack.meta.calls("ig_refresh"), 1);
    let after = row(&h, "user-1").await;
    assert!(
        n(&after, "token_expires_at").unwrap()
            > n(&before, "token_expires_at").unwrap() + 50 * 86400
    );
    assert_eq!(
        n(&after, "last_refreshed_at"),
        Some(h.clock.now().unix_timestamp())
    );
    assert_eq!(
        n(&after, "version"),
        Some(n(&before, "version").unwrap() + 1)
    );
    assert!(!after.contains_key("lease_owner"), "the lease is released");
    assert_ne!(after.get("token"), before.get("token"));
    // The new token is the one Meta issued last.
    let tokens = h.stack.meta.tokens_for_account(&account);
    assert_eq!(tokens.len(), first_token.len() + 1);
    let events = h.events("connection.refreshed").await;
    assert_eq!(events.len(), 1);
    let view: serde_json::Value = serde_json::from_str(&s(&events[0], "payload")).unwrap();
    assert!(view["last_refreshed_at"].is_string());

    // Right after: not due again.
    assert_eq!(h.refresh().await, Summary::default());
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn a_token_younger_than_a_day_waits() {
    let h = Harness::new().await;
    h.stack.meta.set_instagram_token_lifetime(3 * 86400); // due at once
    h.connect_instagram_as("user-1", "young").await;
    h.clock.advance(Duration::hours(2));
    assert_eq!(h.refresh().await, Summary { skipped: 1, ..ONE });
    assert_eq!(h.stack.meta.calls("ig_refresh"), 0);
    // Not picked up again until it is 24 hours old.
    h.clock.advance(Duration::hours(12));
    assert_eq!(h.refresh().await, Summary::default());
    h.clock.advance(Duration::hours(11));
    assert_eq!(h.refresh().await.refreshed, 1);
    assert_eq!(h.stack.meta.calls("ig_refresh"), 1);
}

#[tokio::test]
async fn a_dead_token_needs_the_person_again() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "dead.token").await;
    h.stack.meta.invalidate_account(&account);
    h.clock.advance(Duration::days(55));
    assert_eq!(
        h.refresh().await,
        Summary {
            needs_reauth: 1,
            ..ONE
        }
    );
    assert_eq!(h.stack.meta.calls("ig_refresh"), 1, "190 is never retried");
    let r = row(&h, "user-1").await;
    assert_eq!(s(&r, "status"), "needs_reauth");
    assert!(!r.contains_key("due_bucket"), "out of the refresh index");
    assert_eq!(h.events("connection.needs_reauth").await.len(), 1);
    assert_eq!(h.refresh().await, Summary::default());
    // The API shows it.
    let list = h
        .call_connections(ApiRequest::get("/connections").user("user-1"))
        .await;
    assert_eq!(list.body_json()["connections"][0]["status"], "needs_reauth");
}

#[tokio::test]
async fn an_expired_token_is_not_sent_to_meta() {
    let h = Harness::new().await;
    h.connect_instagram_as("user-1", "expired").await;
    h.clock.advance(Duration::days(61));
    assert_eq!(
        h.refresh().await,
        Summary {
            needs_reauth: 1,
            ..ONE
        }
    );
    assert_eq!(h.stack.meta.calls("ig_refresh"), 0);
}

#[tokio::test]
async fn passing_failures_are_counted_once_a_day_then_give_up() {
    let h = Harness::new().await;
    h.connect_instagram_as("user-1", "flaky").await;
    let before = row(&h, "user-1").await;
    h.stack.meta.fail("ig_refresh", 400, r#"{"error":{"message":"Application request limit reached","type":"OAuthException","code":4}}"#);
    h.clock.advance(Duration::days(54));
    assert_eq!(h.refresh().await, Summary { failed: 1, ..ONE });
    let r = row(&h, "user-1").await;
    assert_eq!(
        r.get("token"),
        before.get("token"),
        "the token is left as it was"
    );
    assert_eq!(s(&r, "status"), "active");
    assert_eq!(n(&r, "refresh_failures"), Some(1));
    // Still due: a second run the same day retries, but counts no second day.
    h.clock.advance(Duration::hours(2));
    assert_eq!(h.refresh().await.failed, 1);
    assert_eq!(n(&row(&h, "user-1").await, "refresh_failures"), Some(1));
    // 5xx the next day: day two.
    h.stack.meta.fail("ig_refresh", 503, "");
    h.clock.advance(DAY);
    assert_eq!(h.refresh().await.failed, 1);
    assert_eq!(n(&row(&h, "user-1").await, "refresh_failures"), Some(2));
    // Day three: give up, the person must reconnect.
    h.clock.advance(DAY);
    assert_eq!(
        h.refresh().await,
        Summary {
            needs_reauth: 1,
            ..ONE
        }
    );
    assert_eq!(s(&row(&h, "user-1").await, "status"), "needs_reauth");
    assert_eq!(h.events("connection.needs_reauth").await.len(), 1);
}

#[tokio::test]
async fn a_success_after_failures_says_so() {
    let h = Harness::new().await;
    h.connect_instagram_as("user-1", "recovers").await;
    h.stack.meta.fail(
        "ig_refresh",
        500,
        r#"{"error":{"message":"An unexpected error has occurred.","code":2,"is_transient":true}}"#,
    );
    h.clock.advance(Duration::days(54));
    assert_eq!(h.refresh().await.failed, 1);
    assert_eq!(
        h.stack.meta.calls("ig_refresh"),
        3,
        "transient failures are retried within the run"
    );
    h.stack.meta.clear_failures();
    h.clock.advance(DAY);
    assert_eq!(
        h.refresh().await,
        Summary {
            refreshed: 1,
            ..ONE
        }
    );
    let r = row(&h, "user-1").await;
    assert_eq!(n(&r, "refresh_failures"), Some(0));
    assert!(!r.contains_key("last_refresh_failure_at"));
    assert_eq!(h.events("connection.refreshed").await.len(), 1);
}

#[tokio::test]
async fn two_runs_at_once_refresh_each_token_once() {
    let h = Harness::new().await;
    for i in 0..6 {
        h.connect_instagram_as(&format!("user-{i}"), &format!("racer.{i}"))
            .await;
    }
    h.clock.advance(Duration::days(54));
    h.stack.meta.set_delay(StdDuration::from_millis(60));
    let other = h.stack.refresher(h.clock.clone());
    let deadline = Instant::now() + StdDuration::from_secs(600);
    let (a, b) = tokio::join!(h.refresher.run(deadline), other.run(deadline));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.refreshed + b.refreshed, 6, "{a:?} {b:?}");
    assert_eq!(
        h.stack.meta.calls("ig_refresh"),
        6,
        "one refresh call per token"
    );
    assert_eq!(h.events("connection.refreshed").await.len(), 6);
}

#[tokio::test]
async fn a_run_stops_before_its_deadline_and_the_next_one_finishes() {
    let mut h = Harness::new().await;
    for i in 0..5 {
        h.connect_instagram_as(&format!("user-{i}"), &format!("slow.{i}"))
            .await;
    }
    h.clock.advance(Duration::days(54));
    h.stack.meta.set_delay(StdDuration::from_millis(400));
    h.stack.env.insert("REFRESH_CONCURRENCY".into(), "1".into());
    let h_refresher = h.stack.refresher(h.clock.clone());
    // Barely more than the safety margin is left: the run starts a few, then stops.
    let deadline = Instant::now() + refresh::DEADLINE_MARGIN + StdDuration::from_millis(300);
    let first = h_refresher.run(deadline).await.unwrap();
    assert!(first.refreshed >= 1 && first.refreshed < 5, "{first:?}");
    let second = h.refresh().await;
    assert_eq!(
        first.refreshed + second.refreshed,
        5,
        "{first:?} {second:?}"
    );
    assert_eq!(h.stack.meta.calls("ig_refresh"), 5);
    assert!(logs().contains("refresh run done"));
}

#[tokio::test]
async fn missing_webhook_subscriptions_are_restored() {
    let h = Harness::new().await;
    h.stack.meta.fail("ig_subscribe", 500, "");
    let account = h.connect_instagram_as("user-1", "unsubscribed").await;
    assert_eq!(s(&row(&h, "user-1").await, "webhooks"), "unsubscribed");
    h.stack.meta.clear_failures();
    assert_eq!(
        h.refresh().await,
        Summary {
            skipped: 1,
            resubscribed: 1,
            ..ONE
        }
    );
    assert_eq!(s(&row(&h, "user-1").await, "webhooks"), "subscribed");
    assert!(h.stack.meta.subscription(&account).is_some());
    assert_eq!(h.stack.meta.calls("ig_refresh"), 0);
    // Back on its token's schedule: not examined again tomorrow.
    h.clock.advance(DAY);
    assert_eq!(h.refresh().await, Summary::default());
}

#[tokio::test]
async fn facebook_tokens_are_checked_daily() {
    let h = Harness::new().await;
    h.stack.meta.set_facebook_person(FbPerson {
        id: "10160000000000042".into(),
        name: "Ada".into(),
        pages: vec![FbPage {
            id: "p1".into(),
            name: "Acme".into(),
            instagram: Some(("17841400000000042".into(), "acme".into())),
        }],
    });
    assert_eq!(
        param(&h.connect("facebook", "user-1").await.location(), "status").as_deref(),
        Some("connected")
    );
    assert_eq!(h.refresh().await, Summary::default(), "not before a day");
    h.clock.advance(DAY);
    assert_eq!(h.refresh().await, Summary { skipped: 1, ..ONE });
    assert_eq!(h.stack.meta.calls("fb_debug_token"), 1);
    // Data access ends within the window: the person must log in again.
    h.stack
        .meta
        .set_data_access_expires_at(Some((h.clock.now() + Duration::days(3)).unix_timestamp()));
    h.clock.advance(DAY);
    assert_eq!(
        h.refresh().await,
        Summary {
            needs_reauth: 1,
            ..ONE
        }
    );
    assert_eq!(s(&row(&h, "user-1").await, "status"), "needs_reauth");
}

#[tokio::test]
async fn listing_shows_only_the_callers_connections() {
    let h = Harness::new().await;
    h.connect_instagram_as("alice", "alice.one").await;
    h.connect_instagram_as("alice", "alice.two").await;
    h.connect_instagram_as("bob", "bob.one").await;
    let resp = h
        .call_connections(ApiRequest::get("/connections").user("alice"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.header_str("cache-control").as_deref(),
        Some("no-store")
    );
    let list = resp.body_json()["connections"].as_array().unwrap().clone();
    let names: Vec<&str> = list
        .iter()
        .map(|c| c["username"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"alice.one") && names.contains(&"alice.two"));
    for c in &list {
        for key in c.as_object().unwrap().keys() {
            assert!(
                [
                    "provider",
                    "account_id",
                    "username",
                    "status",
                    "webhooks",
                    "scopes",
                    "connected_at",
                    "token_expires_at",
                    "last_refreshed_at"
                ]
                .contains(&key.as_str()),
                "{key}"
            );
        }
    }
    let resp = h.call_connections(ApiRequest::get("/connections")).await;
    assert_eq!(resp.status(), 401);
    let resp = h
        .call_connections(ApiRequest::get("/connections").user("nobody"))
        .await;
    assert_eq!(resp.body_json(), json!({"connections": []}));
}

#[tokio::test]
async fn deleting_a_connection() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("alice", "to.delete").await;
    assert!(h.stack.meta.subscription(&account).is_some());

    // Another user's connection, or none: 404, and nothing changes.
    for (user, path) in [
        ("bob", format!("/connections/instagram/{account}")),
        ("alice", "/connections/instagram/123".to_string()),
        ("alice", format!("/connections/facebook/{account}")),
        ("alice", format!("/connections/tiktok/{account}")),
    ] {
        let resp = h
            .call_connections(ApiRequest::new("DELETE", &path).user(user))
            .await;
        assert_eq!(resp.status(), 404, "{user} {path}");
        assert_eq!(resp.body_json()["error"], "not_found");
    }
    assert_eq!(h.connections_of("alice").await.len(), 1);

    let resp = h
        .call_connections(
            ApiRequest::new("DELETE", &format!("/connections/instagram/{account}")).user("alice"),
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert!(h.connections_of("alice").await.is_empty());
    assert_eq!(h.events("connection.deleted").await.len(), 1);
    let again = h
        .call_connections(
            ApiRequest::new("DELETE", &format!("/connections/instagram/{account}")).user("alice"),
        )
        .await;
    assert_eq!(again.status(), 404);

    // The refresher finishes it at Meta and destroys the last copy of the token.
    h.refresh().await;
    assert_eq!(h.stack.meta.calls("ig_unsubscribe"), 1);
    assert!(h.stack.meta.subscription(&account).is_none());
    let tokens_left = h
        .scan("CONNECTIONS_TABLE")
        .await
        .into_iter()
        .filter(|i| i.contains_key("token"))
        .count();
    assert_eq!(tokens_left, 0);

    // The account is free again: someone else may connect it.
    h.connect_instagram_as("bob", "to.delete").await;
    assert_eq!(h.connections_of("bob").await.len(), 1);
}

#[tokio::test]
async fn deleting_a_facebook_connection_revokes_when_it_is_the_last() {
    let h = Harness::new().await;
    h.stack.meta.set_facebook_person(FbPerson {
        id: "10160000000000077".into(),
        name: "Ada".into(),
        pages: vec![
            FbPage {
                id: "p1".into(),
                name: "One".into(),
                instagram: Some(("17841400000000071".into(), "one".into())),
            },
            FbPage {
                id: "p2".into(),
                name: "Two".into(),
                instagram: Some(("17841400000000072".into(), "two".into())),
            },
        ],
    });
    assert_eq!(
        param(&h.connect("facebook", "user-1").await.location(), "status").as_deref(),
        Some("connected")
    );
    let del = |account: &'static str| {
        ApiRequest::new("DELETE", &format!("/connections/facebook/{account}")).user("user-1")
    };
    assert_eq!(
        h.call_connections(del("17841400000000071")).await.status(),
        204
    );
    h.refresh().await;
    assert!(h.stack.meta.subscription("p1").is_none());
    assert!(h.stack.meta.subscription("p2").is_some());
    assert!(
        !h.stack.meta.revoked("10160000000000077"),
        "the other Page still needs the grant"
    );
    assert_eq!(
        h.call_connections(del("17841400000000072")).await.status(),
        204
    );
    h.refresh().await;
    assert!(h.stack.meta.revoked("10160000000000077"));
}

#[tokio::test]
async fn subscriptions_meta_dropped_are_noticed_and_restored() {
    let h = Harness::new().await;
    h.stack.meta.set_facebook_person(FbPerson {
        id: "10160000000000051".into(),
        name: "Ada".into(),
        pages: vec![FbPage {
            id: "p51".into(),
            name: "Acme".into(),
            instagram: Some(("17841400000000051".into(), "acme".into())),
        }],
    });
    assert_eq!(
        param(&h.connect("facebook", "user-1").await.location(), "status").as_deref(),
        Some("connected")
    );
    let account = h.connect_instagram_as("user-2", "dropped").await;
    // Meta gives up on our endpoint and unsubscribes the app from both.
    h.stack.meta.drop_subscription("p51");
    h.stack.meta.drop_subscription(&account);
    assert_eq!(
        s(&row(&h, "user-1").await, "webhooks"),
        "subscribed",
        "nothing told us"
    );

    // The daily Page check notices and subscribes again.
    h.clock.advance(DAY);
    assert_eq!(
        h.refresh().await,
        Summary {
            skipped: 1,
            resubscribed: 1,
            ..ONE
        }
    );
    assert!(h.stack.meta.subscription("p51").is_some());
    // The Instagram account is checked when its token is refreshed.
    h.clock.advance(Duration::days(53));
    let run = h.refresh().await;
    assert_eq!((run.refreshed, run.resubscribed), (1, 1), "{run:?}");
    assert!(h.stack.meta.subscription(&account).is_some());
    // Healthy subscriptions are left alone.
    h.clock.advance(DAY);
    assert_eq!(h.refresh().await.resubscribed, 0);
}
