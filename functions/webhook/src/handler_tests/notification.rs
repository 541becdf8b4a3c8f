//! `GET /webhook` and `POST /webhook`.

use serde_json::json;
use shared::event_kind::EventKind;
use shared::webhook::signature_header;

use super::*;

const ACCOUNT: &str = "17841400000000001";

/// A notification of two messages to [`ACCOUNT`].
fn notification() -> String {
    json!({
        "object": "instagram",
        "entry": [{
            "id": ACCOUNT,
            "time": 1_795_255_200,
            "messaging": [
                {"sender": {"id": "1"}, "recipient": {"id": ACCOUNT}, "timestamp": 1_795_255_200_000_i64,
                 "message": {"mid": "m-1", "text": "hello"}},
                {"sender": {"id": "1"}, "recipient": {"id": ACCOUNT}, "timestamp": 1_795_255_201_000_i64,
                 "message": {"mid": "m-2", "text": "again"}}
            ]
        }]
    })
    .to_string()
}

fn signed(body: &str, secret: &str) -> Request {
    let signature = signature_header(secret.as_bytes(), body.as_bytes());
    let headers = json!({"content-type": "application/json", "x-hub-signature-256": signature});
    request("POST", "/webhook", headers, body)
}

#[tokio::test]
async fn the_subscription_check_echoes_the_challenge_only_for_the_verify_token() {
    let secrets = SecretsCache::in_memory(secrets_json(IG_SECRET));
    let h = handler(Memory::default(), &secrets);
    let check = |token: &str| {
        let q =
            format!("/webhook?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=ch4ll3nge");
        request("GET", &q, json!({}), "")
    };
    assert_eq!(
        call(&h, check(VERIFY_TOKEN)).await,
        (StatusCode::OK, json!("ch4ll3nge"))
    );
    assert_eq!(call(&h, check("guess")).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn each_update_is_stored_once_for_its_owner_and_a_retry_adds_nothing() {
    let store = memory::with(vec![conn("ada", ACCOUNT, "m-ada", 3)]);
    let secrets = SecretsCache::in_memory(secrets_json(IG_SECRET));
    let h = handler(store.clone(), &secrets);
    let body = notification();

    let got = call(&h, signed(&body, IG_SECRET)).await;
    assert_eq!(got, (StatusCode::OK, json!({"received": 2})));
    // Meta retries a delivery it timed out on: the same items, stored once.
    let again = call(&h, signed(&body, IG_SECRET)).await;
    assert_eq!(again, (StatusCode::OK, json!({"received": 2})));

    let tables = store.tables();
    assert_eq!(tables.events.len(), 2, "one event per update, once");
    for e in &tables.events {
        assert_eq!(e.kind, EventKind::Webhook("messages".into()));
        assert_eq!(e.user_id.as_deref(), Some("ada"));
        assert_eq!(
            (e.provider, e.account_id.as_str()),
            (Some(Provider::Instagram), ACCOUNT)
        );
        assert_eq!(e.received_at, NOW);
        assert!(e.payload.contains("\"mid\""), "the item as Meta sent it");
    }
    let texts: Vec<bool> = ["hello", "again"]
        .iter()
        .map(|t| tables.events.iter().any(|e| e.payload.contains(t)))
        .collect();
    assert_eq!(texts, [true, true]);
}

#[tokio::test]
async fn an_account_nobody_connected_is_stored_without_an_owner() {
    let store = Memory::default();
    let secrets = SecretsCache::in_memory(secrets_json(IG_SECRET));
    let h = handler(store.clone(), &secrets);
    let got = call(&h, signed(&notification(), IG_SECRET)).await;
    assert_eq!(got.0, StatusCode::OK);
    let tables = store.tables();
    assert_eq!(tables.events.len(), 2);
    assert!(tables
        .events
        .iter()
        .all(|e| e.user_id.is_none() && e.account_id == ACCOUNT));
}

#[tokio::test]
async fn refused_notifications_store_nothing() {
    let store = memory::with(vec![conn("ada", ACCOUNT, "m-ada", 3)]);
    let secrets = SecretsCache::in_memory(secrets_json(IG_SECRET));
    let h = handler(store.clone(), &secrets);
    let body = notification();
    let unsigned = request("POST", "/webhook", json!({}), &body);
    let not_meta = r#"{"hello":"world"}"#;
    let huge = format!(
        "{{\"object\":\"instagram\",\"pad\":\"{}\"}}",
        "x".repeat(3 << 20)
    );
    for (req, status, error) in [
        (
            signed(&body, "forged"),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (unsigned, StatusCode::UNAUTHORIZED, "invalid_signature"),
        (
            signed(not_meta, IG_SECRET),
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
        (
            signed(&huge, IG_SECRET),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ] {
        let (got, body) = call(&h, req).await;
        assert_eq!((got, body["error"].as_str()), (status, Some(error)));
    }
    assert!(store.tables().events.is_empty());
}

#[tokio::test]
async fn a_notification_signed_with_the_facebook_app_secret_is_taken() {
    let store = Memory::default();
    let secrets = SecretsCache::in_memory(secrets_json(IG_SECRET));
    let h = handler(store.clone(), &secrets);
    let got = call(&h, signed(&notification(), FB_SECRET)).await;
    assert_eq!(got, (StatusCode::OK, json!({"received": 2})));
}

#[tokio::test]
async fn a_rotated_app_secret_is_read_again_on_the_first_mismatch() {
    let store = Memory::default();
    let secrets = SecretsCache::in_memory(secrets_json(IG_SECRET));
    let h = handler(store.clone(), &secrets);
    // Read once, then rotated: the cache still holds the old secret.
    assert_eq!(
        call(&h, signed(&notification(), IG_SECRET)).await.0,
        StatusCode::OK
    );
    secrets.rotate_in_memory(secrets_json("rotated-secret"));
    let got = call(&h, signed(&notification(), "rotated-secret")).await;
    assert_eq!(got, (StatusCode::OK, json!({"received": 2})));
    // The old secret no longer signs.
    let old = call(&h, signed(&notification(), IG_SECRET)).await;
    assert_eq!(old.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn nothing_is_acknowledged_that_was_not_stored() {
    let store = memory::with(vec![conn("ada", ACCOUNT, "m-ada", 3)]);
    store.set_down(true);
    let secrets = SecretsCache::in_memory(secrets_json(IG_SECRET));
    let h = handler(store.clone(), &secrets);
    let got = call(&h, signed(&notification(), IG_SECRET)).await;
    assert_eq!(
        got,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "unavailable", "message": "Try again."})
        )
    );
    // Meta retries once the table is back: everything is stored then.
    store.set_down(false);
    assert_eq!(
        call(&h, signed(&notification(), IG_SECRET)).await.0,
        StatusCode::OK
    );
    assert_eq!(store.tables().events.len(), 2);
}

#[tokio::test]
async fn unreadable_app_secrets_answer_503_so_meta_retries() {
    let store = Memory::default();
    let secrets = SecretsCache::in_memory("not json");
    let h = handler(store.clone(), &secrets);
    let got = call(&h, signed(&notification(), IG_SECRET)).await;
    assert_eq!(got.0, StatusCode::SERVICE_UNAVAILABLE);
    assert!(store.tables().events.is_empty());
}
