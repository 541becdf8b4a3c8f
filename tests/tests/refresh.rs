//! The scheduled refresh and the connections API, with a movable clock,
//! against moto and the emulated Meta.

use std::time::Duration as StdDuration;

use infra::apigw::{ApiRequest, ResponseExt};
use infra::lambda_api::{Invocation, LambdaApi};
use integration_tests::*;
use refresh::Summary;
use serde_json::json;
use shared::continuation::Deadline;
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
    webhooks_restored: 0,
    rows_skipped: 0,
    left_for_next_run: 0,
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

    // A day later: 59 days left, nothing to do with the token (only its
    // webhook subscription is checked, as every day).
    h.clock.advance(DAY);
    assert_eq!(h.refresh().await, Summary { skipped: 1, ..ONE });
    assert_eq!(h.stack.meta.calls("ig_refresh"), 0);
    assert_eq!(h.stack.meta.calls("ig_subscriptions"), 1);

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
    let (a, b) = tokio::join!(
        h.refresher.run(Deadline::distant()),
        other.run(Deadline::distant())
    );
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
    h.stack.env.insert("REFRESH_CONCURRENCY".into(), "1".into());
    let h_refresher = h.stack.refresher(h.clock.clone());
    // The deadline allows two connections to start, then says stop: the
    // run finishes those two and reports the rest.
    let first = h_refresher.run(Deadline::after_starts(2)).await.unwrap();
    assert_eq!((first.examined, first.refreshed), (2, 2), "{first:?}");
    // What it had no time for is reported, so the function continues.
    assert_eq!(first.left_for_next_run, 3, "{first:?}");
    assert_eq!(refresh::next_round(0, &first), Some(1));
    let second = h.refresh().await;
    assert_eq!(second.left_for_next_run, 0, "{second:?}");
    assert_eq!(refresh::next_round(1, &second), None);
    assert_eq!(second.refreshed, 3, "{second:?}");
    assert_eq!(h.stack.meta.calls("ig_refresh"), 5);
    let runs = logs()
        .lines()
        .filter(|l| l.contains("refresh run done"))
        .count();
    assert_eq!(runs, 2, "each of this test's two runs logs its end once");
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
            webhooks_restored: 1,
            ..ONE
        }
    );
    assert_eq!(s(&row(&h, "user-1").await, "webhooks"), "subscribed");
    assert!(h.stack.meta.subscription(&account).is_some());
    assert_eq!(h.stack.meta.calls("ig_refresh"), 0);
    assert_eq!(h.events("connection.webhooks_restored").await.len(), 1);
    // Not again within the day; tomorrow only its daily check.
    assert_eq!(h.refresh().await, Summary::default());
    h.clock.advance(DAY);
    assert_eq!(h.refresh().await, Summary { skipped: 1, ..ONE });
}

#[tokio::test]
async fn facebook_tokens_are_checked_daily() {
    let h = Harness::new().await;
    let page = FbPage::linked("p1", "Acme", "17841400000000042", "acme");
    h.connect_facebook_as("user-1", FbPerson::with_page(page))
        .await;
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

/// A delete nudges refresh as AWS would (an asynchronous invocation), so
/// Meta hears of it at once; when Lambda refuses the nudge the delete still
/// succeeds and the next scheduled run finishes it.
#[tokio::test]
async fn a_delete_nudges_refresh_and_a_refused_nudge_loses_nothing() {
    let mut h = Harness::new().await;
    let lambda = LambdaApi::start().await;
    let refresh_fn = "ig-connect-refresh";
    h.connections = h.stack.connections_nudging(
        h.clock.clone(),
        connections::Nudge::Lambda(lambda.function(&h.stack.aws, refresh_fn)),
    );
    let first = h.connect_instagram_as("alice", "first").await;
    let second = h.connect_instagram_as("alice", "second").await;

    let path = format!("/connections/instagram/{first}");
    let resp = h
        .call_connections(ApiRequest::new("DELETE", &path).user("alice"))
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        lambda.accepted(),
        vec![Invocation {
            function: refresh_fn.into(),
            invocation_type: "Event".into(),
            payload: json!({"source": "connections.delete"}),
        }]
    );

    lambda.fail(true);
    let path = format!("/connections/instagram/{second}");
    let resp = h
        .call_connections(ApiRequest::new("DELETE", &path).user("alice"))
        .await;
    assert_eq!(resp.status(), 204, "a refused nudge fails no delete");
    assert_eq!(lambda.refused(), 1);
    assert!(h.connections_of("alice").await.is_empty());

    // The nudged run and the scheduled one: Meta hears of both deletes.
    h.refresh().await;
    assert_eq!(h.stack.meta.calls("ig_unsubscribe"), 2);
    assert!(h.stack.meta.subscription(&first).is_none());
    assert!(h.stack.meta.subscription(&second).is_none());
}

#[tokio::test]
async fn deleting_a_facebook_connection_revokes_when_it_is_the_last() {
    let h = Harness::new().await;
    h.connect_facebook_as(
        "user-1",
        FbPerson::new(
            "10160000000000077",
            "Ada",
            vec![
                FbPage::linked("p1", "One", "17841400000000071", "one"),
                FbPage::linked("p2", "Two", "17841400000000072", "two"),
            ],
        ),
    )
    .await;
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
    let page = FbPage::linked("p51", "Acme", "17841400000000051", "acme");
    h.connect_facebook_as("user-1", FbPerson::with_page(page))
        .await;
    let account = h.connect_instagram_as("user-2", "dropped").await;
    // Meta gives up on our endpoint and unsubscribes the app from both.
    h.stack.meta.drop_subscription("p51");
    h.stack.meta.drop_subscription(&account);
    assert_eq!(
        s(&row(&h, "user-1").await, "webhooks"),
        "subscribed",
        "nothing told us"
    );

    // The next daily run notices and subscribes both again: the Page with
    // its token check, the Instagram account although its token needs
    // nothing for 53 more days.
    h.clock.advance(DAY);
    assert_eq!(
        h.refresh().await,
        Summary {
            examined: 2,
            skipped: 2,
            resubscribed: 2,
            webhooks_restored: 2,
            ..ONE
        }
    );
    assert!(h.stack.meta.subscription("p51").is_some());
    assert!(h.stack.meta.subscription(&account).is_some());
    assert_eq!(h.stack.meta.calls("ig_refresh"), 0);
    let restored = h.events("connection.webhooks_restored").await;
    assert_eq!(restored.len(), 2);
    for event in &restored {
        let view: serde_json::Value = serde_json::from_str(&s(event, "payload")).unwrap();
        assert_eq!(view["webhooks"], "subscribed");
    }
    // Healthy subscriptions are left alone, and checked again every day.
    for _ in 0..3 {
        h.clock.advance(DAY);
        let run = h.refresh().await;
        assert_eq!((run.examined, run.webhooks_restored), (2, 0), "{run:?}");
    }
    assert_eq!(h.events("connection.webhooks_restored").await.len(), 2);
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn every_instagram_subscription_is_verified_daily_until_its_token_is_due() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "daily").await;
    // Whenever in the day Meta drops it, the next daily run restores it:
    // never more than a day without webhooks, for the token's whole life.
    for day in 1..=52 {
        if day % 9 == 0 {
            h.stack.meta.drop_subscription(&account);
        }
        h.clock.advance(DAY);
        let run = h.refresh().await;
        let dropped = usize::from(day % 9 == 0);
        assert_eq!(
            run,
            Summary {
                skipped: 1,
                resubscribed: dropped,
                webhooks_restored: dropped,
                ..ONE
            },
            "day {day}"
        );
        assert!(h.stack.meta.subscription(&account).is_some(), "day {day}");
    }
    assert_eq!(h.stack.meta.calls("ig_subscriptions"), 52);
    assert_eq!(h.stack.meta.calls("ig_refresh"), 0);
    assert_eq!(h.events("connection.webhooks_restored").await.len(), 5);
    // Then the token comes due and is refreshed, with its check beside it.
    h.clock.advance(Duration::days(2));
    assert_eq!(h.refresh().await.refreshed, 1);
}

#[tokio::test]
async fn the_daily_check_notices_a_dead_instagram_token() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "dies.early").await;
    h.stack.meta.invalidate_account(&account);
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
    assert_eq!(h.stack.meta.calls("ig_refresh"), 0);
}

fn person(id: &str, pages: &[(&str, &str, &str)]) -> FbPerson {
    FbPerson {
        id: id.into(),
        name: "Ada".into(),
        pages: pages
            .iter()
            .map(|(page, account, username)| {
                FbPage::linked(page, &format!("Page {page}"), account, username)
            })
            .collect(),
    }
}

async fn delete(h: &Harness, user: &str, provider: &str, account: &str) {
    let resp = h
        .call_connections(
            ApiRequest::new("DELETE", &format!("/connections/{provider}/{account}")).user(user),
        )
        .await;
    assert_eq!(resp.status(), 204);
}

async fn cleanup_jobs(h: &Harness) -> usize {
    h.scan("CONNECTIONS_TABLE")
        .await
        .iter()
        .filter(|i| s(i, "pk") == "CLEANUP")
        .count()
}

#[tokio::test]
async fn finishing_a_delete_leaves_a_newer_instagram_connection_alone() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("alice", "passed.on").await;
    delete(&h, "alice", "instagram", &account).await;
    // Before refresh finishes the delete, someone connects the account again.
    assert_eq!(h.connect_instagram_as("bob", "passed.on").await, account);
    assert!(h.stack.meta.subscription(&account).is_some());

    h.refresh().await;
    assert_eq!(
        h.stack.meta.calls("ig_unsubscribe"),
        0,
        "the subscription is bob's"
    );
    assert!(h.stack.meta.subscription(&account).is_some());
    assert_eq!(cleanup_jobs(&h).await, 0, "alice's old token is destroyed");
    assert_eq!(s(&row(&h, "bob").await, "webhooks"), "subscribed");
    // And bob's webhooks keep arriving: nothing to restore the next day.
    h.clock.advance(DAY);
    assert_eq!(h.refresh().await.webhooks_restored, 0);
}

#[tokio::test]
async fn finishing_a_delete_leaves_a_newer_page_connection_and_its_grant_alone() {
    let h = Harness::new().await;
    let ada = person(
        "10160000000000091",
        &[("p91", "17841400000000091", "again")],
    );
    h.connect_facebook_as("user-1", ada.clone()).await;
    delete(&h, "user-1", "facebook", "17841400000000091").await;
    h.connect_facebook_as("user-1", ada).await;

    h.refresh().await;
    assert_eq!(h.stack.meta.calls("fb_unsubscribe"), 0);
    assert!(h.stack.meta.subscription("p91").is_some());
    assert!(!h.stack.meta.revoked("10160000000000091"));
    assert_eq!(cleanup_jobs(&h).await, 0);
    // A delete nobody undoes is still finished at Meta.
    delete(&h, "user-1", "facebook", "17841400000000091").await;
    h.refresh().await;
    assert!(h.stack.meta.subscription("p91").is_none());
    assert!(h.stack.meta.revoked("10160000000000091"));
}

#[tokio::test]
async fn one_users_delete_never_removes_anothers_page_routing() {
    let h = Harness::new().await;
    // Alice connects her account through Page p92...
    h.connect_facebook_as(
        "alice",
        person(
            "10160000000000092",
            &[("p92", "17841400000000921", "alice.ig")],
        ),
    )
    .await;
    // ...then the Page is linked to Bob's account, and Bob connects it.
    h.connect_facebook_as(
        "bob",
        person(
            "10160000000000093",
            &[("p92", "17841400000000922", "bob.ig")],
        ),
    )
    .await;
    let alias =
        |items: &[std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>]| {
            items
                .iter()
                .find(|i| s(i, "pk") == "PAGE#p92")
                .map(|i| (s(i, "owner_user_id"), s(i, "account_id")))
        };
    let bobs = Some(("bob".to_string(), "17841400000000922".to_string()));
    assert_eq!(alias(&h.scan("CONNECTIONS_TABLE").await), bobs);
    // Alice deletes her connection: Bob's routing of the Page stays.
    delete(&h, "alice", "facebook", "17841400000000921").await;
    assert_eq!(alias(&h.scan("CONNECTIONS_TABLE").await), bobs);
    let store = shared::store::ConnectionStore::new(
        h.stack.dynamodb.clone(),
        h.stack.var("CONNECTIONS_TABLE"),
        h.stack.var("EVENTS_TABLE"),
    );
    let owners = store.owners(&["p92"]).await.unwrap();
    assert_eq!(owners["p92"].user_id, "bob");
    // Bob's own delete removes it.
    delete(&h, "bob", "facebook", "17841400000000922").await;
    assert_eq!(alias(&h.scan("CONNECTIONS_TABLE").await), None);
}

#[tokio::test]
async fn a_released_owner_claim_left_behind_blocks_nobody() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("alice", "left.behind").await;
    delete(&h, "alice", "instagram", &account).await;
    // The claim's own delete failed after the connection was deleted: what
    // is left is the claim without providers.
    h.stack
        .dynamodb
        .put_item()
        .table_name(h.stack.var("CONNECTIONS_TABLE"))
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("ACCOUNT#{account}")),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("OWNER".into()),
        )
        .item(
            "owner_user_id",
            aws_sdk_dynamodb::types::AttributeValue::S("alice".into()),
        )
        .send()
        .await
        .unwrap();
    let store = shared::store::ConnectionStore::new(
        h.stack.dynamodb.clone(),
        h.stack.var("CONNECTIONS_TABLE"),
        h.stack.var("EVENTS_TABLE"),
    );
    assert!(
        store.owners(&[account.as_str()]).await.unwrap().is_empty(),
        "routes nothing"
    );
    assert_eq!(store.owner_of(&account).await.unwrap(), None);
    // Someone else may connect the account.
    assert_eq!(h.connect_instagram_as("bob", "left.behind").await, account);
    assert_eq!(
        store.owner_of(&account).await.unwrap().as_deref(),
        Some("bob")
    );
}

#[tokio::test]
async fn rows_that_cannot_be_read_are_counted_and_logged_without_their_content() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let h = Harness::new().await;
    h.connect_instagram_as("user-1", "readable").await;
    let due = N(h.clock.now().unix_timestamp().to_string());
    let put = |items: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>| {
        let mut req = h
            .stack
            .dynamodb
            .put_item()
            .table_name(h.stack.var("CONNECTIONS_TABLE"));
        for (k, v) in items {
            req = req.item(k, v);
        }
        req.send()
    };
    // A connection row with a status this version does not know.
    put(vec![
        ("pk", S("USER#secret-user-7".into())),
        ("sk", S("CONN#instagram#17841400000000777".into())),
        ("user_id", S("secret-user-7".into())),
        ("provider", S("instagram".into())),
        ("account_id", S("17841400000000777".into())),
        ("username", S("private.name".into())),
        ("status", S("paused".into())),
        ("due_bucket", S("instagram".into())),
        ("due_at", due.clone()),
    ])
    .await
    .unwrap();
    // An index entry that is not a connection's keys at all.
    put(vec![
        ("pk", S("USER#secret-user-8".into())),
        ("sk", S("NOTES#1".into())),
        ("due_bucket", S("facebook".into())),
        ("due_at", due),
    ])
    .await
    .unwrap();
    // A cleanup job without its token.
    put(vec![
        ("pk", S("CLEANUP".into())),
        ("sk", S("1#secret-user-9#instagram#1".into())),
        ("user_id", S("secret-user-9".into())),
    ])
    .await
    .unwrap();

    h.clock.advance(DAY);
    let run = h.refresh().await;
    assert_eq!(
        run,
        Summary {
            skipped: 1,
            rows_skipped: 3,
            ..ONE
        }
    );
    // Seen every run until someone repairs them, not silently dropped.
    h.clock.advance(Duration::hours(1));
    assert_eq!(h.refresh().await.rows_skipped, 3);
    let logs = logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("unreadable") || l.contains("not a connection"))
        .collect();
    assert!(lines.len() >= 3, "{lines:?}");
    assert!(logs.contains("\"attribute\":\"status\""));
    assert!(logs.contains("\"rows_skipped\":3"));
    for secret in [
        "secret-user",
        "private.name",
        "17841400000000777",
        "NOTES#1",
    ] {
        assert!(!logs.contains(secret), "{secret} is in the logs");
    }
}

#[tokio::test]
async fn an_outcome_without_events_is_one_conditional_write_over_the_leased_version() {
    use shared::store::connections::Lease;
    use shared::store::{ConnectionKey, ConnectionStore};
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "leased").await;
    let calls = infra::calls::Calls::default();
    let store = ConnectionStore::new(
        calls.dynamodb(&h.stack.aws),
        h.stack.var("CONNECTIONS_TABLE"),
        h.stack.var("EVENTS_TABLE"),
    );
    let key = ConnectionKey {
        user_id: "user-1".into(),
        provider: shared::Provider::Instagram,
        account_id: account,
    };
    let now = h.clock.now();
    let lease = |owner: &'static str, at| store.take_lease(&key, owner, at, Duration::minutes(5));
    let leased = |lease: Lease| match lease {
        Lease::Taken(taken) => taken.0,
        other => panic!("not leased: {other:?}"),
    };
    let outcome = |conn: &shared::connection::Connection| {
        shared::refresh::RefreshOutcome::retry(conn, now, DAY * 7, shared::refresh::Tally::Skipped)
    };

    // The person connects again while a run holds the lease: the run's
    // outcome is not written over the newer connection.
    let conn = leased(lease("run-a", now).await.unwrap());
    assert_eq!(outcome(&conn).events().count(), 0);
    h.connect_instagram_as("user-1", "leased").await;
    assert!(!store
        .settle(&conn, "run-a", &outcome(&conn), None, &[], now)
        .await
        .unwrap());

    // Once run-a's lease has lapsed, run-b takes it; run-a, late, may no
    // longer write over the same version.
    let later = now + Duration::minutes(6);
    calls.take();
    let conn = leased(lease("run-b", later).await.unwrap());
    assert!(!store
        .settle(&conn, "run-a", &outcome(&conn), None, &[], later)
        .await
        .unwrap());
    assert!(store
        .settle(&conn, "run-b", &outcome(&conn), None, &[], later)
        .await
        .unwrap());
    // Half a transaction's write units: single-item writes, no transaction.
    assert_eq!(calls.count("UpdateItem"), 3);
    assert_eq!(calls.count("TransactWriteItems"), 0);
    // The lease is released with it: the next run may take it.
    assert!(matches!(
        lease("run-c", later).await.unwrap(),
        Lease::Taken(_)
    ));
}
