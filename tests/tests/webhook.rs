//! Meta's webhooks, deauthorize and data-deletion callbacks, through API
//! Gateway events against moto.

use infra::apigw::{ApiRequest, ResponseExt};
use integration_tests::*;
use serde_json::{json, Value};
use shared::webhook::{make_signed_request, signature_header};
use shared::FromEnv;

const IG_ACCOUNT: &str = "17841400000000001";

fn ig_secret(h: &Harness) -> String {
    h.stack.meta.apps().instagram_app_secret
}

fn fb_secret(h: &Harness) -> String {
    h.stack.meta.apps().facebook_app_secret
}

fn message(account: &str, mid: &str, text: &str) -> Value {
    json!({"sender": {"id": "9001"}, "recipient": {"id": account}, "timestamp": 1795260000123u64,
           "message": {"mid": mid, "text": text}})
}

/// `POST /webhook` under the Meta path prefix, signed as Meta signs it.
fn notification(h: &Harness, body: &[u8], secret: &str) -> ApiRequest {
    let mut req = Harness::signed_notification(body, secret);
    req.path = h.stack.meta_path("/webhook");
    req
}

fn delivery(account: &str, items: Vec<Value>) -> Vec<u8> {
    json!({"object": "instagram", "entry": [{"id": account, "time": 1795260000456u64, "messaging": items}]})
        .to_string()
        .into_bytes()
}

async fn webhook_events(
    h: &Harness,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    h.scan("EVENTS_TABLE")
        .await
        .into_iter()
        .filter(|e| {
            !s(e, "kind").starts_with("connection.") && !s(e, "kind").starts_with("data_deletion")
        })
        .collect()
}

#[tokio::test]
async fn subscription_check() {
    let h = Harness::new().await;
    let token = format!(
        "{}-verify",
        h.stack.var("STATES_TABLE").split('-').next().unwrap()
    );
    let ok = h
        .call_webhook(ApiRequest::get(&format!(
            "{}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={token}",
            h.stack.meta_path("/webhook")
        )))
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.body_text(), "1158201444");
    assert!(ok
        .header_str("content-type")
        .unwrap()
        .starts_with("text/plain"));
    for q in [
        format!("hub.mode=subscribe&hub.challenge=1&hub.verify_token={token}x"),
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=".to_string(),
        "hub.mode=subscribe&hub.challenge=1".to_string(),
        format!("hub.mode=unsubscribe&hub.challenge=1&hub.verify_token={token}"),
    ] {
        let resp = h
            .call_webhook(ApiRequest::get(&format!(
                "{}?{q}",
                h.stack.meta_path("/webhook")
            )))
            .await;
        assert_eq!(resp.status(), 403, "{q}");
        assert_ne!(resp.body_text(), "1");
    }
}

#[tokio::test]
async fn signed_messages_become_events_with_their_owner() {
    let h = Harness::new().await;
    assert_eq!(
        param(&h.connect("instagram", "user-1").await.location(), "status").as_deref(),
        Some("connected")
    );
    let body = delivery(
        IG_ACCOUNT,
        vec![
            message(IG_ACCOUNT, "m_1", "hi"),
            message(IG_ACCOUNT, "m_2", "there"),
        ],
    );
    // Signed with the Instagram app secret, and (another delivery) with the Facebook one.
    let resp = h
        .call_webhook(notification(&h, &body, &ig_secret(&h)))
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    let other = delivery(IG_ACCOUNT, vec![message(IG_ACCOUNT, "m_3", "again")]);
    let resp = h
        .call_webhook(notification(&h, &other, &fb_secret(&h)))
        .await;
    assert_eq!(resp.status(), 200);

    let mut events = webhook_events(&h).await;
    events.sort_by_key(|e| s(e, "event_id"));
    assert_eq!(events.len(), 3);
    let e = &events[0];
    assert_eq!(s(e, "event_id"), "instagram:17841400000000001:messages:m_1");
    assert_eq!(s(e, "kind"), "messages");
    assert_eq!(s(e, "provider"), "instagram");
    assert_eq!(s(e, "account_id"), IG_ACCOUNT);
    assert_eq!(s(e, "user_id"), "user-1");
    assert_eq!(s(e, "occurred_at"), "2026-11-21T11:20:00.123Z");
    assert_eq!(s(e, "received_at"), "2026-11-21T12:00:00.000Z");
    assert!(e.contains_key("expires_at"));
    let payload: Value = serde_json::from_str(&s(e, "payload")).unwrap();
    assert_eq!(payload, message(IG_ACCOUNT, "m_1", "hi"));

    // Webhook and lifecycle events write their times in one form.
    let all = h.scan("EVENTS_TABLE").await;
    assert!(all.iter().any(|e| s(e, "kind") == "connection.connected"));
    for e in &all {
        for key in ["occurred_at", "received_at"] {
            let t = s(e, key);
            assert!(is_rfc3339_utc_millis(&t), "{} {key} = {t:?}", s(e, "kind"));
        }
    }
    h.assert_no_secret_leaked().await;
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the one form of every event's times.
fn is_rfc3339_utc_millis(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
}

#[tokio::test]
async fn comments_and_page_payloads_are_routed() {
    let h = Harness::new().await;
    // A Facebook-Login connection: Page p1 linked to account ...21.
    h.connect_facebook_as(
        "user-7",
        FbPerson::new(
            "10160000000000009",
            "Ada",
            vec![FbPage::linked(
                "110000000000001",
                "Acme",
                "17841400000000021",
                "acme",
            )],
        ),
    )
    .await;

    let comments = json!({"object": "instagram", "entry": [{"id": "17841400000000021", "time": 1795260000u64, "changes": [
        {"field": "comments", "value": {"id": "17990000000000001", "text": "love it", "from": {"id": "55", "username": "fan"}, "media": {"id": "1801"}}},
        {"field": "mentions", "value": {"media_id": "1802", "comment_id": "17990000000000002"}}
    ]}]}).to_string();
    let resp = h
        .call_webhook(notification(&h, comments.as_bytes(), &fb_secret(&h)))
        .await;
    assert_eq!(resp.status(), 200);
    let page = json!({"object": "page", "entry": [{"id": "110000000000001", "time": 1795260000000u64, "messaging": [
        {"sender": {"id": "77"}, "recipient": {"id": "110000000000001"}, "timestamp": 1795260000001u64, "postback": {"title": "Start", "payload": "START"}}
    ]}]}).to_string();
    let resp = h
        .call_webhook(notification(&h, page.as_bytes(), &fb_secret(&h)))
        .await;
    assert_eq!(resp.status(), 200);

    let events = webhook_events(&h).await;
    assert_eq!(events.len(), 3);
    let comment = events.iter().find(|e| s(e, "kind") == "comments").unwrap();
    assert_eq!(
        s(comment, "event_id"),
        "instagram:17841400000000021:comments:17990000000000001"
    );
    assert_eq!(s(comment, "user_id"), "user-7");
    assert_eq!(s(comment, "provider"), "facebook");
    assert_eq!(s(comment, "occurred_at"), "2026-11-21T11:20:00.000Z");
    assert!(events.iter().any(|e| s(e, "kind") == "mentions"));
    let postback = events
        .iter()
        .find(|e| s(e, "kind") == "messaging_postbacks")
        .unwrap();
    assert_eq!(
        s(postback, "account_id"),
        "17841400000000021",
        "a Page entry is routed to its Instagram account"
    );
    assert_eq!(s(postback, "user_id"), "user-7");
    assert_eq!(s(postback, "provider"), "facebook");
}

#[tokio::test]
async fn events_of_unknown_accounts_are_kept_without_a_user() {
    let h = Harness::new().await;
    let body = delivery(
        "17841499999999999",
        vec![message("17841499999999999", "m_x", "who?")],
    );
    let resp = h
        .call_webhook(notification(&h, &body, &ig_secret(&h)))
        .await;
    assert_eq!(resp.status(), 200);
    let events = webhook_events(&h).await;
    assert_eq!(events.len(), 1);
    assert_eq!(s(&events[0], "account_id"), "17841499999999999");
    assert!(!events[0].contains_key("user_id"));
}

#[tokio::test]
async fn bad_signatures_are_refused_and_nothing_is_stored() {
    let h = Harness::new().await;
    // Meta escapes non-ASCII; a re-serialisation would not.
    let body = br#"{"object":"instagram","entry":[{"id":"17841400000000001","time":1795260000456,"messaging":[{"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1795260000123,"message":{"mid":"m_u","text":"gr\u00fc\u00dfe"}}]}]}"#;
    let good = signature_header(ig_secret(&h).as_bytes(), body);
    let hex = good.strip_prefix("sha256=").unwrap().to_string();
    let reserialized: Value = serde_json::from_slice(body).unwrap();
    let reserialized_sig = signature_header(
        ig_secret(&h).as_bytes(),
        reserialized.to_string().as_bytes(),
    );
    assert_ne!(
        reserialized_sig, good,
        "the re-serialised body differs from Meta's bytes"
    );
    let post = || {
        ApiRequest::post(&h.stack.meta_path("/webhook"))
            .header("content-type", "application/json")
            .body(body.to_vec())
    };
    let cases: Vec<(&str, ApiRequest)> = vec![
        ("missing", post()),
        ("empty", post().header("x-hub-signature-256", "sha256=")),
        (
            "sha1 only",
            post().header("x-hub-signature", &format!("sha1={}", &hex[..40])),
        ),
        (
            "sha1 in the sha256 header",
            post().header("x-hub-signature-256", &format!("sha1={}", &hex[..40])),
        ),
        (
            "uppercase",
            post().header(
                "x-hub-signature-256",
                &format!("sha256={}", hex.to_uppercase()),
            ),
        ),
        (
            "short",
            post().header("x-hub-signature-256", &format!("sha256={}", &hex[..63])),
        ),
        (
            "long",
            post().header("x-hub-signature-256", &format!("sha256={hex}00")),
        ),
        (
            "two headers",
            post()
                .header("x-hub-signature-256", &good)
                .header("x-hub-signature-256", &good),
        ),
        (
            "wrong secret",
            post().header(
                "x-hub-signature-256",
                &signature_header(b"not-the-secret", body),
            ),
        ),
        (
            "re-serialised body",
            post().header("x-hub-signature-256", &reserialized_sig),
        ),
    ];
    // What CloudWatch would count (WebhookBadSignaturesAlarm watches it).
    let metrics = shared::metrics::Capture::start();
    let refused = cases.len() as f64;
    for (name, req) in cases {
        let resp = h.call_webhook(req).await;
        assert_eq!(resp.status(), 401, "{name}");
        assert_eq!(resp.body_json()["error"], "invalid_signature", "{name}");
    }
    assert!(h.scan("EVENTS_TABLE").await.is_empty());
    assert_eq!(metrics.total("webhook", "BadSignature"), refused);

    // The exact bytes, signed: accepted, and stored as sent (escapes kept).
    let resp = h
        .call_webhook(post().header("x-hub-signature-256", &good))
        .await;
    assert_eq!(resp.status(), 200);
    let events = webhook_events(&h).await;
    assert_eq!(events.len(), 1);
    assert!(s(&events[0], "payload").contains(r"gr\u00fc\u00dfe"));
    assert!(!logs().contains(&hex), "signatures are never logged");
}

#[tokio::test]
async fn base64_bodies_are_verified_after_decoding() {
    let h = Harness::new().await;
    let body = delivery(IG_ACCOUNT, vec![message(IG_ACCOUNT, "m_b64", "binary-ish")]);
    let mut req = notification(&h, &body, &ig_secret(&h));
    req.headers.retain(|(k, _)| k != "content-type");
    req.base64 = true;
    assert_eq!(req.event()["isBase64Encoded"], json!(true));
    let resp = h.call_webhook(req).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    assert_eq!(webhook_events(&h).await.len(), 1);
}

#[tokio::test]
async fn oversized_and_malformed_bodies() {
    let h = Harness::new().await;
    let mut big = delivery(
        IG_ACCOUNT,
        vec![message(IG_ACCOUNT, "m", &"x".repeat(2 * 1024 * 1024))],
    );
    big.truncate(2 * 1024 * 1024 + 10);
    let resp = h.call_webhook(notification(&h, &big, &ig_secret(&h))).await;
    assert_eq!(resp.status(), 413);

    for body in [
        &b"not json"[..],
        br#"{"object":"instagram"}"#,
        br#"{"object":"instagram","entry":[{"messaging":[]}]}"#,
    ] {
        let resp = h.call_webhook(notification(&h, body, &ig_secret(&h))).await;
        assert_eq!(resp.status(), 400, "{}", String::from_utf8_lossy(body));
    }
    assert!(h.scan("EVENTS_TABLE").await.is_empty());
}

#[tokio::test]
async fn a_delivery_repeated_three_times_stores_each_item_once() {
    let h = Harness::new().await;
    let items = vec![
        message(IG_ACCOUNT, "m_1", "one"),
        json!({"sender": {"id": "9"}, "recipient": {"id": IG_ACCOUNT}, "timestamp": 1795260000200u64, "reaction": {"mid": "m_1", "action": "react", "reaction": "love"}}),
        json!({"sender": {"id": "9"}, "recipient": {"id": IG_ACCOUNT}, "timestamp": 1795260000300u64, "read": {"mid": "m_1"}}),
    ];
    let body = delivery(IG_ACCOUNT, items);
    for _ in 0..3 {
        let resp = h
            .call_webhook(notification(&h, &body, &ig_secret(&h)))
            .await;
        assert_eq!(resp.status(), 200);
    }
    let events = webhook_events(&h).await;
    assert_eq!(events.len(), 3);
    // Repeats reach the store as conditional writes, never as overwrites.
    let first_received: Vec<String> = events.iter().map(|e| s(e, "received_at")).collect();
    h.clock.advance(time::Duration::minutes(5));
    h.call_webhook(notification(&h, &body, &ig_secret(&h)))
        .await;
    let again: Vec<String> = webhook_events(&h)
        .await
        .iter()
        .map(|e| s(e, "received_at"))
        .collect();
    let (mut a, mut b) = (first_received, again);
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[tokio::test]
async fn unsend_edit_and_reaction_are_events_of_their_own() {
    let h = Harness::new().await;
    let at = |ms: u64, rest: Value| {
        let mut item = json!({"sender": {"id": "9001"}, "recipient": {"id": IG_ACCOUNT}, "timestamp": 1795260000000u64 + ms});
        item.as_object_mut()
            .unwrap()
            .extend(rest.as_object().unwrap().clone());
        item
    };
    let items = vec![
        at(1, json!({"message": {"mid": "m_1", "text": "hi"}})),
        at(
            2,
            json!({"reaction": {"mid": "m_1", "action": "react", "reaction": "love", "emoji": "\u{2764}"}}),
        ),
        at(
            3,
            json!({"message_edit": {"mid": "m_1", "text": "hi!", "num_edit": 1}}),
        ),
        at(4, json!({"message": {"mid": "m_1", "is_deleted": true}})),
    ];
    // Each arrives on its own, then all four again in one delivery (Meta's retry).
    for item in &items {
        let body = delivery(IG_ACCOUNT, vec![item.clone()]);
        let resp = h
            .call_webhook(notification(&h, &body, &ig_secret(&h)))
            .await;
        assert_eq!(resp.status(), 200);
    }
    let body = delivery(IG_ACCOUNT, items.clone());
    let resp = h
        .call_webhook(notification(&h, &body, &ig_secret(&h)))
        .await;
    assert_eq!(resp.status(), 200);

    let mut events = webhook_events(&h).await;
    events.sort_by_key(|e| s(e, "occurred_at"));
    assert_eq!(events.len(), 4, "four notifications, each stored once");
    let kinds: Vec<String> = events.iter().map(|e| s(e, "kind")).collect();
    assert_eq!(
        kinds,
        ["messages", "message_reactions", "message_edit", "messages"]
    );
    let unsent: Value = serde_json::from_str(&s(&events[3], "payload")).unwrap();
    assert_eq!(unsent["message"]["is_deleted"], true, "the unsend is kept");
    assert_eq!(
        s(&events[0], "event_id"),
        "instagram:17841400000000001:messages:m_1",
        "a message keeps the id it was always stored under"
    );
}

#[tokio::test]
async fn a_thousand_items_in_one_delivery() {
    let h = Harness::new().await;
    let items: Vec<Value> = (0..1000)
        .map(|i| message(IG_ACCOUNT, &format!("m_{i:04}"), "bulk"))
        .collect();
    let body = delivery(IG_ACCOUNT, items);
    let resp = h
        .call_webhook(notification(&h, &body, &ig_secret(&h)))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body_json()["received"], 1000);
    assert_eq!(webhook_events(&h).await.len(), 1000);
}

#[tokio::test]
async fn a_store_failure_is_a_5xx_and_the_retry_is_stored() {
    let mut h = Harness::new().await;
    let body = delivery(
        IG_ACCOUNT,
        vec![
            message(IG_ACCOUNT, "m_1", "a"),
            message(IG_ACCOUNT, "m_2", "b"),
        ],
    );
    // The events table is unavailable (here: absent) for this delivery.
    let real = h
        .stack
        .env
        .insert("EVENTS_TABLE".into(), "no-such-table".into())
        .unwrap();
    let broken = h.stack.webhook(h.clock.clone());
    // What CloudWatch would count (WebhookRetriedAlarm watches `Retried`).
    let metrics = shared::metrics::Capture::start();
    let resp = broken
        .handle(notification(&h, &body, &ig_secret(&h)).into_request())
        .await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    h.stack.env.insert("EVENTS_TABLE".into(), real);
    assert!(h.scan("EVENTS_TABLE").await.is_empty());
    assert_eq!(metrics.total("webhook", "Retried"), 1.0);
    assert_eq!(metrics.total("webhook", "StoreFailed"), 1.0);
    assert_eq!(metrics.total("webhook", "NewEvents"), 0.0);

    // Meta retries; the store is back.
    h.webhook = h.stack.webhook(h.clock.clone());
    let resp = h
        .call_webhook(notification(&h, &body, &ig_secret(&h)))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(webhook_events(&h).await.len(), 2);
    assert_eq!(metrics.total("webhook", "NewEvents"), 2.0);
    assert_eq!(
        metrics.total("webhook", "Retried"),
        1.0,
        "the retry is not counted as one"
    );
}

#[tokio::test]
async fn a_rotated_secret_works_without_a_deploy() {
    let h = Harness::new().await;
    let body = delivery(IG_ACCOUNT, vec![message(IG_ACCOUNT, "m_1", "a")]);
    // Warm the cache with the old secret.
    assert_eq!(
        h.call_webhook(notification(&h, &body, &ig_secret(&h)))
            .await
            .status(),
        200
    );
    let sm = aws_sdk_secretsmanager::Client::new(&h.stack.aws);
    sm.put_secret_value()
        .secret_id(h.stack.var("META_SECRET_ID"))
        .secret_string(json!({"facebook_app_secret": "", "instagram_app_secret": "rotated-secret", "webhook_verify_token": "v"}).to_string())
        .send()
        .await
        .unwrap();
    let body = delivery(IG_ACCOUNT, vec![message(IG_ACCOUNT, "m_2", "b")]);
    let resp = h
        .call_webhook(notification(&h, &body, "rotated-secret"))
        .await;
    assert_eq!(resp.status(), 200, "re-read once on a mismatch");
    // The old secret is gone now.
    let body = delivery(IG_ACCOUNT, vec![message(IG_ACCOUNT, "m_3", "c")]);
    let resp = h
        .call_webhook(notification(&h, &body, &ig_secret(&h)))
        .await;
    assert_eq!(resp.status(), 401);
}

/// A Meta callback (`/meta/deauthorize`, `/meta/data-deletion`) as Meta
/// posts it: under the prefix, a form with the `signed_request`.
fn callback(h: &Harness, path: &str, signed_request: &str) -> ApiRequest {
    ApiRequest::post(&h.stack.meta_path(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "signed_request={}",
            url::form_urlencoded::byte_serialize(signed_request.as_bytes()).collect::<String>()
        ))
}

fn form(h: &Harness, signed_request: &str) -> ApiRequest {
    callback(h, "/meta/deauthorize", signed_request)
}

/// The app-scoped id the emulated Meta's exchange gives.
const META_USER: &str = "26000000000000001";

/// A `signed_request` for the person, issued `at` (the test clock's time).
fn signed(h: &Harness, at: time::OffsetDateTime) -> String {
    make_signed_request(
        ig_secret(h).as_bytes(),
        &json!({"algorithm": "HMAC-SHA256", "issued_at": at.unix_timestamp(), "user_id": META_USER}),
    )
}

#[tokio::test]
async fn deauthorize_revokes_and_deletes_tokens() {
    let h = Harness::new().await;
    assert_eq!(
        param(&h.connect("instagram", "user-1").await.location(), "status").as_deref(),
        Some("connected")
    );
    let secret = ig_secret(&h);

    // Tampered, wrong algorithm, wrong key: 400, nothing changes.
    h.clock.advance(time::Duration::minutes(1));
    let good = signed(&h, h.clock.now());
    let (sig, _) = good.split_once('.').unwrap();
    let forged_payload =
        base64_url(&json!({"algorithm": "HMAC-SHA256", "user_id": "someone-else"}).to_string());
    for bad in [
        format!("{sig}.{forged_payload}"),
        make_signed_request(
            secret.as_bytes(),
            &json!({"algorithm": "HMAC-SHA1", "user_id": META_USER}),
        ),
        make_signed_request(
            b"wrong",
            &json!({"algorithm": "HMAC-SHA256", "user_id": META_USER}),
        ),
        String::new(),
    ] {
        let resp = h.call_webhook(form(&h, &bad)).await;
        assert_eq!(resp.status(), 400);
    }
    assert_eq!(s(&h.connections_of("user-1").await[0], "status"), "active");

    let resp = h.call_webhook(form(&h, &good)).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    let conn = &h.connections_of("user-1").await[0];
    assert_eq!(s(conn, "status"), "revoked");
    assert!(!conn.contains_key("token"), "the token is deleted");
    assert!(!conn.contains_key("due_bucket"), "nothing left to refresh");
    assert_eq!(h.events("connection.revoked").await.len(), 1);
    // Meta may call again: no second event.
    assert_eq!(h.call_webhook(form(&h, &good)).await.status(), 200);
    assert_eq!(h.events("connection.revoked").await.len(), 1);
}

#[tokio::test]
async fn a_late_or_replayed_deauthorize_never_undoes_a_newer_grant() {
    let h = Harness::new().await;
    let before_connecting = signed(&h, h.clock.now() - time::Duration::hours(1));
    h.connect("instagram", "user-1").await;

    // Issued an hour before the person connected: arrives late, changes nothing.
    let resp = h.call_webhook(form(&h, &before_connecting)).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    assert_eq!(resp.body_json()["revoked"], 0);
    let conn = &h.connections_of("user-1").await[0];
    assert_eq!(s(conn, "status"), "active");
    assert!(conn.contains_key("token"));

    // A real one: revoked. Then the person connects again...
    h.clock.advance(time::Duration::minutes(10));
    let real = signed(&h, h.clock.now());
    assert_eq!(
        h.call_webhook(form(&h, &real)).await.body_json()["revoked"],
        1
    );
    assert_eq!(s(&h.connections_of("user-1").await[0], "status"), "revoked");
    h.clock.advance(time::Duration::hours(2));
    h.connect("instagram", "user-1").await;
    assert_eq!(s(&h.connections_of("user-1").await[0], "status"), "active");

    // ...and that deauthorize is delivered again (Meta's retry, or a replay).
    let resp = h.call_webhook(form(&h, &real)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body_json()["revoked"], 0);
    let conn = &h.connections_of("user-1").await[0];
    assert_eq!(s(conn, "status"), "active", "the newer grant is kept");
    assert!(conn.contains_key("token"));
    assert_eq!(h.events("connection.revoked").await.len(), 1);

    // The same for a late data-deletion request: this grant is not touched.
    let resp = h
        .call_webhook(callback(&h, "/meta/data-deletion", &before_connecting))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body_json()["status"], "complete", "nothing to delete");
    let conn = &h.connections_of("user-1").await[0];
    assert_eq!(s(conn, "status"), "active");
    assert!(conn.contains_key("token"));
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// `POST /meta/data-deletion` with `signed_request`.
async fn request_deletion(h: &Harness, signed_request: &str) -> Value {
    let resp = h
        .call_webhook(callback(h, "/meta/data-deletion", signed_request))
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    resp.body_json()
}

/// What `GET <url>` (the status URL Meta was given) says.
async fn deletion_status(h: &Harness, url: &str) -> Value {
    let path = url::Url::parse(url).unwrap().path().to_string();
    let resp = h.call_webhook(ApiRequest::get(&path)).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    resp.body_json()
}

#[tokio::test]
async fn data_deletion_deletes_tokens_and_events_and_reports_status() {
    let h = Harness::new().await;
    assert_eq!(
        param(&h.connect("instagram", "user-1").await.location(), "status").as_deref(),
        Some("connected")
    );
    let body = delivery(
        IG_ACCOUNT,
        vec![
            message(IG_ACCOUNT, "m_1", "a"),
            message(IG_ACCOUNT, "m_2", "b"),
        ],
    );
    assert_eq!(
        h.call_webhook(notification(&h, &body, &ig_secret(&h)))
            .await
            .status(),
        200
    );
    let other = delivery(
        "17841499999999999",
        vec![message("17841499999999999", "m_9", "not theirs")],
    );
    assert_eq!(
        h.call_webhook(notification(&h, &other, &ig_secret(&h)))
            .await
            .status(),
        200
    );

    let wrong_key = make_signed_request(
        b"wrong",
        &json!({"algorithm": "HMAC-SHA256", "user_id": META_USER}),
    );
    let wrong_algorithm = make_signed_request(
        ig_secret(&h).as_bytes(),
        &json!({"algorithm": "HMAC-SHA1", "user_id": META_USER}),
    );
    let good_sig = make_signed_request(
        ig_secret(&h).as_bytes(),
        &json!({"algorithm": "HMAC-SHA256", "user_id": META_USER}),
    );
    let tampered = format!(
        "{}.{}",
        good_sig.split_once('.').unwrap().0,
        base64_url(r#"{"algorithm":"HMAC-SHA256","user_id":"999"}"#)
    );
    for bad in [wrong_key, wrong_algorithm, tampered] {
        let req = callback(&h, "/meta/data-deletion", &bad);
        assert_eq!(h.call_webhook(req).await.status(), 400);
    }
    assert_eq!(
        webhook_events(&h).await.len(),
        3,
        "nothing deleted for a bad request"
    );

    h.clock.advance(time::Duration::minutes(1));
    let answer = request_deletion(&h, &signed(&h, h.clock.now())).await;
    let code = answer["confirmation_code"].as_str().unwrap().to_string();
    assert!(code.len() >= 16 && code.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        answer["url"],
        format!("https://api.example.com/meta/data-deletion/{code}"),
        "the status URL is on the public API, never under the Meta path prefix"
    );
    // At once: the token is gone, the product is told, the rest is pending.
    let conn = &h.connections_of("user-1").await[0];
    assert!(!conn.contains_key("token"));
    assert_eq!(h.events("data_deletion.requested").await.len(), 1);
    let url = answer["url"].as_str().unwrap();
    assert_eq!(deletion_status(&h, url).await["status"], "pending");

    // The job (the data-deletion function) finishes it.
    let outcome = h
        .webhook
        .deletion_job()
        .run(&code, &shared::continuation::Deadline::distant())
        .await
        .unwrap();
    assert!(
        matches!(outcome, webhook::deletion::JobOutcome::Complete { .. }),
        "{outcome:?}"
    );
    let left = webhook_events(&h).await;
    assert_eq!(left.len(), 1, "only the other account's event is left");
    assert_eq!(s(&left[0], "account_id"), "17841499999999999");
    assert_eq!(h.events("data_deletion.requested").await.len(), 1);

    let status = deletion_status(&h, url).await;
    assert_eq!(status["status"], "complete");
    assert_eq!(status["confirmation_code"], code.as_str());
    assert!(!status.to_string().contains(IG_ACCOUNT), "no personal data");
    let unknown = h
        .call_webhook(ApiRequest::get("/meta/data-deletion/NOPE123"))
        .await;
    assert_eq!(unknown.status(), 404);
    let weird = h
        .call_webhook(ApiRequest::get("/meta/data-deletion/..%2F"))
        .await;
    assert_eq!(weird.status(), 404);
}

/// Deletion records in the connections table.
async fn deletion_records(
    h: &Harness,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    h.scan("CONNECTIONS_TABLE")
        .await
        .into_iter()
        .filter(|i| s(i, "pk").starts_with("DELETION#"))
        .collect()
}

#[tokio::test]
async fn replayed_data_deletion_requests_never_pile_up_records() {
    let h = Harness::new().await;
    h.connect("instagram", "user-1").await;
    h.clock.advance(time::Duration::minutes(1));
    let request = signed(&h, h.clock.now());
    let first = request_deletion(&h, &request).await;
    // The same request again and again: the same code, one record.
    for _ in 0..5 {
        h.clock.advance(time::Duration::minutes(1));
        let again = request_deletion(&h, &request).await;
        assert_eq!(again["confirmation_code"], first["confirmation_code"]);
        assert_eq!(again["url"], first["url"]);
    }
    assert_eq!(deletion_records(&h).await.len(), 1);

    // Fifty distinct requests of one person: a bounded number of records.
    let mut codes = std::collections::BTreeSet::new();
    for _ in 0..50 {
        h.clock.advance(time::Duration::minutes(1));
        let answer = request_deletion(&h, &signed(&h, h.clock.now())).await;
        codes.insert(answer["confirmation_code"].as_str().unwrap().to_string());
    }
    let records = deletion_records(&h).await;
    assert_eq!(
        records.len(),
        shared::store::DELETIONS_PER_PERSON as usize,
        "capped per person"
    );
    assert_eq!(codes.len() + 1, records.len());
    // Every record (and the person's counter) expires.
    let in_90_days = (h.clock.now() + time::Duration::days(90)).unix_timestamp();
    for item in h
        .scan("CONNECTIONS_TABLE")
        .await
        .iter()
        .filter(|i| s(i, "pk").starts_with("DELETION"))
    {
        let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
        assert!(expires <= in_90_days && expires > h.clock.now().unix_timestamp());
    }
}

/// A DynamoDB client whose `BatchWriteItem` calls fail after the first `ok`.
#[derive(Debug)]
struct FailBatchWritesAfter {
    ok: usize,
    seen: std::sync::atomic::AtomicUsize,
}

impl aws_sdk_dynamodb::config::Intercept for FailBatchWritesAfter {
    fn name(&self) -> &'static str {
        "FailBatchWritesAfter"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<
            '_,
        >,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let is_batch = context
            .input()
            .downcast_ref::<aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput>()
            .is_some();
        if is_batch && self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= self.ok {
            return Err("the table is unavailable (injected)".into());
        }
        Ok(())
    }
}

/// Stores `n` message events of `account` straight into the events table.
async fn store_events(h: &Harness, account: &str, n: usize) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let now = h.clock.now();
    let items: Vec<WriteRequest> = (0..n)
        .map(|i| {
            let mid = format!("m_{i:05}");
            let event = shared::store::Event {
                event_id: format!("instagram:{account}:messages:{mid}"),
                kind: shared::event_kind::EventKind::Webhook("messages".into()),
                provider: Some(shared::Provider::Instagram),
                account_id: account.into(),
                user_id: Some("user-1".into()),
                occurred_at: now,
                received_at: now,
                payload: message(account, &mid, "bulk").to_string(),
                expires_at: now + time::Duration::days(14),
            };
            let mut item = std::collections::HashMap::new();
            for (k, v) in [
                ("event_id", event.event_id),
                ("kind", event.kind.to_string()),
                ("account_id", event.account_id),
                ("payload", event.payload),
            ] {
                item.insert(k.to_string(), aws_sdk_dynamodb::types::AttributeValue::S(v));
            }
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        })
        .collect();
    let table = h.stack.var("EVENTS_TABLE").to_string();
    let mut writes = tokio::task::JoinSet::new();
    for chunk in items.chunks(25) {
        let (client, table, chunk) = (h.stack.dynamodb.clone(), table.clone(), chunk.to_vec());
        writes.spawn(async move {
            let out = client
                .batch_write_item()
                .request_items(table, chunk)
                .send()
                .await
                .unwrap();
            assert!(out.unprocessed_items.unwrap_or_default().is_empty());
        });
        if writes.len() >= 16 {
            writes.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(w) = writes.join_next().await {
        w.unwrap();
    }
}

#[tokio::test]
async fn data_deletion_of_5000_events_finishes_after_a_failure_midway() {
    let h = Harness::new().await;
    h.connect("instagram", "user-1").await;
    store_events(&h, IG_ACCOUNT, 5000).await;
    store_events(&h, "17841499999999999", 30).await;
    assert_eq!(webhook_events(&h).await.len(), 5030);

    h.clock.advance(time::Duration::minutes(1));
    let answer = request_deletion(&h, &signed(&h, h.clock.now())).await;
    let (code, url) = (
        answer["confirmation_code"].as_str().unwrap().to_string(),
        answer["url"].as_str().unwrap().to_string(),
    );
    assert_eq!(answer["status"], "pending", "Meta is answered at once");
    assert_eq!(deletion_status(&h, &url).await["status"], "pending");

    // The first run fails midway: DynamoDB stops taking writes after 60 batches.
    let failing = aws_sdk_dynamodb::Client::from_conf(
        h.stack
            .dynamodb
            .config()
            .to_builder()
            .interceptor(FailBatchWritesAfter {
                ok: 60,
                seen: Default::default(),
            })
            .build(),
    );
    let config = webhook::deletion::DeletionConfig::from_env(h.stack.env_reader()).unwrap();
    let broken = webhook::deletion::DeletionJob::new(&config, failing, h.clock.clone());
    let deadline = &shared::continuation::Deadline::distant();
    assert!(
        broken.run(&code, deadline).await.is_err(),
        "Lambda retries it"
    );
    let left = webhook_events(&h).await.len();
    assert!(left < 5030 && left > 30, "some deleted, some left: {left}");
    assert_eq!(deletion_status(&h, &url).await["status"], "pending");

    // Lambda's retry resumes and finishes.
    let outcome = h.webhook.deletion_job().run(&code, deadline).await.unwrap();
    assert!(
        matches!(outcome, webhook::deletion::JobOutcome::Complete { .. }),
        "{outcome:?}"
    );
    let left = webhook_events(&h).await;
    assert_eq!(
        left.len(),
        30,
        "every event of the account is gone, no one else's"
    );
    assert!(left
        .iter()
        .all(|e| s(e, "account_id") == "17841499999999999"));
    assert_eq!(h.events("data_deletion.requested").await.len(), 1);
    let status = deletion_status(&h, &url).await;
    assert_eq!(status["status"], "complete");
    // Running it again (a duplicate invocation) changes nothing.
    let again = h.webhook.deletion_job().run(&code, deadline).await.unwrap();
    assert_eq!(again, outcome);
}

#[tokio::test]
async fn a_job_out_of_time_stops_and_the_next_run_continues() {
    let h = Harness::new().await;
    h.connect("instagram", "user-1").await;
    store_events(&h, IG_ACCOUNT, 1200).await;
    h.clock.advance(time::Duration::minutes(1));
    let answer = request_deletion(&h, &signed(&h, h.clock.now())).await;
    let code = answer["confirmation_code"].as_str().unwrap();
    let job = h.webhook.deletion_job();
    // No time left at all: nothing done, nothing lost.
    // The deadline says stop before the first page.
    let stop = shared::continuation::Deadline::after_starts(0);
    let outcome = job.run(code, &stop).await.unwrap();
    assert!(
        matches!(outcome, webhook::deletion::JobOutcome::Unfinished { .. }),
        "{outcome:?}"
    );
    assert_eq!(webhook_events(&h).await.len(), 1200);
    let outcome = job
        .run(code, &shared::continuation::Deadline::distant())
        .await
        .unwrap();
    // The account's 1200 messages and its two lifecycle events.
    assert!(
        matches!(
            outcome,
            webhook::deletion::JobOutcome::Complete {
                events_deleted: 1202
            }
        ),
        "{outcome:?}"
    );
    assert!(webhook_events(&h).await.is_empty());
}

#[tokio::test]
async fn a_bad_signed_request_is_told_what_is_wrong_with_it() {
    let h = Harness::new().await;
    let wrong_key = make_signed_request(
        b"not-the-app-secret",
        &json!({"algorithm": "HMAC-SHA256", "user_id": "1"}),
    );
    for (signed_request, says) in [
        ("abc.def", "signature is not a base64url HMAC-SHA256"),
        ("no-dot-here", "is not <signature>.<payload>"),
        (wrong_key.as_str(), "signature does not match"),
    ] {
        let resp = h.call_webhook(form(&h, signed_request)).await;
        assert_eq!(resp.status(), 400, "{signed_request}");
        let body = resp.body_json();
        assert_eq!(body["error"], "invalid_signed_request");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(says), "{signed_request}: {message}");
    }
}
