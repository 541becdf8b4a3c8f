//! The Graph proxy through both doors (API Gateway events with the user's
//! JWT, and direct invocation), against moto and the emulated Meta: owners
//! only, both providers on their own hosts, every refusal without a call to
//! Meta, dead tokens, throttling shared across containers, retries,
//! idempotency, one KMS decryption per connection per five minutes, and no
//! token in any answer, table or log line.

use infra::apigw::{ApiRequest, ResponseExt};
use infra::graph_proxy;
use integration_tests::*;

#[path = "graph/limits.rs"]
mod limits;
#[path = "graph/objects.rs"]
mod objects;
use serde_json::{json, Value};
use shared::Provider;

fn proxied(method: &str, account: &str, path: &str) -> ApiRequest {
    ApiRequest::new(
        method,
        &format!("/connections/instagram/{account}/graph/{path}"),
    )
}

fn dm(to: &str, text: &str) -> Value {
    json!({"recipient": {"id": to}, "message": {"text": text}})
}

async fn status_of(h: &Harness, user: &str) -> String {
    s(&h.connections_of(user).await[0], "status")
}

#[tokio::test]
async fn the_frontend_reads_media_and_sends_a_dm_once_however_often_it_retries() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "shop.one").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());

    let resp = graph
        .handle(
            proxied("GET", &account, "me/media?fields=id,caption,media_url")
                .user("user-1")
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    let body = resp.body_json();
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    assert_eq!(
        resp.header_str("cache-control").as_deref(),
        Some("no-store")
    );
    assert!(resp.header_str("x-fb-trace-id").is_some());
    assert!(resp.header_str("x-app-usage").is_some());
    assert!(resp.header_str("x-business-use-case-usage").is_some());

    let send = || {
        proxied("POST", &account, "me/messages")
            .user("user-1")
            .header("idempotency-key", "evt-123")
            .json(&dm("9001", "Thanks for your message!"))
            .into_request()
    };
    let first = graph.handle(send()).await;
    assert_eq!(first.status(), 200, "{}", first.body_text());
    assert_eq!(first.body_json()["recipient_id"], "9001");
    assert_eq!(first.header_str("idempotent-replayed"), None);
    for _ in 0..3 {
        let again = graph.handle(send()).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.body_json(), first.body_json());
        assert_eq!(
            again.header_str("idempotent-replayed").as_deref(),
            Some("true")
        );
    }
    assert_eq!(
        h.stack.meta.sent_messages().len(),
        1,
        "Meta got the DM once"
    );

    // The same key for another request.
    let other = graph
        .handle(
            proxied("POST", &account, "me/messages")
                .user("user-1")
                .header("idempotency-key", "evt-123")
                .json(&dm("9001", "Something else"))
                .into_request(),
        )
        .await;
    assert_eq!(other.status(), 422);
    assert_eq!(other.body_json()["error"], "idempotency_key_reused");
    assert_eq!(h.stack.meta.sent_messages().len(), 1);

    // One log line per call: method, path with ids hidden, status; no query
    // values, bodies or tokens.
    let logs = logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("graph call")).collect();
    assert!(lines.iter().any(|l| l.contains(r#""path":"me/messages""#)));
    assert!(lines.iter().any(|l| l.contains(r#""path":"me/media""#)));
    for l in &lines {
        assert!(!l.contains("Thanks for your message"), "{l}");
        assert!(!l.contains("caption,media_url"), "{l}");
    }
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn only_the_owner_may_act_through_either_door() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "owned.one").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());

    let resp = graph
        .handle(
            proxied("GET", &account, "me")
                .user("mallory")
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.body_json()["error"], "not_found");
    let resp = graph
        .handle(
            proxied("GET", "17841499999999999", "me")
                .user("user-1")
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 404);
    let resp = graph
        .handle(proxied("GET", &account, "me").into_request())
        .await;
    assert_eq!(resp.status(), 401);
    let resp = graph
        .handle(
            ApiRequest::new("GET", &format!("/connections/tiktok/{account}/graph/me"))
                .user("user-1")
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.body_json()["error"], "unknown_provider");

    // The backend names the owner it acts for: required, and it must match.
    let invoke = |user: Value| {
        json!({"provider": "instagram", "account_id": account, "method": "GET", "path": "me/media",
               "query": {"fields": "id"}, "body": null, "idempotency_key": null, "user_id": user})
    };
    let answer = graph.handle_invocation(invoke(json!("user-1"))).await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["body"]["data"].as_array().unwrap().len(), 3);
    assert_eq!(answer["replayed"], false);
    assert!(answer["headers"]["x-fb-trace-id"].is_string());
    let answer = graph.handle_invocation(invoke(json!("mallory"))).await;
    assert_eq!(answer["status"], 404);
    assert_eq!(answer["body"]["error"], "not_found");
    // No owner named: refused, never "whoever owns the account".
    for user in [Value::Null, json!("")] {
        let answer = graph.handle_invocation(invoke(user.clone())).await;
        assert_eq!(answer["status"], 400, "{user}: {answer}");
        assert_eq!(answer["body"]["error"], "invalid_request");
    }
    let mut without = invoke(Value::Null);
    without.as_object_mut().unwrap().remove("user_id");
    let answer = graph.handle_invocation(without).await;
    assert_eq!(answer["status"], 400, "{answer}");
    let answer = graph
        .handle_invocation(json!({"provider": "instagram"}))
        .await;
    assert_eq!(answer["status"], 400);
    assert_eq!(answer["body"]["error"], "invalid_request");
    // An API Gateway event sent by invocation is not read as that user's
    // call, whatever `sub` it carries.
    let forged = proxied("GET", &account, "me/media").user("user-1").event();
    let answer = graph.handle_invocation(forged).await;
    assert_eq!(answer["status"], 400, "{answer}");
    assert_eq!(answer["body"]["error"], "bad_request");
    assert_eq!(
        h.stack.meta.calls("graph"),
        1,
        "refused requests never reach Meta"
    );
}

#[tokio::test]
async fn facebook_connections_use_the_page_token_and_appsecret_proof_on_graph_facebook() {
    let h = Harness::new().await;
    let page = FbPage::linked("p1", "Acme", "17841400000000021", "acme.fb");
    h.connect_facebook_as("user-7", FbPerson::with_page(page))
        .await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let answer = graph
        .handle_invocation(
            json!({"provider": "facebook", "account_id": "17841400000000021",
            "method": "POST", "path": "p1/messages", "body": dm("42", "hello from the Page"),
            "idempotency_key": "fb-1", "user_id": "user-7"}),
        )
        .await;
    assert_eq!(answer["status"], 200, "{answer}");
    let sent = h.stack.meta.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "p1", "sent as the Page");
    // The Instagram door of the same account is another connection: absent.
    let answer = graph
        .handle_invocation(
            json!({"provider": "instagram", "account_id": "17841400000000021",
            "method": "GET", "path": "me", "user_id": "user-7"}),
        )
        .await;
    assert_eq!(answer["status"], 404);
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn every_refusal_is_a_clear_error_and_never_reaches_meta() {
    let mut h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "careful.one").await;
    // Every refusal counts against the caller's buckets too: room for all
    // of this test's calls in one instant.
    for (k, v) in [
        ("GRAPH_USER_BURST", "1000"),
        ("GRAPH_CONNECTION_BURST", "1000"),
    ] {
        h.stack.env.insert(k.into(), v.into());
    }
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    for path in [
        "me/subscribed_apps",
        "me/permissions",
        "me/oauth/access_token",
        "evil",
        "me/..",
        "me/%2e%2e/x",
        "me%2Fsubscribed_apps",
        "me/a/b/c/d",
        "me/media?access_token=x",
        "me?fields=id,access_token",
        "me?appsecret_proof=x",
        "me?method=delete",
        "me/media?batch=%5B%5D",
        "me?suppress_http_code=1",
        "me?debug=all",
        "me?callback=steal",
        "me?redirect=false",
        "me?ids=17841400000000009",
        "me?include_headers=false",
    ] {
        let resp = graph
            .handle(proxied("GET", &account, path).user("user-1").into_request())
            .await;
        assert_eq!(resp.status(), 400, "{path}: {}", resp.body_text());
        assert_eq!(resp.body_json()["error"], "path_not_allowed", "{path}");
        assert!(resp.body_json()["message"].is_string());
    }
    // A form body may not smuggle a credential either.
    let resp = graph
        .handle(
            proxied("POST", &account, "me/media")
                .user("user-1")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("image_url=https%3A%2F%2Fx&fields=access_token")
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 400);
    // Nor a JSON body, at any depth, through either door.
    for body in [
        json!({"recipient": {"id": "1"}, "message": {"text": "x", "access_token": "t"}}),
        json!({"recipient": {"id": "1"}, "message": {"attachments": [{"payload": {"url": "https://x/?appsecret_proof=p"}}]}}),
        json!({"batch": [{"method": "GET", "relative_url": "me"}]}),
    ] {
        let resp = graph
            .handle(
                proxied("POST", &account, "me/messages")
                    .user("user-1")
                    .json(&body)
                    .into_request(),
            )
            .await;
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(resp.body_json()["error"], "path_not_allowed", "{body}");
        let answer = graph
            .handle_invocation(json!({"provider": "instagram", "account_id": account,
                "method": "POST", "path": "me/messages", "body": body, "user_id": "user-1"}))
            .await;
        assert_eq!(answer["status"], 400, "{answer}");
        assert_eq!(answer["body"]["error"], "path_not_allowed");
    }
    // Methods other than GET, POST and DELETE (the backend door can name any).
    let answer = graph
        .handle_invocation(json!({"provider": "instagram", "account_id": account,
            "method": "PUT", "path": "me", "user_id": "user-1"}))
        .await;
    assert_eq!(answer["status"], 400);
    assert_eq!(answer["body"]["error"], "path_not_allowed");
    // 413 above 1 MiB.
    let big = json!({"message": "x".repeat(1024 * 1024 + 1)});
    let resp = graph
        .handle(
            proxied("POST", &account, "me/messages")
                .user("user-1")
                .json(&big)
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 413);
    let answer = graph
        .handle_invocation(json!({"provider": "instagram", "account_id": account,
            "method": "POST", "path": "me/messages", "body": big, "user_id": "user-1"}))
        .await;
    assert_eq!(answer["status"], 413);
    // A malformed idempotency key.
    let resp = graph
        .handle(
            proxied("POST", &account, "me/messages")
                .user("user-1")
                .header("idempotency-key", "two words")
                .json(&dm("1", "x"))
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(h.stack.meta.calls("graph"), 0);
}

#[tokio::test]
async fn calls_refused_at_either_door_are_clear_errors_and_logged_too() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "door.one").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    // No user in the event (the authorizer let nothing through): 401.
    let resp = graph
        .handle(proxied("GET", &account, "me/media").into_request())
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.body_json()["error"], "unauthenticated");
    // A body that can't be read: 400, and nothing of it in the logs.
    let resp = graph
        .handle(
            proxied("POST", &account, "me/messages")
                .user("user-1")
                .header("content-type", "application/json")
                .body("{\"message\": secret-door-body")
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.body_json()["error"], "invalid_request");
    let resp = graph
        .handle(
            proxied("POST", &account, "me/messages")
                .user("user-1")
                .header("content-type", "text/plain")
                .body("secret-door-text")
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 400);
    // An invocation that is not the documented shape.
    let answer = graph
        .handle_invocation(json!({"provider": "instagram", "method": "post",
            "path": ["secret-door-path"]}))
        .await;
    assert_eq!(answer["status"], 400, "{answer}");
    assert_eq!(answer["body"]["error"], "invalid_request");
    assert_eq!(h.stack.meta.calls("graph"), 0);

    let logs = logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("graph call")).collect();
    assert!(lines.iter().any(|l| l.contains(r#""door":"http""#)
        && l.contains(r#""status":401"#)
        && l.contains(r#""error":"unauthenticated""#)));
    assert!(lines.iter().any(|l| l.contains(r#""door":"http""#)
        && l.contains(r#""status":400"#)
        && l.contains(r#""error":"invalid_request""#)));
    assert!(lines.iter().any(|l| l.contains(r#""door":"invoke""#)
        && l.contains(r#""method":"POST""#)
        && l.contains(r#""error":"invalid_request""#)));
    assert!(
        !logs.contains("secret-door"),
        "nothing of a refused request is logged"
    );
}

#[tokio::test]
async fn a_dead_token_flips_the_connection_at_once_and_later_calls_stay_home() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "dying.one").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    h.stack.meta.invalidate_account(&account);

    let resp = graph
        .handle(
            proxied("GET", &account, "me/media")
                .user("user-1")
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 409, "{}", resp.body_text());
    let body = resp.body_json();
    assert_eq!(body["error"], "connection_needs_reauth");
    assert_eq!(body["meta"]["code"], 190);
    assert_eq!(status_of(&h, "user-1").await, "needs_reauth");
    let events = h.events("connection.needs_reauth").await;
    assert_eq!(events.len(), 1);
    assert_eq!(s(&events[0], "account_id"), account);

    let calls = h.stack.meta.calls("graph");
    let resp = graph
        .handle(
            proxied("POST", &account, "me/messages")
                .user("user-1")
                .json(&dm("1", "x"))
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 409);
    assert_eq!(resp.body_json()["error"], "connection_needs_reauth");
    assert_eq!(
        h.stack.meta.calls("graph"),
        calls,
        "Meta is not called again"
    );
    // The refresher would not pick it up again either: it left the due index.
    assert!(!h.connections_of("user-1").await[0].contains_key("due_at"));
}

#[tokio::test]
async fn a_sent_dm_replays_even_once_the_account_is_blocked_or_needs_reauth() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "replay.one").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let send = |key: &str| {
        proxied("POST", &account, "me/messages")
            .user("user-1")
            .header("idempotency-key", key)
            .json(&dm("9001", "Your order shipped"))
            .into_request()
    };
    let first = graph.handle(send("evt-1")).await;
    assert_eq!(first.status(), 200, "{}", first.body_text());

    // Meta then blocks the account: a retry of the sent DM still gets its
    // answer; a new send is a 429 and its key stays free.
    h.stack.meta.throttle(&account, 80002, 5);
    let blocked = graph
        .handle(
            proxied("GET", &account, "me/media")
                .user("user-1")
                .into_request(),
        )
        .await;
    assert_eq!(blocked.status(), 429);
    let again = graph.handle(send("evt-1")).await;
    assert_eq!(again.status(), 200, "{}", again.body_text());
    assert_eq!(again.body_json(), first.body_json());
    assert_eq!(
        again.header_str("idempotent-replayed").as_deref(),
        Some("true")
    );
    let new = graph.handle(send("evt-2")).await;
    assert_eq!(new.status(), 429, "{}", new.body_text());
    let invoked = graph
        .handle_invocation(json!({"provider": "instagram", "account_id": account,
            "method": "POST", "path": "me/messages", "body": dm("9001", "Your order shipped"),
            "idempotency_key": "evt-1", "user_id": "user-1"}))
        .await;
    assert_eq!(invoked["status"], 200, "{invoked}");
    assert_eq!(invoked["replayed"], true);

    // Once the block is over, the refused key sends.
    h.stack.meta.clear_throttles();
    h.clock.advance(time::Duration::minutes(6));
    let later = graph.handle(send("evt-2")).await;
    assert_eq!(later.status(), 200, "{}", later.body_text());
    assert_eq!(h.stack.meta.sent_messages().len(), 2);

    // The token dies: the sent DMs still replay, nothing new is sent.
    h.stack.meta.invalidate_account(&account);
    let dead = graph
        .handle(
            proxied("GET", &account, "me/media")
                .user("user-1")
                .into_request(),
        )
        .await;
    assert_eq!(dead.status(), 409);
    let again = graph.handle(send("evt-2")).await;
    assert_eq!(again.status(), 200, "{}", again.body_text());
    assert_eq!(
        again.header_str("idempotent-replayed").as_deref(),
        Some("true")
    );
    let refused = graph.handle(send("evt-3")).await;
    assert_eq!(refused.status(), 409);
    assert_eq!(refused.body_json()["error"], "connection_needs_reauth");
    assert_eq!(h.stack.meta.sent_messages().len(), 2);
}

#[tokio::test]
async fn revoked_connections_are_refused_without_meta() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "gone.one").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    h.stack
        .dynamodb
        .update_item()
        .table_name(h.stack.var("CONNECTIONS_TABLE"))
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("USER#user-1".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("CONN#instagram#{account}")),
        )
        .update_expression("SET #s = :r")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(
            ":r",
            aws_sdk_dynamodb::types::AttributeValue::S("revoked".into()),
        )
        .send()
        .await
        .unwrap();
    let resp = graph
        .handle(proxied("GET", &account, "me").user("user-1").into_request())
        .await;
    assert_eq!(resp.status(), 409);
    assert_eq!(resp.body_json()["error"], "connection_revoked");
    assert_eq!(h.stack.meta.calls("graph"), 0);
}

#[tokio::test]
async fn throttling_is_a_429_and_every_container_stops_calling_meta_until_regain() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "busy.one").await;
    let (container_a, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let (container_b, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    h.stack.meta.throttle(&account, 80002, 5);

    let get = || {
        proxied("GET", &account, "me/media")
            .user("user-1")
            .into_request()
    };
    let resp = container_a.handle(get()).await;
    assert_eq!(resp.status(), 429, "{}", resp.body_text());
    assert_eq!(resp.body_json()["error"], "meta_rate_limited");
    assert_eq!(resp.body_json()["meta"]["code"], 80002);
    assert_eq!(resp.header_str("retry-after").as_deref(), Some("300"));
    assert_eq!(h.stack.meta.calls("graph"), 1);

    // Meta would answer again, but its block stands until the time it gave:
    // another container doesn't call Meta either.
    h.stack.meta.clear_throttles();
    h.clock.advance(time::Duration::minutes(2));
    let resp = container_b.handle(get()).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.header_str("retry-after").as_deref(), Some("180"));
    let answer = container_b
        .handle_invocation(
            json!({"provider": "instagram", "account_id": account, "method": "GET", "path": "me",
                   "user_id": "user-1"}),
        )
        .await;
    assert_eq!(answer["status"], 429);
    assert_eq!(answer["headers"]["retry-after"], "180");
    assert_eq!(h.stack.meta.calls("graph"), 1);

    h.clock.advance(time::Duration::minutes(3));
    let resp = container_b.handle(get()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.stack.meta.calls("graph"), 2);
}

#[tokio::test]
async fn an_answer_at_full_app_usage_pauses_the_account_before_meta_throttles() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "usage.one").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let get = || {
        proxied("GET", &account, "me/media")
            .user("user-1")
            .into_request()
    };
    // Meta answers, but says the app has used all of its calls.
    h.stack.meta.set_app_usage(100);
    let resp = graph.handle(get()).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    assert_eq!(h.stack.meta.calls("graph"), 1);
    // The next call waits without reaching Meta.
    let resp = graph.handle(get()).await;
    assert_eq!(resp.status(), 429, "{}", resp.body_text());
    assert_eq!(resp.body_json()["error"], "meta_rate_limited");
    let wait: i64 = resp.header_str("retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1, "{wait}");
    assert_eq!(h.stack.meta.calls("graph"), 1);
    // Once the pause is over, calls go through again.
    h.stack.meta.set_app_usage(12);
    h.clock.advance(time::Duration::seconds(wait));
    let resp = graph.handle(get()).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    assert_eq!(h.stack.meta.calls("graph"), 2);
}

#[tokio::test]
async fn meta_failing_is_a_502_get_is_retried_post_is_not_and_a_key_can_try_again() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "flaky.one").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    h.stack
        .meta
        .fail("graph", 503, r#"{"error":{"message":"down","code":2}}"#);

    let resp = graph
        .handle(
            proxied("GET", &account, "me/media")
                .user("user-1")
                .into_request(),
        )
        .await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.body_json()["error"], "meta_unavailable");
    assert_eq!(h.stack.meta.calls("graph"), 3, "GET tried three times");

    let send = || {
        proxied("POST", &account, "me/messages")
            .user("user-1")
            .header("idempotency-key", "evt-9")
            .json(&dm("9001", "hi"))
            .into_request()
    };
    let resp = graph.handle(send()).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(h.stack.meta.calls("graph"), 4, "POST tried once");

    // Meta is back: the same key is free to try again, and sends once.
    h.stack.meta.clear_failures();
    let resp = graph.handle(send()).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    let resp = graph.handle(send()).await;
    assert_eq!(
        resp.header_str("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(h.stack.meta.sent_messages().len(), 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_send_once() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "racy.one").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let gate = h.stack.meta.hold("graph");
    let send = || {
        graph.handle(
            proxied("POST", &account, "me/messages")
                .user("user-1")
                .header("idempotency-key", "evt-race")
                .json(&dm("9001", "once"))
                .into_request(),
        )
    };
    // The first is held at Meta's door; the second arrives meanwhile.
    let (a, b) = tokio::join!(send(), async {
        gate.arrivals(1).await;
        let b = send().await;
        gate.release();
        b
    });
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 409],
        "{} / {}",
        a.body_text(),
        b.body_text()
    );
    let busy = if a.status() == 409 { &a } else { &b };
    assert_eq!(busy.body_json()["error"], "request_in_progress");
    assert_eq!(h.stack.meta.sent_messages().len(), 1);
}

#[tokio::test]
async fn one_kms_decrypt_per_connection_per_five_minutes_and_no_token_in_answers() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "warm.one").await;
    let (graph, kms) = graph_proxy::graph(&h.stack, h.clock.clone());
    h.stack.meta.leak_tokens_in_answers(true);

    let get = || {
        graph.handle(
            proxied("GET", &account, "me/media")
                .user("user-1")
                .into_request(),
        )
    };
    let answers =
        futures_like_join(vec![get(), get(), get(), get(), get(), get(), get(), get()]).await;
    for resp in &answers {
        assert_eq!(resp.status(), 200);
        let text = resp.body_text();
        assert!(!text.contains("access_token"), "{text}");
        assert!(!text.contains("EAAleaked"), "{text}");
    }
    assert_eq!(
        kms.count("Decrypt"),
        1,
        "eight concurrent calls, one decryption"
    );
    h.clock.advance(time::Duration::minutes(4));
    assert_eq!(get().await.status(), 200);
    assert_eq!(kms.count("Decrypt"), 1);
    h.clock.advance(time::Duration::minutes(1));
    assert_eq!(get().await.status(), 200);
    assert_eq!(kms.count("Decrypt"), 2, "opened again after five minutes");
    assert_eq!(graph.cached_tokens(), 1);

    // A refreshed token (a new sealing) replaces the cached one at once.
    h.clock.advance(time::Duration::days(54));
    let summary = h.refresh().await;
    assert_eq!(summary.refreshed, 1);
    let before = kms.count("Decrypt");
    assert_eq!(get().await.status(), 200);
    assert_eq!(kms.count("Decrypt"), before + 1);

    // Nothing of a token in the proxy's table, answers or logs.
    let graph_items = format!("{:?}", h.scan("GRAPH_TABLE").await);
    for token in h.stack.meta.tokens_for_account(&account) {
        assert!(!graph_items.contains(&token));
    }
    h.assert_no_secret_leaked().await;
    let _ = Provider::Instagram;
}

/// Polls the futures together on this task (the proxy's futures borrow it).
async fn futures_like_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

use infra::graph_proxy::{stream_record, InProcess};

#[tokio::test]
async fn the_example_dm_bot_answers_a_message_from_the_stream_once() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "bot.shop").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());

    // A person writes; Meta delivers the webhook; the service stores the event.
    let delivery = json!({"object": "instagram", "entry": [{"id": account, "time": 1795260000000u64,
        "messaging": [{"sender": {"id": "9001"}, "recipient": {"id": account}, "timestamp": 1795260000000u64,
                       "message": {"mid": "m_bot_1", "text": "Is the blue one in stock?"}}]}]})
    .to_string();
    let secret = h.stack.meta.apps().instagram_app_secret;
    let resp = h
        .call_webhook(Harness::signed_notification(delivery.as_bytes(), &secret))
        .await;
    assert_eq!(resp.status(), 200);

    // The bot reads the stream (every event so far: lifecycle and webhook).
    let records: Vec<Value> = h
        .scan("EVENTS_TABLE")
        .await
        .iter()
        .enumerate()
        .map(|(i, item)| stream_record(item, i))
        .collect();
    let batch = json!({"Records": records});
    let out = dm_bot::handle(&InProcess(&graph), &batch).await;
    assert_eq!(out["batchItemFailures"], json!([]));
    let sent = h.stack.meta.sent_messages();
    assert_eq!(sent.len(), 1, "one answer, to the one message");
    assert_eq!(sent[0].1["recipient"]["id"], "9001");
    assert!(sent[0].1["message"]["text"]
        .as_str()
        .unwrap()
        .contains("Is the blue one in stock?"));

    // Lambda retries the whole batch: the event id is the idempotency key.
    let out = dm_bot::handle(&InProcess(&graph), &batch).await;
    assert_eq!(out["batchItemFailures"], json!([]));
    assert_eq!(h.stack.meta.sent_messages().len(), 1);

    // While Meta throttles the account, the record is handed back for retry.
    h.stack.meta.throttle(&account, 80002, 1);
    let delivery = delivery.replace("m_bot_1", "m_bot_2");
    h.call_webhook(Harness::signed_notification(delivery.as_bytes(), &secret))
        .await;
    let second: Vec<Value> = h
        .scan("EVENTS_TABLE")
        .await
        .iter()
        .filter(|i| s(i, "event_id").ends_with("m_bot_2"))
        .map(|i| stream_record(i, 99))
        .collect();
    let batch = json!({"Records": second});
    let out = dm_bot::handle(&InProcess(&graph), &batch).await;
    assert_eq!(out["batchItemFailures"], json!([{"itemIdentifier": "99"}]));
    assert_eq!(h.stack.meta.sent_messages().len(), 1);

    // Lambda retries after Meta's regain time: the key was not used up by the
    // throttled attempt, so the reply goes out now, once.
    h.stack.meta.clear_throttles();
    h.clock.advance(time::Duration::minutes(2));
    for _ in 0..2 {
        let out = dm_bot::handle(&InProcess(&graph), &batch).await;
        assert_eq!(out["batchItemFailures"], json!([]));
    }
    assert_eq!(h.stack.meta.sent_messages().len(), 2);
}

/// Meta's `paging.next` carries the token; the proxy hands back its own
/// route instead, and following it pages through (CONTRACT.md, "Proxy
/// amendments").
#[tokio::test]
async fn paging_never_hands_out_the_token_and_is_followed_through_the_http_door() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "pages.one").await;
    h.stack.meta.set_media_count(5);
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let tokens = h.stack.meta.tokens_for_account(&account);
    assert!(!tokens.is_empty());

    let mut path = "me/media?fields=id,caption&limit=2".to_string();
    let mut captions = Vec::new();
    for page in 0.. {
        let resp = graph
            .handle(
                proxied("GET", &account, &path)
                    .user("user-1")
                    .into_request(),
            )
            .await;
        assert_eq!(resp.status(), 200, "{}", resp.body_text());
        let text = resp.body_text();
        for t in &tokens {
            assert!(!text.contains(t.as_str()), "the token is in page {page}");
        }
        assert!(!text.contains("access_token"), "{text}");
        let body = resp.body_json();
        captions.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["caption"].as_str().unwrap().to_string()),
        );
        assert!(body["paging"]["cursors"]["after"].is_string());
        if page > 0 {
            let previous = body["paging"]["previous"].as_str().unwrap();
            assert!(previous.starts_with(&format!("/connections/instagram/{account}/graph/")));
        }
        let Some(next) = body["paging"]["next"].as_str() else {
            break;
        };
        let prefix = format!("/connections/instagram/{account}/graph/");
        assert!(next.starts_with(&prefix), "{next}");
        assert!(
            next.contains("limit=2") && next.contains("after="),
            "{next}"
        );
        path = next.strip_prefix(&prefix).unwrap().to_string();
        assert!(page < 5, "paging ends");
    }
    assert_eq!(captions, ["Post 1", "Post 2", "Post 3", "Post 4", "Post 5"]);
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn paging_through_the_invoke_door_gives_path_and_query() {
    let h = Harness::new().await;
    let page = FbPage::linked("p1", "Acme", "17841400000000021", "acme.fb");
    h.connect_facebook_as("user-7", FbPerson::with_page(page))
        .await;
    h.stack.meta.set_media_count(3);
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let tokens = h.stack.meta.tokens_for_account("17841400000000021");
    assert!(!tokens.is_empty());
    let call = |path: Value, query: Value| {
        json!({"provider": "facebook", "account_id": "17841400000000021", "user_id": "user-7",
               "method": "GET", "path": path, "query": query})
    };
    let first = graph
        .handle_invocation(call(json!("17841400000000021/media"), json!({"limit": 2})))
        .await;
    assert_eq!(first["status"], 200, "{first}");
    let text = first.to_string();
    for t in &tokens {
        assert!(
            !text.contains(t.as_str()),
            "the Page token is in the answer"
        );
    }
    assert!(!text.contains("appsecret"), "{text}");
    let next = &first["body"]["paging"]["next"];
    assert_eq!(next["path"], "17841400000000021/media", "{first}");
    assert_eq!(next["query"]["limit"], "2");
    let second = graph
        .handle_invocation(call(next["path"].clone(), next["query"].clone()))
        .await;
    assert_eq!(second["status"], 200, "{second}");
    assert_eq!(second["body"]["data"][0]["caption"], "Post 3");
    assert!(second["body"]["paging"].get("next").is_none());
    assert_eq!(
        second["body"]["paging"]["previous"]["path"],
        "17841400000000021/media"
    );
}

#[tokio::test]
async fn no_credential_is_answered_or_kept_for_replays_whatever_meta_puts_in_its_answer() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "careless.meta").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    h.stack.meta.leak_tokens_in_answers(true);
    let tokens = h.stack.meta.tokens_for_account(&account);
    let send = || {
        graph.handle(
            proxied("POST", &account, "me/messages")
                .user("user-1")
                .header("idempotency-key", "leaky-1")
                .json(&dm("9001", "hi"))
                .into_request(),
        )
    };
    let first = send().await;
    let replay = send().await;
    assert_eq!(
        replay.header_str("idempotent-replayed").as_deref(),
        Some("true")
    );
    for resp in [&first, &replay] {
        assert_eq!(resp.status(), 200, "{}", resp.body_text());
        let text = resp.body_text();
        for t in &tokens {
            assert!(!text.contains(t.as_str()), "{text}");
        }
        for word in ["access_token", "appsecret_proof", "EAAleaked"] {
            assert!(!text.contains(word), "{word} in {text}");
        }
        assert_eq!(
            resp.body_json()["debug_link"],
            "https://graph.example/v1/x?ok=1"
        );
    }
    let stored = format!("{:?}", h.scan("GRAPH_TABLE").await);
    assert!(stored.contains("debug_link"), "the answer is kept");
    for t in &tokens {
        assert!(!stored.contains(t.as_str()), "a token is kept for replays");
    }
    assert!(!stored.contains("appsecret_proof"));
}

/// An idempotency key belongs to the connection as connected: deleted and
/// made again by another user, the same key sends anew, and never hands the
/// new owner the earlier owner's answer.
#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_owner_and_the_connection() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "moving.one").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let send = |user: &str, text: &str| {
        graph.handle(
            proxied("POST", &account, "me/messages")
                .user(user)
                .header("idempotency-key", "shared-key")
                .json(&dm("9001", text))
                .into_request(),
        )
    };
    let first = send("user-1", "from the first owner").await;
    assert_eq!(first.status(), 200, "{}", first.body_text());
    let deleted = h
        .call_connections(
            ApiRequest::new("DELETE", &format!("/connections/instagram/{account}")).user("user-1"),
        )
        .await;
    assert_eq!(deleted.status(), 204);
    h.clock.advance(time::Duration::minutes(1));
    let again = h.connect_instagram_as("user-2", "moving.one").await;
    assert_eq!(again, account);
    let second = send("user-2", "from the first owner").await;
    assert_eq!(second.status(), 200, "{}", second.body_text());
    assert_eq!(second.header_str("idempotent-replayed"), None);
    assert_ne!(
        second.body_json()["message_id"],
        first.body_json()["message_id"]
    );
    assert_eq!(h.stack.meta.sent_messages().len(), 2);
}

/// A send whose answer never came back may have been sent: the same key is
/// never sent again (`409 outcome_unknown`), while a new key goes through.
#[tokio::test]
async fn a_timed_out_send_keeps_its_key_as_outcome_unknown() {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "slow.meta").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let graph = graph
        .with_meta_timeout(std::time::Duration::from_millis(300))
        .unwrap();
    let send = |key: &'static str| {
        graph.handle(
            proxied("POST", &account, "me/messages")
                .user("user-1")
                .header("idempotency-key", key)
                .json(&dm("9001", "did it go?"))
                .into_request(),
        )
    };
    // Meta holds the first send past the proxy's timeout, then acts on it.
    let gate = h.stack.meta.hold("graph");
    let first = send("slow-1").await;
    assert_eq!(first.status(), 502, "{}", first.body_text());
    assert_eq!(first.body_json()["error"], "meta_unavailable");
    gate.release();
    for _ in 0..2 {
        let again = send("slow-1").await;
        assert_eq!(again.status(), 409, "{}", again.body_text());
        assert_eq!(again.body_json()["error"], "outcome_unknown");
    }
    // Still refused near the end of the record's 24 hours.
    h.clock.advance(time::Duration::hours(23));
    assert_eq!(send("slow-1").await.status(), 409);
    let fresh = send("slow-2").await;
    assert_eq!(fresh.status(), 200, "{}", fresh.body_text());
}
