//! `/admin/endpoints...`: who may call, create, list, read, change,
//! delete, rotate the secret, and the attempts.

use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use shared::outbound::attempt::{Attempt, AttemptError};
use shared::outbound::endpoint::{DisabledReason, MAX_ENDPOINTS, ROTATION_OVERLAP};
use shared::time::Duration;

use super::memory::Memory;
use super::{call, create, event, handler, logs, opened, request, stored, ADMIN_ARN, NOW, URL};

#[tokio::test]
async fn a_request_without_an_iam_identity_is_refused() {
    let store = Memory::default();
    let h = handler(&store);
    let body = json!({"url": URL});
    for (method, path) in [("POST", "/admin/endpoints"), ("GET", "/admin/endpoints")] {
        let (status, answer) = call(&h, event(method, path, None, &body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(answer["error"], "forbidden");
    }
    assert!(store.tables().endpoints.is_empty());
    let signed = event("GET", "/admin/endpoints", Some(ADMIN_ARN), &Value::Null);
    assert_eq!(call(&h, signed).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_created_endpoint_shows_its_secret_once_and_stores_it_sealed() {
    let store = Memory::default();
    let h = handler(&store);
    let body = json!({"url": URL, "kinds": ["messages", "connection.*"], "description": "main"});
    let (status, answer) = call(&h, request("POST", "/admin/endpoints", body)).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = answer["id"].as_str().unwrap();
    assert!(id.starts_with("ep_"));
    assert_eq!(answer["url"], URL);
    assert_eq!(answer["kinds"], json!(["messages", "connection.*"]));
    assert_eq!(
        (answer["accounts"].clone(), answer["status"].clone()),
        (Value::Null, json!("enabled"))
    );
    assert_eq!(answer["created_at"], "2026-11-21T12:00:00Z");
    let secret = answer["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let e = store.tables().endpoint(id).expect("stored");
    assert_eq!((e.url.as_str(), e.description.as_str()), (URL, "main"));
    assert_eq!((e.created_at, e.disabled), (NOW, None));
    assert_eq!(opened(&h, &e, &e.secret).await, secret);
    assert!(!String::from_utf8_lossy(&e.secret.ciphertext).contains(&secret));
    for path in [
        "/admin/endpoints".to_string(),
        format!("/admin/endpoints/{id}"),
    ] {
        let (status, body) = call(&h, request("GET", &path, Value::Null)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!body.to_string().contains("secret"), "{body}");
    }
    assert!(logs().contains(id), "the creation is logged");
    assert!(!logs().contains(&secret), "no secret in a log line");
}

#[tokio::test]
async fn a_refused_body_is_named_and_stores_nothing() {
    let store = Memory::default();
    let h = handler(&store);
    for (body, code) in [
        (
            json!({"url": "http://backend.example.com/hook"}),
            "invalid_url",
        ),
        (json!({"url": "https://10.0.0.1/hook"}), "invalid_url"),
        (json!({"description": "no url"}), "invalid_url"),
        (json!({"url": URL, "kinds": ["*"]}), "invalid_kinds"),
        (json!({"url": URL, "accounts": []}), "invalid_accounts"),
        (
            json!({"url": URL, "description": "x".repeat(501)}),
            "invalid_description",
        ),
        (json!({"url": URL, "status": "paused"}), "invalid_status"),
        (json!("not an object"), "invalid_json"),
    ] {
        let (status, answer) = call(&h, request("POST", "/admin/endpoints", body.clone())).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
    }
    assert!(store.tables().endpoints.is_empty());
}

#[tokio::test]
async fn the_twenty_first_endpoint_is_refused() {
    let store = Memory::default();
    store.tables().endpoints = (0..MAX_ENDPOINTS)
        .map(|i| stored(&format!("ep_{i}"), 1))
        .collect();
    let h = handler(&store);
    let (status, answer) = call(&h, request("POST", "/admin/endpoints", json!({"url": URL}))).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::CONFLICT, Some("too_many_endpoints"))
    );
    assert_eq!(store.tables().endpoints.len(), MAX_ENDPOINTS as usize);
    let (status, _) = call(&h, request("DELETE", "/admin/endpoints/ep_3", Value::Null)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    create(&h, json!({"url": URL})).await;
}

#[tokio::test]
async fn the_list_is_oldest_first() {
    let store = Memory::default();
    store.tables().endpoints = vec![stored("ep_b", 1), stored("ep_c", 3), stored("ep_a", 2)];
    let h = handler(&store);
    let (status, answer) = call(&h, request("GET", "/admin/endpoints", Value::Null)).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = (answer["endpoints"].as_array().unwrap().iter())
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ep_c", "ep_a", "ep_b"]);
    assert_eq!(answer["endpoints"][0]["created_at"], "2026-11-18T12:00:00Z");
}

#[tokio::test]
async fn an_unknown_endpoint_is_not_found_on_every_route() {
    let store = Memory::default();
    store.tables().endpoints = vec![stored("ep_known", 1)];
    let h = handler(&store);
    for (method, path, body) in [
        ("GET", "/admin/endpoints/ep_nope", Value::Null),
        (
            "PATCH",
            "/admin/endpoints/ep_nope",
            json!({"description": "x"}),
        ),
        ("DELETE", "/admin/endpoints/ep_nope", Value::Null),
        (
            "POST",
            "/admin/endpoints/ep_nope/rotate-secret",
            Value::Null,
        ),
        ("GET", "/admin/endpoints/ep_nope/attempts", Value::Null),
    ] {
        let (status, answer) = call(&h, request(method, path, body)).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{method} {path}"
        );
    }
    assert_eq!(store.tables().endpoints, vec![stored("ep_known", 1)]);
}

#[tokio::test]
async fn a_patch_changes_the_settings_and_never_the_secrets() {
    let store = Memory::default();
    let h = handler(&store);
    let (id, secret) = create(&h, json!({"url": URL, "kinds": ["messages"]})).await;
    let path = format!("/admin/endpoints/{id}");
    let body = json!({"url": "https://other.example.com/h", "kinds": null,
        "accounts": ["1784"], "description": "new", "status": "disabled"});
    let (status, answer) = call(&h, request("PATCH", &path, body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["url"], "https://other.example.com/h");
    assert_eq!(
        (answer["kinds"].clone(), answer["accounts"].clone()),
        (Value::Null, json!(["1784"]))
    );
    assert_eq!(
        (
            answer["status"].as_str(),
            answer["disabled_reason"].as_str()
        ),
        (Some("disabled"), Some("manual"))
    );
    assert!(answer.get("secret").is_none());
    let e = store.tables().endpoint(&id).unwrap();
    assert_eq!(
        (e.description.as_str(), e.disabled),
        ("new", Some(DisabledReason::Manual))
    );
    assert_eq!(opened(&h, &e, &e.secret).await, secret);
    let (status, answer) = call(&h, request("PATCH", &path, json!({"url": "ftp://x"}))).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_url"))
    );
    assert_eq!(
        store.tables().endpoint(&id).unwrap(),
        e,
        "a refused patch changes nothing"
    );
}

#[tokio::test]
async fn re_enabling_clears_the_reason_and_the_failure_streak() {
    let store = Memory::default();
    let mut failing = stored("ep_f", 10);
    failing.disabled = Some(DisabledReason::Failing);
    failing.failing_since = Some(NOW - Duration::days(6));
    failing.slow_since = Some(NOW - Duration::days(6));
    store.tables().endpoints = vec![failing, stored("ep_ok", 10)];
    let h = handler(&store);
    let on = json!({"status": "enabled"});
    let (status, answer) = call(&h, request("PATCH", "/admin/endpoints/ep_f", on.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (answer["status"].as_str(), answer["disabled_reason"].clone()),
        (Some("enabled"), Value::Null)
    );
    assert_eq!(answer["updated_at"], "2026-11-21T12:00:00Z");
    let e = store.tables().endpoint("ep_f").unwrap();
    assert_eq!(
        (e.disabled, e.failing_since, e.slow_since, e.updated_at),
        (None, None, None, NOW)
    );
    // An enabled endpoint's health is its own: enabling it again keeps it.
    let mut slow = stored("ep_ok", 10);
    slow.slow_since = Some(NOW - Duration::hours(1));
    store.tables().endpoints[1] = slow.clone();
    call(&h, request("PATCH", "/admin/endpoints/ep_ok", on)).await;
    assert_eq!(
        store.tables().endpoint("ep_ok").unwrap().slow_since,
        slow.slow_since
    );
}

#[tokio::test]
async fn a_deleted_endpoint_is_gone() {
    let store = Memory::default();
    store.tables().endpoints = vec![stored("ep_a", 2), stored("ep_b", 1)];
    let h = handler(&store);
    let (status, answer) = call(&h, request("DELETE", "/admin/endpoints/ep_a", Value::Null)).await;
    assert_eq!((status, answer), (StatusCode::NO_CONTENT, Value::Null));
    let ids: Vec<String> = store
        .tables()
        .endpoints
        .iter()
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(ids, ["ep_b"]);
    let (status, _) = call(&h, request("GET", "/admin/endpoints/ep_a", Value::Null)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&h, request("DELETE", "/admin/endpoints/ep_a", Value::Null)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_rotation_answers_a_new_secret_and_keeps_the_old_for_24_hours() {
    let store = Memory::default();
    let h = handler(&store);
    let (id, first) = create(&h, json!({"url": URL})).await;
    let path = format!("/admin/endpoints/{id}/rotate-secret");
    let (status, answer) = call(&h, request("POST", &path, Value::Null)).await;
    assert_eq!(status, StatusCode::OK);
    let second = answer["secret"].as_str().unwrap().to_string();
    assert!(second.starts_with("whsec_") && second != first);
    let e = store.tables().endpoint(&id).unwrap();
    assert_eq!(opened(&h, &e, &e.secret).await, second);
    let (previous, until) = e.previous_secret.clone().expect("the old secret is kept");
    assert_eq!(opened(&h, &e, &previous).await, first);
    assert_eq!((until, e.updated_at), (NOW + ROTATION_OVERLAP, NOW));
    assert_eq!(e.signing_secrets(NOW + Duration::hours(23)).len(), 2);
    assert_eq!(e.signing_secrets(NOW + Duration::hours(24)).len(), 1);
    // A second rotation keeps the second secret, not the first.
    let (_, answer) = call(&h, request("POST", &path, Value::Null)).await;
    let e = store.tables().endpoint(&id).unwrap();
    assert_eq!(
        opened(&h, &e, &e.secret).await,
        answer["secret"].as_str().unwrap()
    );
    let previous = e.previous_secret.clone().unwrap().0;
    assert_eq!(opened(&h, &e, &previous).await, second);
    let (_, view) = call(
        &h,
        request("GET", &format!("/admin/endpoints/{id}"), Value::Null),
    )
    .await;
    assert!(!view.to_string().contains(&second) && view.get("secret").is_none());
    assert!(
        !logs().contains(&first) && !logs().contains(&second),
        "no secret in a log line"
    );
}

fn attempt(
    endpoint: &str,
    event: &str,
    n: u32,
    hours_ago: i64,
    error: Option<AttemptError>,
) -> Attempt {
    Attempt {
        endpoint_id: endpoint.into(),
        event_id: event.into(),
        attempt: n,
        at: NOW - Duration::hours(hours_ago),
        error,
        status: Some(if error.is_some() { 500 } else { 200 }),
        latency_ms: 12,
        next_attempt_at: error.map(|_| NOW + Duration::minutes(5)),
    }
}

/// `(event_id, attempt)` of each listed attempt, and the next cursor.
async fn attempts(h: &super::Handler, query: &str) -> (Vec<(String, u64)>, Value) {
    let path = format!("/admin/endpoints/ep_a/attempts{query}");
    let (status, answer) = call(h, request("GET", &path, Value::Null)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let listed = (answer["attempts"].as_array().unwrap().iter())
        .map(|a| {
            (
                a["event_id"].as_str().unwrap().to_string(),
                a["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    (listed, answer["next_cursor"].clone())
}

#[tokio::test]
async fn attempts_are_listed_newest_first_a_page_at_a_time() {
    let store = Memory::default();
    store.tables().endpoints = vec![stored("ep_a", 2), stored("ep_b", 2)];
    store.tables().attempts = vec![
        attempt("ep_a", "e1", 1, 3, Some(AttemptError::HttpStatus)),
        attempt("ep_a", "e2", 1, 1, Some(AttemptError::Timeout)),
        attempt("ep_b", "e3", 1, 0, None),
        attempt("ep_a", "e1", 2, 2, None),
    ];
    let h = handler(&store);
    let ids = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(e, n)| (e.to_string(), *n))
            .collect::<Vec<_>>()
    };
    let (all, next) = attempts(&h, "").await;
    assert_eq!(
        (all, next),
        (ids(&[("e2", 1), ("e1", 2), ("e1", 1)]), Value::Null)
    );
    let (first, next) = attempts(&h, "?limit=2").await;
    assert_eq!(first, ids(&[("e2", 1), ("e1", 2)]));
    let cursor = next.as_str().expect("a next page");
    let (rest, next) = attempts(&h, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!((rest, next), (ids(&[("e1", 1)]), Value::Null));
    assert_eq!(
        attempts(&h, "?outcome=failed").await.0,
        ids(&[("e2", 1), ("e1", 1)])
    );
    assert_eq!(
        attempts(&h, "?event_id=e1&outcome=delivered").await.0,
        ids(&[("e1", 2)])
    );
    let path = "/admin/endpoints/ep_a/attempts?event_id=e2";
    let (_, answer) = call(&h, request("GET", path, Value::Null)).await;
    assert_eq!(
        answer["attempts"][0],
        json!({"event_id": "e2", "attempt": 1, "at": "2026-11-21T11:00:00.000Z",
            "outcome": "failed", "status": 500, "error": "timeout", "latency_ms": 12,
            "next_attempt_at": "2026-11-21T12:05:00Z"})
    );
}

#[tokio::test]
async fn a_bad_attempts_query_is_named() {
    let store = Memory::default();
    store.tables().endpoints = vec![stored("ep_a", 2)];
    let h = handler(&store);
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=101", "invalid_limit"),
        ("outcome=ok", "invalid_outcome"),
        ("cursor=!!", "invalid_cursor"),
    ] {
        let path = format!("/admin/endpoints/ep_a/attempts?{query}");
        let (status, answer) = call(&h, request("GET", &path, Value::Null)).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{query}"
        );
    }
}

#[tokio::test]
async fn a_store_outage_is_a_server_error_and_changes_nothing() {
    let store = Memory::default();
    store.tables().endpoints = vec![stored("ep_a", 2)];
    let h = handler(&store);
    store.set_down(true);
    for (method, path, body) in [
        ("POST", "/admin/endpoints", json!({"url": URL})),
        ("GET", "/admin/endpoints", Value::Null),
        ("GET", "/admin/endpoints/ep_a", Value::Null),
        (
            "PATCH",
            "/admin/endpoints/ep_a",
            json!({"description": "x"}),
        ),
        ("DELETE", "/admin/endpoints/ep_a", Value::Null),
        ("POST", "/admin/endpoints/ep_a/rotate-secret", Value::Null),
        ("GET", "/admin/endpoints/ep_a/attempts", Value::Null),
    ] {
        let (status, answer) = call(&h, request(method, path, body)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{method} {path}");
        assert_eq!(answer["error"], "server_error");
    }
    store.set_down(false);
    assert_eq!(store.tables().endpoints, vec![stored("ep_a", 2)]);
}
