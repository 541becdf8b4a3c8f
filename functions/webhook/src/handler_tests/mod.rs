//! The webhook's routes without a server: the store in memory
//! ([`memory::Memory`]), the app secrets in memory, a fixed clock. Each test
//! calls `Webhook::handle` with the API Gateway event Meta's request becomes,
//! and checks the answer and what was stored. Races and DynamoDB's
//! conditions stay in the integration tests (`tests/tests/webhook.rs`).

mod memory;
mod meta_user;
mod notification;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request};
use serde_json::{json, Value};
use shared::config::StoreConfig;
use shared::connection::Connection;
use shared::secrets::SecretsCache;
use shared::store::Stored;
use shared::time::{Duration, OffsetDateTime};
use shared::{Clock, Provider};
use time::macros::datetime;

use crate::deletion::DeletionJob;
use crate::{Webhook, WebhookConfig};
use memory::Memory;

/// The instant every test's clock shows.
const NOW: OffsetDateTime = datetime!(2026-11-21 10:00 UTC);
const IG_SECRET: &str = "instagram-app-secret";
const FB_SECRET: &str = "facebook-app-secret";
const VERIFY_TOKEN: &str = "verify-me";

fn secrets_json(instagram: &str) -> String {
    json!({
        "instagram_app_secret": instagram,
        "facebook_app_secret": FB_SECRET,
        "webhook_verify_token": VERIFY_TOKEN,
    })
    .to_string()
}

fn config() -> WebhookConfig {
    WebhookConfig {
        store: StoreConfig {
            connections_table: "connections".into(),
            events_table: "events".into(),
            event_retention: std::time::Duration::from_secs(7 * 86_400),
        },
        meta_secret_id: "meta".into(),
        public_base_url: "https://api.example.com".into(),
        data_deletion_function: String::new(),
        graph_table: "graph".into(),
    }
}

/// The handler over `store`, its secrets in memory (kept by the caller for
/// rotations). Data-deletion jobs are not started (`Launch::Later`): the
/// integration tests start them.
fn handler(store: Memory, secrets: &SecretsCache) -> Webhook<Memory> {
    // The job's client is never called: nothing here starts a job.
    let nowhere = shared::aws_sdk_dynamodb::Config::builder()
        .behavior_version(shared::aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(shared::aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let clock = Clock::fixed(NOW);
    let job = DeletionJob::new(
        &config().deletion(),
        shared::aws_sdk_dynamodb::Client::from_conf(nowhere),
        clock.clone(),
    );
    Webhook::with_store(config(), store, secrets.clone(), job, clock)
}

/// An Instagram connection of `user` to `account`, granted `days_ago` days
/// before [`NOW`] by Meta user `meta_user`, with a sealed token.
fn conn(user: &str, account: &str, meta_user: &str, days_ago: i64) -> Stored {
    let granted = NOW - Duration::days(days_ago);
    let conn = Connection {
        meta_user_id: meta_user.into(),
        version: 1,
        ..Connection::new(user, Provider::Instagram, account, "name", granted)
    };
    (conn, Some(shared::testing::sealed_token()))
}

/// The API Gateway (HTTP API, v2) event of a request.
fn request(method: &str, path_and_query: &str, headers: Value, body: &str) -> Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "1", "apiId": "unit", "domainName": "api.example.com",
            "domainPrefix": "api", "requestId": "r", "routeKey": "$default",
            "stage": "$default", "time": "21/Nov/2026:10:00:00 +0000", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "facebookexternalua"}
        },
        "body": body,
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
}

/// The status and body of the handler's answer (JSON, or the text as a
/// JSON string).
async fn call(h: &Webhook<Memory>, req: Request) -> (StatusCode, Value) {
    let resp = h.handle(req).await;
    let text = match resp.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (resp.status(), body)
}
