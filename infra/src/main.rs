//! The local stack: moto (started by `scripts/local-stack`), the emulated
//! Meta, and a gateway on 127.0.0.1 that serves the API's routes the way API
//! Gateway would (payload 2.0 events, JWT claims from a verified token), plus
//! a small demo frontend to click through a connection.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{to_bytes, Body as AxumBody};
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use infra::apigw::{match_route, ApiRequest};
use infra::jwt;
use infra::stack::{Stack, StackOptions};
use rand::Rng;
use serde_json::json;
use shared::Clock;

struct App {
    authorize: authorize::Authorize,
    refresher: refresh::Refresher<shared::vault::KmsDataKeys>,
    connections_api: connections::Connections,
    webhook: webhook::Webhook,
    dynamodb: aws_sdk_dynamodb::Client,
    events_table: String,
    instagram_app_secret: String,
    callback: callback::Callback<shared::vault::KmsDataKeys>,
    jwt_key: Vec<u8>,
}

fn arg(name: &str, default: u16) -> u16 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    shared::logging::init();
    let port = arg("--port", 8080);
    let meta_port = arg("--meta-port", 8090);
    let base = format!("http://127.0.0.1:{port}");
    let stack = Stack::start(StackOptions {
        prefix: "local".into(),
        meta_port,
        public_base_url: base.clone(),
        frontend_url: format!("{base}/app/"),
        allowed_return_origins: String::new(),
        complete_redirect_uri: Some(format!("{base}/app/complete")),
    })
    .await;
    let mut jwt_key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut jwt_key);
    let app = Arc::new(App {
        authorize: stack.authorize(Clock::system()),
        refresher: stack.refresher(Clock::system()),
        connections_api: stack.connections(Clock::system()),
        webhook: stack.webhook(Clock::system()),
        dynamodb: stack.dynamodb.clone(),
        events_table: stack.var("EVENTS_TABLE").to_string(),
        instagram_app_secret: stack.meta.apps().instagram_app_secret,
        callback: stack.callback(Clock::system()),
        jwt_key,
    });
    let router = Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/app/") }))
        .route("/app/", get(|| async { Html(include_str!("demo.html")) }))
        .route(
            "/app/complete",
            get(|| async { Html(include_str!("demo.html")) }),
        )
        .route("/dev/token", get(dev_token))
        .route("/dev/send-webhook", axum::routing::post(dev_send_webhook))
        .route("/dev/events", get(dev_events))
        .route("/dev/run-refresh", axum::routing::post(dev_run_refresh))
        .fallback(gateway)
        .with_state(app);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    println!(
        "\n  Local stack ready.\n  Open {base}/app/ and connect an account.\n  \
         API: {base}  ·  emulated Meta: {}  ·  moto: {}\n  Tables: {}, {}, {}\n  Ctrl-C stops everything.\n",
        stack.meta.base_url(),
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_default(),
        stack.var("STATES_TABLE"),
        stack.var("CONNECTIONS_TABLE"),
        stack.var("EVENTS_TABLE"),
    );
    axum::serve(listener, router).await.expect("gateway serves");
}

/// Mints a JWT for a user, standing in for the product's identity provider.
async fn dev_token(
    State(app): State<Arc<App>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let sub = q.get("sub").cloned().unwrap_or_else(|| "demo-user".into());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Json(json!({"token": jwt::sign(&app.jwt_key, &sub, now, 3600)})).into_response()
}

/// Plays Meta: signs a message notification for an account with the
/// Instagram app secret and delivers it to `POST /webhook` through the gateway.
async fn dev_send_webhook(
    State(app): State<Arc<App>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let account = q.get("account_id").cloned().unwrap_or_default();
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut mid = [0u8; 8];
    rand::rng().fill_bytes(&mut mid);
    let body = json!({"object": "instagram", "entry": [{"id": account, "time": now_ms as u64, "messaging": [{
        "sender": {"id": "9001"}, "recipient": {"id": account}, "timestamp": now_ms as u64,
        "message": {"mid": format!("m_{}", hex::encode(mid)), "text": "Hello from the local stack \u{1F44B}"}}]}]})
    .to_string();
    let sig =
        shared::webhook::signature_header(app.instagram_app_secret.as_bytes(), body.as_bytes());
    let req = ApiRequest::post("/webhook")
        .header("content-type", "application/json")
        .header("x-hub-signature-256", &sig)
        .body(body.into_bytes())
        .into_request();
    let resp = app.webhook.handle(req).await;
    let status = resp.status().as_u16();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        Json(json!({"webhook_status": status})),
    )
        .into_response()
}

/// The newest events of the outbox for a user (all events when `sub` is empty).
async fn dev_events(
    State(app): State<Arc<App>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let sub = q.get("sub").cloned().unwrap_or_default();
    let out = app
        .dynamodb
        .scan()
        .table_name(&app.events_table)
        .send()
        .await;
    let Ok(out) = out else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "scan failed").into_response();
    };
    let get = |i: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
               k: &str| {
        i.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let mut events: Vec<_> = out
        .items()
        .iter()
        .filter(|i| sub.is_empty() || get(i, "user_id") == sub)
        .map(|i| json!({"kind": get(i, "kind"), "account_id": get(i, "account_id"), "user_id": get(i, "user_id"),
                         "occurred_at": get(i, "occurred_at"), "received_at": get(i, "received_at"), "payload": get(i, "payload")}))
        .collect();
    events.sort_by(|a, b| b["received_at"].as_str().cmp(&a["received_at"].as_str()));
    events.truncate(20);
    Json(json!({"events": events})).into_response()
}

async fn run_refresh(app: &App) -> Result<refresh::Summary, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    app.refresher.run(deadline).await.map_err(|e| e.to_string())
}

/// Plays EventBridge: one scheduled refresh run, now.
async fn dev_run_refresh(State(app): State<Arc<App>>) -> Response {
    match run_refresh(&app).await {
        Ok(summary) => Json(summary).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// API Gateway: match the route, run the JWT authorizer where the route has
/// one, build the payload 2.0 event and call the function's handler.
async fn gateway(State(app): State<Arc<App>>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let Some(route) = match_route(&method, &path) else {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    };
    let mut api = ApiRequest::new(&method, &format!("{path}?{query}"));
    for (k, v) in req.headers() {
        let Ok(v) = v.to_str() else { continue };
        if k == "cookie" {
            api.cookies
                .extend(v.split(';').map(|c| c.trim().to_string()));
        } else {
            api = api.header(k.as_str(), v);
        }
    }
    if route.jwt {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| jwt::verify(&app.jwt_key, t, now));
        match claims {
            Some(c) => api.claims = c,
            None => {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"message": "Unauthorized"})),
                )
                    .into_response()
            }
        }
    }
    let body = to_bytes(req.into_body(), 6 * 1024 * 1024)
        .await
        .unwrap_or_default();
    if !body.is_empty() {
        api.body = Some(body.to_vec());
    }
    let request = api.into_request();
    let resp = match route.template {
        "/connect/{provider}" => app.authorize.handle(request).await,
        "/oauth/{provider}/callback" | "/oauth/{provider}/complete" => {
            app.callback.handle(request).await
        }
        "/webhook" | "/meta/deauthorize" | "/meta/data-deletion" | "/meta/data-deletion/{code}" => {
            app.webhook.handle(request).await
        }
        "/connections" | "/connections/{provider}/{account_id}" => {
            let resp = app.connections_api.handle(request).await;
            if method == "DELETE" && resp.status() == 204 {
                // In AWS the function nudges refresh asynchronously; here, too.
                let app = app.clone();
                tokio::spawn(async move { run_refresh(&app).await });
            }
            resp
        }
        other => unreachable!("route {other} has no function"),
    };
    // Route and status only: query strings carry codes and states.
    tracing::info!(route = %route.key(), status = resp.status().as_u16(), "gateway");
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, AxumBody::from(body.as_ref().to_vec()))
}
