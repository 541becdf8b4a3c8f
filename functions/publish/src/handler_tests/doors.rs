//! Both doors give the routes' answers: the HTTP routes (the user from the
//! JWT, `Idempotent-Replayed`) and the backend's invocation
//! (`{"status", "body", "replayed"}`).

use lambda_http::{Body, Request as HttpRequest};
use serde_json::{json, Value};

use super::*;

/// The API Gateway (HTTP API, v2) event of a call by `sub` (`None`: no JWT).
fn event(
    method: &str,
    path: &str,
    sub: Option<&str>,
    key: Option<&str>,
    body: &Value,
) -> HttpRequest {
    let authorizer = sub.map(|s| json!({"jwt": {"claims": {"sub": s}, "scopes": null}}));
    let mut headers = json!({"content-type": "application/json"});
    if let Some(k) = key {
        headers["idempotency-key"] = json!(k);
    }
    let event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "1", "apiId": "unit", "domainName": "api.example.com",
            "domainPrefix": "api", "requestId": "r", "routeKey": "$default",
            "stage": "$default", "time": "21/Nov/2026:12:00:00 +0000", "timeEpoch": 0,
            "authorizer": authorizer,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "app"}
        },
        "body": if body.is_null() { Value::Null } else { json!(body.to_string()) },
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
}

/// The status, `Idempotent-Replayed` and body of the HTTP door's answer.
async fn call(h: &Handler, req: HttpRequest) -> (u16, bool, Value) {
    let resp = h.handle(req).await;
    let replayed = resp.headers().get("idempotent-replayed").is_some();
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).expect("JSON"),
        Body::Binary(b) => serde_json::from_slice(b).expect("JSON"),
        _ => Value::Null,
    };
    (resp.status().as_u16(), replayed, body)
}

#[tokio::test]
async fn the_http_door_creates_replays_and_cancels_as_the_jwts_user() {
    let store = ada_and_bob();
    let h = handler(&store);
    let posts = format!("/connections/instagram/{ACCOUNT}/posts");
    let create = || event("POST", &posts, Some("ada"), Some("k1"), &scheduled("Hello"));
    let (status, replayed, first) = call(&h, create()).await;
    assert_eq!(
        (status, replayed, &first["status"]),
        (201, false, &json!("scheduled"))
    );
    let (status, replayed, again) = call(&h, create()).await;
    assert_eq!((status, replayed, &again), (201, true, &first));
    let one = format!("{posts}/{}", first["post_id"].as_str().unwrap());
    let (status, _, _) = call(&h, event("DELETE", &one, Some("bob"), None, &Value::Null)).await;
    assert_eq!(status, 404, "not Bob's");
    let (status, _, body) = call(&h, event("DELETE", &one, Some("ada"), None, &Value::Null)).await;
    assert_eq!((status, body), (204, Value::Null));
    let (_, _, shown) = call(&h, event("GET", &one, Some("ada"), None, &Value::Null)).await;
    assert_eq!(shown["status"], "cancelled");
    let anonymous = event("POST", &posts, None, None, &scheduled("Hello"));
    assert_eq!(call(&h, anonymous).await.0, 401);
    assert_eq!(store.tables().posts.len(), 1);
}

#[tokio::test]
async fn the_invocation_door_gives_the_same_answers() {
    let store = ada_and_bob();
    let h = handler(&store);
    let payload = json!({"action": "create", "provider": "instagram", "account_id": ACCOUNT,
        "user_id": "ada", "post": for_now(), "idempotency_key": "k1"});
    let first = h.handle_invocation(payload.clone()).await;
    assert_eq!(
        (&first["status"], &first["replayed"]),
        (&json!(202), &json!(false))
    );
    assert_eq!(first["body"]["status"], "publishing");
    let again = h.handle_invocation(payload).await;
    assert_eq!(again["replayed"], true);
    assert_eq!(
        (&again["status"], &again["body"]),
        (&first["status"], &first["body"])
    );
    let listed = h
        .handle_invocation(json!({"action": "list", "provider": "instagram",
            "account_id": ACCOUNT, "user_id": "ada"}))
        .await;
    assert_eq!(listed["body"]["posts"], json!([first["body"]]));
    let bobs = h
        .handle_invocation(
            json!({"action": "get", "provider": "instagram", "account_id": ACCOUNT,
            "user_id": "bob", "post_id": first["body"]["post_id"]}),
        )
        .await;
    assert_eq!(
        (&bobs["status"], &bobs["body"]["error"]),
        (&json!(404), &json!("not_found"))
    );
}
