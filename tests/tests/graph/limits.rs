//! Per-caller limits and Meta's app-wide throttle (CONTRACT.md, "Per-caller
//! limits"), through both doors: a user over its bucket, a connection over
//! its bucket, and a code 4 seen on one account holding every account of
//! that app. Small buckets by configuration and the fixed clock: no test
//! waits for real time.

use infra::apigw::{ApiRequest, ResponseExt};
use infra::graph_proxy;
use integration_tests::*;
use serde_json::{json, Value};

fn get(account: &str, user: &str) -> lambda_http::Request {
    ApiRequest::new(
        "GET",
        &format!("/connections/instagram/{account}/graph/me/media"),
    )
    .user(user)
    .into_request()
}

fn invoke(provider: &str, account: &str, user: &str) -> Value {
    json!({"provider": provider, "account_id": account, "method": "GET",
           "path": "me/media", "user_id": user})
}

/// Configures the proxies built after this (as the template's parameters do).
fn configure(h: &mut Harness, vars: &[(&str, &str)]) {
    for (k, v) in vars {
        h.stack.env.insert(k.to_string(), v.to_string());
    }
}

fn assert_rate_limited(status: u16, body: &Value, retry_after: Option<String>) {
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
}

#[tokio::test]
async fn a_user_over_its_bucket_gets_429_rate_limited_at_either_door_without_meta() {
    let mut h = Harness::new().await;
    let shop = h.connect_instagram_as("user-1", "limit.shop").await;
    let blog = h.connect_instagram_as("user-1", "limit.blog").await;
    let other = h.connect_instagram_as("user-2", "limit.other").await;
    configure(
        &mut h,
        &[("GRAPH_USER_RATE", "1"), ("GRAPH_USER_BURST", "3")],
    );
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let (another_container, _) = graph_proxy::graph(&h.stack, h.clock.clone());

    // The burst, at one instant, over two of the user's connections.
    for account in [&shop, &blog, &shop] {
        let resp = graph.handle(get(account, "user-1")).await;
        assert_eq!(resp.status(), 200, "{}", resp.body_text());
    }
    assert_eq!(h.stack.meta.calls("graph"), 3);

    // One more, on either connection, through either door or container.
    let resp = another_container.handle(get(&blog, "user-1")).await;
    assert_rate_limited(
        resp.status().as_u16(),
        &resp.body_json(),
        resp.header_str("retry-after"),
    );
    let answer = graph
        .handle_invocation(invoke("instagram", &shop, "user-1"))
        .await;
    assert_rate_limited(
        answer["status"].as_u64().unwrap() as u16,
        &answer["body"],
        answer["headers"]["retry-after"]
            .as_str()
            .map(str::to_string),
    );
    // A send is held too, and its idempotency key stays free.
    let send = || {
        ApiRequest::new(
            "POST",
            &format!("/connections/instagram/{shop}/graph/me/messages"),
        )
        .user("user-1")
        .header("idempotency-key", "evt-limited")
        .json(&json!({"recipient": {"id": "9001"}, "message": {"text": "hi"}}))
        .into_request()
    };
    let resp = graph.handle(send()).await;
    assert_eq!(resp.status(), 429, "{}", resp.body_text());
    assert_eq!(resp.body_json()["error"], "rate_limited");
    assert_eq!(h.stack.meta.calls("graph"), 3, "Meta was not called");

    // Another user has a bucket of its own.
    let resp = graph.handle(get(&other, "user-2")).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());

    // A second later one token is back (not more): the send goes, once.
    h.clock.advance(time::Duration::seconds(1));
    let resp = graph.handle(send()).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    assert_eq!(resp.header_str("idempotent-replayed"), None);
    let resp = another_container.handle(get(&blog, "user-1")).await;
    assert_eq!(resp.status(), 429, "{}", resp.body_text());
    assert_eq!(h.stack.meta.sent_messages().len(), 1);
    assert_eq!(h.stack.meta.calls("graph"), 5);

    let logs = logs();
    assert!(logs
        .lines()
        .any(|l| l.contains("graph call") && l.contains(r#""error":"rate_limited""#)));
}

#[tokio::test]
async fn a_connection_over_its_bucket_gets_429_while_the_users_others_go_on() {
    let mut h = Harness::new().await;
    let shop = h.connect_instagram_as("user-1", "conn.shop").await;
    let blog = h.connect_instagram_as("user-1", "conn.blog").await;
    configure(
        &mut h,
        &[
            ("GRAPH_CONNECTION_RATE", "1"),
            ("GRAPH_CONNECTION_BURST", "2"),
        ],
    );
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());

    // Someone else naming the account gets 404s and drains nothing of the
    // owner's bucket.
    for _ in 0..5 {
        let resp = graph.handle(get(&shop, "mallory")).await;
        assert_eq!(resp.status(), 404);
    }
    for _ in 0..2 {
        let resp = graph.handle(get(&shop, "user-1")).await;
        assert_eq!(resp.status(), 200, "{}", resp.body_text());
    }
    let resp = graph.handle(get(&shop, "user-1")).await;
    assert_rate_limited(
        resp.status().as_u16(),
        &resp.body_json(),
        resp.header_str("retry-after"),
    );
    assert!(resp.body_json()["message"]
        .as_str()
        .unwrap()
        .contains("connection"));
    let answer = graph
        .handle_invocation(invoke("instagram", &shop, "user-1"))
        .await;
    assert_eq!(answer["status"], 429, "{answer}");
    assert_eq!(answer["body"]["error"], "rate_limited");
    assert_eq!(h.stack.meta.calls("graph"), 2, "Meta was not called");

    // The user's other connection has its own bucket.
    let resp = graph.handle(get(&blog, "user-1")).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());

    h.clock.advance(time::Duration::seconds(1));
    let resp = graph.handle(get(&shop, "user-1")).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    assert_eq!(h.stack.meta.calls("graph"), 4);
}

#[tokio::test]
async fn an_app_throttle_seen_on_one_account_holds_every_account_of_that_app() {
    let h = Harness::new().await;
    let a = h.connect_instagram_as("user-1", "app.a").await;
    let b = h.connect_instagram_as("user-2", "app.b").await;
    let page = FbPage::linked("p1", "Acme", "17841400000000021", "acme.fb");
    h.connect_facebook_as("user-3", FbPerson::with_page(page))
        .await;
    let (container_a, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let (container_b, _) = graph_proxy::graph(&h.stack, h.clock.clone());

    // Meta answers A: the app's request limit (code 4).
    h.stack.meta.throttle(&a, 4, 5);
    let resp = container_a.handle(get(&a, "user-1")).await;
    assert_eq!(resp.status(), 429, "{}", resp.body_text());
    assert_eq!(resp.body_json()["error"], "meta_rate_limited");
    assert_eq!(h.stack.meta.calls("graph"), 1);

    // B (another user, another container) is held without calling Meta,
    // at both doors, and sees nothing of A.
    let resp = container_b.handle(get(&b, "user-2")).await;
    assert_eq!(resp.status(), 429, "{}", resp.body_text());
    assert_eq!(resp.body_json()["error"], "meta_rate_limited");
    assert_eq!(resp.body_json()["meta"]["code"], 4);
    assert_eq!(resp.header_str("retry-after").as_deref(), Some("300"));
    assert!(!resp.body_text().contains(&a), "{}", resp.body_text());
    let answer = container_b
        .handle_invocation(invoke("instagram", &b, "user-2"))
        .await;
    assert_eq!(answer["status"], 429, "{answer}");
    assert_eq!(answer["headers"]["retry-after"], "300");
    assert_eq!(h.stack.meta.calls("graph"), 1, "Meta was not called for B");

    // The Facebook provider is another Meta app: its connections go on.
    let answer = container_b
        .handle_invocation(invoke("facebook", "17841400000000021", "user-3"))
        .await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(h.stack.meta.calls("graph"), 2);

    // Until the regain time, then every account calls again.
    h.stack.meta.clear_throttles();
    h.clock.advance(time::Duration::minutes(4));
    assert_eq!(container_b.handle(get(&b, "user-2")).await.status(), 429);
    h.clock.advance(time::Duration::minutes(1));
    let resp = container_b.handle(get(&b, "user-2")).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    assert_eq!(h.stack.meta.calls("graph"), 3);

    // x-app-usage at 100 % on B's success: A pauses too, without Meta.
    h.stack.meta.set_app_usage(100);
    let resp = container_b.handle(get(&b, "user-2")).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    let resp = container_a.handle(get(&a, "user-1")).await;
    assert_eq!(resp.status(), 429, "{}", resp.body_text());
    assert_eq!(resp.body_json()["error"], "meta_rate_limited");
    assert!(!resp.body_text().contains(&b), "{}", resp.body_text());
    assert_eq!(h.stack.meta.calls("graph"), 4);
}

#[tokio::test]
async fn concurrent_calls_from_two_containers_take_no_more_than_the_burst() {
    let mut h = Harness::new().await;
    let shop = h.connect_instagram_as("user-1", "race.shop").await;
    configure(
        &mut h,
        &[
            ("GRAPH_CONNECTION_RATE", "1"),
            ("GRAPH_CONNECTION_BURST", "4"),
        ],
    );
    let (a, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let (b, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let calls = (0..10)
        .map(|i| {
            let container = if i % 2 == 0 { &a } else { &b };
            container.handle(get(&shop, "user-1"))
        })
        .collect();
    let answers = super::futures_like_join(calls).await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429, 429, 429, 429]);
    assert_eq!(h.stack.meta.calls("graph"), 4);
}
