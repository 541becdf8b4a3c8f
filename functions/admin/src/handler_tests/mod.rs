//! The admin routes without a server: the store and the delivery queue in
//! memory ([`memory::Memory`]), the key service in memory
//! (`shared::vault::fake::FakeDataKeys`), a fixed clock. Each test calls
//! `Admin::handle` with the API Gateway event a signed request becomes, and
//! checks the answer and what was stored. The counter under concurrent
//! creates, races and KMS stay in the integration tests
//! (`tests/tests/outbound.rs`).

mod endpoints;
mod memory;
mod replays;

use std::io::Write;
use std::sync::{Mutex, Once};

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request};
use serde_json::{json, Map, Value};
use shared::outbound::config::OutboundConfig;
use shared::outbound::endpoint::{Endpoint, EndpointSecretOwner};
use shared::time::{Duration, OffsetDateTime};
use shared::vault::fake::FakeDataKeys;
use shared::vault::SealedToken;
use shared::Clock;
use time::macros::datetime;

use crate::{Admin, AdminConfig};
use memory::Memory;

/// The instant every test's clock shows.
const NOW: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);
const ADMIN_ARN: &str = "arn:aws:iam::123456789012:role/backend-admin";

type Handler = Admin<FakeDataKeys, Memory>;

const URL: &str = "https://backend.example.com/hook";

/// An endpoint stored `days_ago` days before [`NOW`].
fn stored(id: &str, days_ago: i64) -> Endpoint {
    let at = NOW - Duration::days(days_ago);
    let sealed = SealedToken {
        version: 1,
        key_id: "key".into(),
        wrapped_key: vec![1; 8],
        nonce: vec![2; 12],
        ciphertext: id.as_bytes().to_vec(),
    };
    Endpoint {
        id: id.into(),
        url: URL.into(),
        kinds: None,
        accounts: None,
        description: String::new(),
        disabled: None,
        created_at: at,
        updated_at: at,
        failing_since: None,
        slow_since: None,
        secret: sealed,
        previous_secret: None,
    }
}

fn config() -> AdminConfig {
    AdminConfig {
        outbound: OutboundConfig {
            endpoints_table: "endpoints".into(),
            endpoint_key_id: "endpoint-key".into(),
            allow_loopback: false,
        },
        events_table: "events".into(),
        event_retention: time::Duration::days(14),
        queue_url: "https://sqs.example.com/deliveries".into(),
    }
}

fn handler(store: &Memory) -> Handler {
    logs_captured();
    Admin::with_store(
        config(),
        store.clone(),
        FakeDataKeys::default(),
        Clock::fixed(NOW),
    )
}

/// The API Gateway (HTTP API, v2) event of a request; `caller`: the IAM ARN
/// API Gateway found (`None`: unsigned).
fn event(method: &str, path_and_query: &str, caller: Option<&str>, body: &Value) -> Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let params: Map<String, Value> = (query.split('&'))
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let authorizer = caller.map(|arn| {
        json!({"iam": {"accessKey": "AKIAEXAMPLE", "accountId": "123456789012",
            "callerId": "AIDAEXAMPLE", "userArn": arn, "userId": "AIDAEXAMPLE"}})
    });
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "queryStringParameters": if params.is_empty() { Value::Null } else { Value::Object(params) },
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "1", "apiId": "unit", "domainName": "api.example.com",
            "domainPrefix": "api", "requestId": "r", "routeKey": "$default",
            "stage": "$default", "time": "21/Nov/2026:12:00:00 +0000", "timeEpoch": 0,
            "authorizer": authorizer,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "backend"}
        },
        "body": if body.is_null() { Value::Null } else { json!(body.to_string()) },
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
}

/// A signed request.
fn request(method: &str, path_and_query: &str, body: Value) -> Request {
    event(method, path_and_query, Some(ADMIN_ARN), &body)
}

/// The status and body of the handler's answer (JSON, the text as a JSON
/// string, or `null` when empty).
async fn call(h: &Handler, req: Request) -> (StatusCode, Value) {
    let resp = h.handle(req).await;
    let text = match resp.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        Body::Empty => return (resp.status(), Value::Null),
        _ => String::new(),
    };
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (resp.status(), body)
}

/// An endpoint created through the route: its id and secret.
async fn create(h: &Handler, body: Value) -> (String, String) {
    let (status, answer) = call(h, request("POST", "/admin/endpoints", body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let text = |k: &str| answer[k].as_str().unwrap().to_string();
    (text("id"), text("secret"))
}

/// The stored secret opened with the handler's key service.
async fn opened(h: &Handler, e: &Endpoint, sealed: &shared::vault::SealedToken) -> String {
    use secrecy::ExposeSecret;
    let secret = h.vault.open(sealed, &EndpointSecretOwner(&e.id)).await;
    secret.expect("it opens").expose_secret().to_string()
}

/// Every log line of every test so far (the handler's JSON lines, at
/// `info` whatever `RUST_LOG` says).
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogSink;

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs_captured() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::new("info");
        shared::logging::install_filtered(|| LogSink, false, filter)
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}
