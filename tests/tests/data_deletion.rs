//! Data deletion as the person sees it: the status URL Meta shows them is on
//! the public API (never under Meta's secret path prefix), and a request
//! covers every account the service held for them within the retention,
//! including accounts the product deleted before, with their stored events
//! and the Graph proxy's stored answers.

use infra::apigw::{match_route_under, ApiRequest, Door, ResponseExt};
use integration_tests::*;
use serde_json::{json, Value};
use shared::webhook::make_signed_request;

/// The app-scoped id the emulated Meta's exchange gives.
const META_USER: &str = "26000000000000001";

fn ig_secret(h: &Harness) -> String {
    h.stack.meta.apps().instagram_app_secret
}

/// `POST /meta/data-deletion` as Meta posts it: under the prefix, a form with
/// a `signed_request` for the person issued at the test clock's time.
async fn request_deletion(h: &Harness) -> Value {
    let signed = make_signed_request(
        ig_secret(h).as_bytes(),
        &json!({"algorithm": "HMAC-SHA256", "issued_at": h.clock.now().unix_timestamp(),
                "user_id": META_USER}),
    );
    let req = ApiRequest::post(&h.stack.meta_path("/meta/data-deletion"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "signed_request={}",
            url::form_urlencoded::byte_serialize(signed.as_bytes()).collect::<String>()
        ));
    let resp = h.call_webhook(req).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    resp.body_json()
}

/// `GET <url>` the way the deployed APIs route it: the gateway must serve it
/// on the public API (no stage), and the webhook function answers it.
async fn open_status_page(h: &Harness, url: &str) -> Value {
    let path = url::Url::parse(url).unwrap().path().to_string();
    let route = match_route_under("GET", &path, &h.stack.meta_path_prefix)
        .unwrap_or_else(|| panic!("no public route serves {path}"));
    assert_eq!(route.door, Door::Open, "the public API, no JWT");
    assert_eq!(route.stage, "", "not under Meta's stage");
    let resp = h.call_webhook(ApiRequest::get(&path)).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    resp.body_json()
}

#[tokio::test]
async fn the_status_url_is_on_the_public_api_and_never_carries_the_meta_prefix() {
    let h = Harness::new().await;
    let connected = h.connect("instagram", "user-1").await.location();
    assert_eq!(param(&connected, "status").as_deref(), Some("connected"));
    h.clock.advance(time::Duration::minutes(1));

    let answer = request_deletion(&h).await;
    let code = answer["confirmation_code"].as_str().unwrap();
    let url = answer["url"].as_str().unwrap();
    let public = format!("{}/meta/data-deletion/", h.stack.var("PUBLIC_BASE_URL"));
    assert_eq!(url, format!("{public}{code}"));
    let prefix = &h.stack.meta_path_prefix;
    let secret = prefix.trim_start_matches('/');
    assert!(!url.contains(secret), "the status URL carries the prefix");

    // Where Meta's routes live, there is no status page.
    let under_prefix = h.stack.meta_path(url::Url::parse(url).unwrap().path());
    assert!(match_route_under("GET", &under_prefix, prefix).is_none());

    let status = open_status_page(&h, url).await;
    assert_eq!(status["confirmation_code"], code);
    assert_eq!(status["status"], "pending");

    // Nothing the service answered, to Meta or to the person, names it.
    let seen = h.seen.lock().unwrap().join("\n");
    assert!(!seen.contains(secret), "a response carries the Meta prefix");
}

/// Stores two messages for `account`, as Meta delivers them (signed, under
/// the prefix).
async fn store_messages(h: &Harness, account: &str) {
    let items: Vec<Value> = ["m_1", "m_2"]
        .iter()
        .map(|mid| {
            json!({"sender": {"id": "9001"}, "recipient": {"id": account},
                   "timestamp": 1795260000123u64, "message": {"mid": mid, "text": "a DM"}})
        })
        .collect();
    let body = json!({"object": "instagram", "entry": [{"id": account, "time": 1795260000456u64, "messaging": items}]})
        .to_string();
    let mut req = Harness::signed_notification(body.as_bytes(), &ig_secret(h));
    req.path = h.stack.meta_path("/webhook");
    assert_eq!(h.call_webhook(req).await.status(), 200);
}

/// Sends a DM through the Graph proxy with an idempotency key: the proxy
/// keeps its answer (an idempotency record).
async fn send_dm_once(h: &Harness, account: &str) {
    let (graph, _) = infra::graph_proxy::graph(&h.stack, h.clock.clone());
    let req = ApiRequest::post(&format!(
        "/connections/instagram/{account}/graph/me/messages"
    ))
    .user("user-1")
    .header("idempotency-key", "evt-123")
    .json(&json!({"recipient": {"id": "9001"}, "message": {"text": "Thanks!"}}));
    let resp = graph.handle(req.into_request()).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
}

/// What is stored of `account`: its events (but the deletion notices), and
/// the proxy's records that name it.
async fn stored_of(h: &Harness, account: &str) -> (Vec<String>, usize) {
    let events = h
        .scan("EVENTS_TABLE")
        .await
        .into_iter()
        .filter(|e| s(e, "account_id") == account && s(e, "kind") != "data_deletion.requested")
        .map(|e| s(&e, "kind"))
        .collect();
    let answers = h
        .scan("GRAPH_TABLE")
        .await
        .iter()
        .filter(|i| s(i, "pk").starts_with(&format!("IDEM#instagram#{account}#")))
        .count();
    (events, answers)
}

#[tokio::test]
async fn a_deletion_request_after_the_product_deleted_the_connection_leaves_nothing() {
    let h = Harness::new().await;
    let connected = h.connect("instagram", "user-1").await.location();
    let account = param(&connected, "account_id").unwrap();
    store_messages(&h, &account).await;
    send_dm_once(&h, &account).await;
    let (events, answers) = stored_of(&h, &account).await;
    assert!(events.contains(&"messages".to_string()), "{events:?}");
    assert_eq!(answers, 1, "the proxy kept its answer");

    // The product deletes the connection; days later the person asks Meta.
    let delete =
        ApiRequest::new("DELETE", &format!("/connections/instagram/{account}")).user("user-1");
    assert_eq!(h.call_connections(delete).await.status(), 204);
    assert!(h.connections_of("user-1").await.is_empty());
    h.clock.advance(time::Duration::days(3));
    let answer = request_deletion(&h).await;
    assert_eq!(
        answer["status"], "pending",
        "the deleted account's data is still stored: not complete"
    );
    let code = answer["confirmation_code"].as_str().unwrap().to_string();
    let url = answer["url"].as_str().unwrap().to_string();
    assert_eq!(open_status_page(&h, &url).await["status"], "pending");
    assert_eq!(
        h.events("data_deletion.requested").await.len(),
        1,
        "the product is told about the deleted account too"
    );

    // The data-deletion function runs the job.
    let outcome = h
        .webhook
        .deletion_job()
        .run(
            &code,
            std::time::Instant::now() + std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, webhook::deletion::JobOutcome::Complete { .. }),
        "{outcome:?}"
    );
    let (events, answers) = stored_of(&h, &account).await;
    assert!(
        events.is_empty(),
        "events of the account are left: {events:?}"
    );
    assert_eq!(answers, 0, "the proxy's stored answer is left");
    assert_eq!(open_status_page(&h, &url).await["status"], "complete");
}

#[tokio::test]
async fn a_connection_deleted_longer_ago_than_the_retention_is_not_looked_for() {
    let h = Harness::new().await;
    let connected = h.connect("instagram", "user-1").await.location();
    let account = param(&connected, "account_id").unwrap();
    let delete =
        ApiRequest::new("DELETE", &format!("/connections/instagram/{account}")).user("user-1");
    assert_eq!(h.call_connections(delete).await.status(), 204);

    // EVENT_RETENTION_DAYS is 14: every event of it has expired by now, and
    // so has the link, even where DynamoDB's TTL has not removed it yet.
    h.clock
        .advance(time::Duration::days(14) + time::Duration::minutes(1));
    let answer = request_deletion(&h).await;
    assert_eq!(answer["status"], "complete");
    assert!(h.events("data_deletion.requested").await.is_empty());
}
