//! Meta's webhooks, deauthorize and data-deletion callbacks, through API
//! Gateway events against moto.

use infra::apigw::{ApiRequest, ResponseExt};
use integration_tests::*;
use serde_json::{json, Value};
use shared::webhook::{make_signed_request, signature_header};

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
            "/webhook?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={token}"
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
            .call_webhook(ApiRequest::get(&format!("/webhook?{q}")))
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
        .call_webhook(Harness::signed_notification(&body, &ig_secret(&h)))
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    let other = delivery(IG_ACCOUNT, vec![message(IG_ACCOUNT, "m_3", "again")]);
    let resp = h
        .call_webhook(Harness::signed_notification(&other, &fb_secret(&h)))
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
    h.stack.meta.set_facebook_person(FbPerson {
        id: "10160000000000009".into(),
        name: "Ada".into(),
        pages: vec![FbPage {
            id: "110000000000001".into(),
            name: "Acme".into(),
            instagram: Some(("17841400000000021".into(), "acme".into())),
        }],
    });
    assert_eq!(
        param(&h.connect("facebook", "user-7").await.location(), "status").as_deref(),
        Some("connected")
    );

    let comments = json!({"object": "instagram", "entry": [{"id": "17841400000000021", "time": 1795260000u64, "changes": [
        {"field": "comments", "value": {"id": "17990000000000001", "text": "love it", "from": {"id": "55", "username": "fan"}, "media": {"id": "1801"}}},
        {"field": "mentions", "value": {"media_id": "1802", "comment_id": "17990000000000002"}}
    ]}]}).to_string();
    let resp = h
        .call_webhook(Harness::signed_notification(
            comments.as_bytes(),
            &fb_secret(&h),
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let page = json!({"object": "page", "entry": [{"id": "110000000000001", "time": 1795260000000u64, "messaging": [
        {"sender": {"id": "77"}, "recipient": {"id": "110000000000001"}, "timestamp": 1795260000001u64, "postback": {"title": "Start", "payload": "START"}}
    ]}]}).to_string();
    let resp = h
        .call_webhook(Harness::signed_notification(
            page.as_bytes(),
            &fb_secret(&h),
        ))
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
        .call_webhook(Harness::signed_notification(&body, &ig_secret(&h)))
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
        ApiRequest::post("/webhook")
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
    for (name, req) in cases {
        let resp = h.call_webhook(req).await;
        assert_eq!(resp.status(), 401, "{name}");
        assert_eq!(resp.body_json()["error"], "invalid_signature", "{name}");
    }
    assert!(h.scan("EVENTS_TABLE").await.is_empty());

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
    let mut req = Harness::signed_notification(&body, &ig_secret(&h));
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
    let resp = h
        .call_webhook(Harness::signed_notification(&big, &ig_secret(&h)))
        .await;
    assert_eq!(resp.status(), 413);

    for body in [
        &b"not json"[..],
        br#"{"object":"instagram"}"#,
        br#"{"object":"instagram","entry":[{"messaging":[]}]}"#,
    ] {
        let resp = h
            .call_webhook(Harness::signed_notification(body, &ig_secret(&h)))
            .await;
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
            .call_webhook(Harness::signed_notification(&body, &ig_secret(&h)))
            .await;
        assert_eq!(resp.status(), 200);
    }
    let events = webhook_events(&h).await;
    assert_eq!(events.len(), 3);
    // Repeats reach the store as conditional writes, never as overwrites.
    let first_received: Vec<String> = events.iter().map(|e| s(e, "received_at")).collect();
    h.clock.advance(time::Duration::minutes(5));
    h.call_webhook(Harness::signed_notification(&body, &ig_secret(&h)))
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
async fn a_thousand_items_in_one_delivery() {
    let h = Harness::new().await;
    let items: Vec<Value> = (0..1000)
        .map(|i| message(IG_ACCOUNT, &format!("m_{i:04}"), "bulk"))
        .collect();
    let body = delivery(IG_ACCOUNT, items);
    let resp = h
        .call_webhook(Harness::signed_notification(&body, &ig_secret(&h)))
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
    let resp = broken
        .handle(Harness::signed_notification(&body, &ig_secret(&h)).into_request())
        .await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    h.stack.env.insert("EVENTS_TABLE".into(), real);
    assert!(h.scan("EVENTS_TABLE").await.is_empty());

    // Meta retries; the store is back.
    h.webhook = h.stack.webhook(h.clock.clone());
    let resp = h
        .call_webhook(Harness::signed_notification(&body, &ig_secret(&h)))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(webhook_events(&h).await.len(), 2);
}

#[tokio::test]
async fn a_rotated_secret_works_without_a_deploy() {
    let h = Harness::new().await;
    let body = delivery(IG_ACCOUNT, vec![message(IG_ACCOUNT, "m_1", "a")]);
    // Warm the cache with the old secret.
    assert_eq!(
        h.call_webhook(Harness::signed_notification(&body, &ig_secret(&h)))
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
        .call_webhook(Harness::signed_notification(&body, "rotated-secret"))
        .await;
    assert_eq!(resp.status(), 200, "re-read once on a mismatch");
    // The old secret is gone now.
    let body = delivery(IG_ACCOUNT, vec![message(IG_ACCOUNT, "m_3", "c")]);
    let resp = h
        .call_webhook(Harness::signed_notification(&body, &ig_secret(&h)))
        .await;
    assert_eq!(resp.status(), 401);
}

fn form(signed_request: &str) -> ApiRequest {
    ApiRequest::post("/meta/deauthorize")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "signed_request={}",
            url::form_urlencoded::byte_serialize(signed_request.as_bytes()).collect::<String>()
        ))
}

#[tokio::test]
async fn deauthorize_revokes_and_deletes_tokens() {
    let h = Harness::new().await;
    assert_eq!(
        param(&h.connect("instagram", "user-1").await.location(), "status").as_deref(),
        Some("connected")
    );
    let meta_user = "26000000000000001"; // the app-scoped id the exchange gave
    let secret = ig_secret(&h);

    // Tampered, wrong algorithm, wrong key: 400, nothing changes.
    let good = make_signed_request(
        secret.as_bytes(),
        &json!({"algorithm": "HMAC-SHA256", "issued_at": 1795260000, "user_id": meta_user}),
    );
    let (sig, _) = good.split_once('.').unwrap();
    let forged_payload =
        base64_url(&json!({"algorithm": "HMAC-SHA256", "user_id": "someone-else"}).to_string());
    for bad in [
        format!("{sig}.{forged_payload}"),
        make_signed_request(
            secret.as_bytes(),
            &json!({"algorithm": "HMAC-SHA1", "user_id": meta_user}),
        ),
        make_signed_request(
            b"wrong",
            &json!({"algorithm": "HMAC-SHA256", "user_id": meta_user}),
        ),
        String::new(),
    ] {
        let resp = h.call_webhook(form(&bad)).await;
        assert_eq!(resp.status(), 400);
    }
    assert_eq!(s(&h.connections_of("user-1").await[0], "status"), "active");

    let resp = h.call_webhook(form(&good)).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    let conn = &h.connections_of("user-1").await[0];
    assert_eq!(s(conn, "status"), "revoked");
    assert!(!conn.contains_key("token"), "the token is deleted");
    assert!(!conn.contains_key("due_bucket"), "nothing left to refresh");
    assert_eq!(h.events("connection.revoked").await.len(), 1);
    // Meta may call again: no second event.
    assert_eq!(h.call_webhook(form(&good)).await.status(), 200);
    assert_eq!(h.events("connection.revoked").await.len(), 1);
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
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
        h.call_webhook(Harness::signed_notification(&body, &ig_secret(&h)))
            .await
            .status(),
        200
    );
    let other = delivery(
        "17841499999999999",
        vec![message("17841499999999999", "m_9", "not theirs")],
    );
    assert_eq!(
        h.call_webhook(Harness::signed_notification(&other, &ig_secret(&h)))
            .await
            .status(),
        200
    );

    let wrong_key = make_signed_request(
        b"wrong",
        &json!({"algorithm": "HMAC-SHA256", "user_id": "26000000000000001"}),
    );
    let wrong_algorithm = make_signed_request(
        ig_secret(&h).as_bytes(),
        &json!({"algorithm": "HMAC-SHA1", "user_id": "26000000000000001"}),
    );
    let good_sig = make_signed_request(
        ig_secret(&h).as_bytes(),
        &json!({"algorithm": "HMAC-SHA256", "user_id": "26000000000000001"}),
    );
    let tampered = format!(
        "{}.{}",
        good_sig.split_once('.').unwrap().0,
        base64_url(r#"{"algorithm":"HMAC-SHA256","user_id":"999"}"#)
    );
    for bad in [wrong_key, wrong_algorithm, tampered] {
        let mut req = form(&bad);
        req.path = "/meta/data-deletion".into();
        assert_eq!(h.call_webhook(req).await.status(), 400);
    }
    assert_eq!(
        webhook_events(&h).await.len(),
        3,
        "nothing deleted for a bad request"
    );

    let good = make_signed_request(
        ig_secret(&h).as_bytes(),
        &json!({"algorithm": "HMAC-SHA256", "user_id": "26000000000000001"}),
    );
    let mut req = form(&good);
    req.path = "/meta/data-deletion".into();
    let resp = h.call_webhook(req).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    let answer = resp.body_json();
    let code = answer["confirmation_code"].as_str().unwrap().to_string();
    assert!(code.len() >= 16 && code.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        answer["url"],
        format!("https://api.example.com/meta/data-deletion/{code}")
    );

    let conn = &h.connections_of("user-1").await[0];
    assert!(!conn.contains_key("token"));
    let left = webhook_events(&h).await;
    assert_eq!(left.len(), 1, "only the other account's event is left");
    assert_eq!(s(&left[0], "account_id"), "17841499999999999");
    assert_eq!(h.events("data_deletion.requested").await.len(), 1);

    let status = h
        .call_webhook(ApiRequest::get(&format!("/meta/data-deletion/{code}")))
        .await;
    assert_eq!(status.status(), 200);
    assert_eq!(status.body_json()["status"], "completed");
    let unknown = h
        .call_webhook(ApiRequest::get("/meta/data-deletion/NOPE123"))
        .await;
    assert_eq!(unknown.status(), 404);
    let weird = h
        .call_webhook(ApiRequest::get("/meta/data-deletion/..%2F"))
        .await;
    assert_eq!(weird.status(), 404);
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
        let resp = h.call_webhook(form(signed_request)).await;
        assert_eq!(resp.status(), 400, "{signed_request}");
        let body = resp.body_json();
        assert_eq!(body["error"], "invalid_signed_request");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(says), "{signed_request}: {message}");
    }
}
