//! The local stack: moto (started by `scripts/local-stack`), the emulated
//! Meta, and a gateway on 127.0.0.1 that serves the API's routes the way API
//! Gateway would (payload 2.0 events, JWT claims from a verified token), plus
//! a small demo frontend to click through a connection.

mod cli;
mod dev;

use dev::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{to_bytes, Body as AxumBody};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use infra::apigw::{match_route_under, ApiRequest};
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
    connections_table: String,
    callback: callback::Callback<shared::vault::KmsDataKeys>,
    graph: graph::Graph<shared::vault::KmsDataKeys>,
    /// Publishing: both doors and the every-minute run in one.
    publish: publish::Publisher<shared::vault::KmsDataKeys>,
    jwt_key: Vec<u8>,
    /// Meta's routes live under this path segment only (`MetaPathSecret`).
    meta_path_prefix: String,
    /// The demo page, as served.
    page: String,
    /// The HTTP API's CORS (template.yaml's), for this gateway's origins.
    cors: infra::cors::Cors,
}

/// The demo page, with the failure reasons' sentences (the ones `POST
/// /oauth/{provider}/complete` returns) filled in.
fn demo_page() -> String {
    let reasons: serde_json::Map<String, serde_json::Value> = callback::Reason::ALL
        .iter()
        .map(|r| (r.as_str().to_string(), json!(r.message())))
        .collect();
    let reasons = serde_json::Value::Object(reasons)
        .to_string()
        .replace('<', "\\u003c");
    include_str!("demo.html").replace("/*REASONS*/{}", &reasons)
}

/// Prints a panic as one line, without a backtrace: a person reads it.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unexpected failure");
        eprintln!("local-stack: stopped: {msg}");
    }));
}

fn fail(msg: &str) -> ! {
    eprintln!("local-stack: {msg}");
    std::process::exit(1)
}

/// Binds `127.0.0.1:port`, or says which port is taken and the option that
/// changes it.
async fn listen(port: u16, option: &str) -> tokio::net::TcpListener {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => fail(&format!(
            "port {port} is in use: choose another with {option} N"
        )),
        Err(e) => fail(&format!("cannot listen on {addr} ({option}): {e}")),
    }
}

/// Resolves on Ctrl-C, SIGTERM or SIGHUP, with the signal's name.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
        _ = int.recv() => "SIGINT",
    }
}

#[tokio::main]
async fn main() {
    quiet_panics();
    let Some(opts) = parse_args() else {
        return;
    };
    // Both ports first, before any table is made: the gateway's listener is
    // kept, the emulated Meta's is given back for it to bind at once.
    let listener = listen(opts.port, "--port").await;
    drop(listen(opts.meta_port, "--meta-port").await);
    if opts.check_only {
        return;
    }
    shared::logging::install(std::io::stdout, true);
    let base = format!("http://127.0.0.1:{}", opts.port);
    let stack = start_stack(opts.meta_port, &base).await;
    let app = Arc::new(build_app(&stack, &opts, &base));
    spawn_every_minute(app.clone());
    let router = router(app).merge(infra::outbound::LocalWebhooks::run(&stack, &base).await);
    print_ready(&stack, &base);
    serve(listener, router).await;
}

/// The options, or `None` once the help is printed; a refusal exits.
fn parse_args() -> Option<cli::Options> {
    match cli::parse(std::env::args().skip(1)) {
        Ok(cli::Command::Help) => {
            println!("{}", cli::USAGE);
            None
        }
        Ok(cli::Command::Run(opts)) => Some(opts),
        Err(e) => {
            eprintln!("local-stack: {e}\nRun scripts/local-stack --help to see the options.");
            std::process::exit(2);
        }
    }
}

async fn start_stack(meta_port: u16, base: &str) -> Stack {
    Stack::start(StackOptions {
        prefix: "local".into(),
        meta_port,
        public_base_url: base.to_string(),
        frontend_url: format!("{base}/app/"),
        allowed_return_origins: String::new(),
        complete_redirect_uri: Some(format!("{base}/app/complete")),
        meta_path_prefix: random_meta_path_prefix(),
    })
    .await
}

fn build_app(stack: &Stack, opts: &cli::Options, base: &str) -> App {
    let port = opts.port;
    let mut jwt_key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut jwt_key);
    App {
        authorize: stack.authorize(Clock::system()),
        refresher: stack.refresher(Clock::system()),
        connections_api: stack.connections(Clock::system()),
        // In AWS the data-deletion function finishes deletions; here, a task.
        webhook: stack
            .webhook(Clock::system())
            .with_launch(webhook::Launch::InProcess),
        dynamodb: stack.dynamodb.clone(),
        events_table: stack.var("EVENTS_TABLE").to_string(),
        connections_table: stack.var("CONNECTIONS_TABLE").to_string(),
        instagram_app_secret: stack.meta.apps().instagram_app_secret,
        callback: stack.callback(Clock::system()),
        graph: infra::graph_proxy::graph(stack, Clock::system()).0,
        publish: infra::publish::publisher(stack, Clock::system(), publish::Door::Http).0,
        jwt_key,
        meta_path_prefix: stack.meta_path_prefix.clone(),
        page: demo_page(),
        cors: infra::cors::Cors::from_template(
            &infra::template::template_path(),
            [base.to_string(), format!("http://localhost:{port}")]
                .into_iter()
                .chain(opts.allow_origins.iter().cloned())
                .collect(),
        ),
    }
}

/// Plays the every-minute schedule (PublishFunction's EveryMinute).
fn spawn_every_minute(app: Arc<App>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            let deadline = shared::continuation::Deadline::distant();
            if let Err(e) = app.publish.run(deadline).await {
                tracing::error!(error = %e, "the publish run failed");
            }
        }
    });
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/app/") }))
        .route("/app/", get(page))
        .route("/app/complete", get(page))
        .route("/dev/token", get(dev_token))
        .route("/dev/send-webhook", post(dev_send_webhook))
        .route("/dev/events", get(dev_events))
        .route("/dev/age-connection", post(dev_age_connection))
        .route("/dev/run-refresh", post(dev_run_refresh))
        .route("/dev/invoke-graph", post(dev_invoke_graph))
        .route("/dev/invoke-publish", post(dev_invoke_publish))
        .route("/dev/run-publish", post(dev_run_publish))
        .route("/dev/run-dm-bot", post(dev_run_dm_bot))
        .fallback(gateway)
        .with_state(app)
}

fn print_ready(stack: &Stack, base: &str) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let tables = [
        stack.var("STATES_TABLE"),
        stack.var("CONNECTIONS_TABLE"),
        stack.var("EVENTS_TABLE"),
    ];
    println!(
        "\n  Local stack ready.\n  Open {base}/app/ and connect an account.\n  \
         API: {base}  ·  emulated Meta: {meta}  ·  moto: {endpoint}\n  \
         Meta's routes (this run's MetaPathSecret): {base}{meta_prefix}/webhook, /meta/...\n\n  \
         Data lives in memory in moto at {endpoint} and is gone when the stack stops.\n  \
         Tables: {tables}. Look at one with\n    \
         AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing aws dynamodb scan \\\n      \
         --region us-east-1 --endpoint-url {endpoint} --table-name {conns}\n  \
         or in moto's dashboard: {endpoint}/moto-api/\n\n  \
         Logs below: one JSON object per line, with a UTC timestamp.\n  \
         Ctrl-C (or stopping scripts/local-stack) stops everything.\n",
        meta = stack.meta.base_url(),
        meta_prefix = stack.meta_path_prefix,
        tables = tables.join(", "),
        conns = tables[1],
    );
}

/// Serves until the gateway fails (which exits) or a stop signal comes.
async fn serve(listener: tokio::net::TcpListener, router: Router) {
    tokio::select! {
        served = axum::serve(listener, router) => {
            if let Err(e) = served {
                fail(&format!("the gateway stopped: {e}"));
            }
        }
        signal = stop_signal() => tracing::info!(signal, "stopping"),
    }
}

/// A fresh unguessable segment per run, as `MetaPathSecret` is in AWS.
fn random_meta_path_prefix() -> String {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    format!("/meta-{}", hex::encode(id))
}

async fn page(State(app): State<Arc<App>>) -> Html<String> {
    Html(app.page.clone())
}

/// API Gateway: CORS (from the template), then the route's function.
async fn gateway(State(app): State<Arc<App>>, req: Request) -> Response {
    let origin = req
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // CORS preflights are API Gateway's to answer, on any path.
    if req.method() == axum::http::Method::OPTIONS
        && req.headers().contains_key("access-control-request-method")
    {
        return infra::cors::with_headers(
            StatusCode::NO_CONTENT.into_response(),
            app.cors.preflight(&origin),
        );
    }
    let resp = route_and_call(&app, req).await;
    infra::cors::with_headers(resp, app.cors.answer(&origin))
}

/// Matches the route, runs the JWT authorizer where the route has one,
/// builds the payload 2.0 event and calls the function's handler.
async fn route_and_call(app: &Arc<App>, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    // Meta's routes exist only under the prefix, as in AWS: `/webhook` is a
    // 404 here, answered without calling any function.
    let Some(route) = match_route_under(&method, &path, &app.meta_path_prefix) else {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    };
    let mut api = api_request(&method, &format!("{path}?{query}"), req.headers());
    if route.door == infra::apigw::Door::Iam {
        // The local gateway checks no SigV4: the admin routes stay closed here.
        return (StatusCode::FORBIDDEN, Json(json!({"message": "Forbidden"}))).into_response();
    }
    if route.jwt {
        match verified_claims(app, req.headers()) {
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
    let resp = call(app, route.template, &method, api.into_request()).await;
    // Route and status only: query strings carry codes and states.
    tracing::info!(route = %route.key(), status = resp.status().as_u16(), "gateway");
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, AxumBody::from(body.as_ref().to_vec()))
}

/// The request's headers and cookies, as API Gateway passes them on.
fn api_request(method: &str, path_and_query: &str, headers: &HeaderMap) -> ApiRequest {
    let mut api = ApiRequest::new(method, path_and_query);
    for (k, v) in headers {
        let Ok(v) = v.to_str() else { continue };
        if k == "cookie" {
            api.cookies
                .extend(v.split(';').map(|c| c.trim().to_string()));
        } else {
            api = api.header(k.as_str(), v);
        }
    }
    api
}

/// The JWT authorizer: the claims of a valid bearer token.
fn verified_claims(app: &App, headers: &HeaderMap) -> Option<Vec<(String, String)>> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| jwt::verify(&app.jwt_key, t, now))
}

/// The route's function.
async fn call(
    app: &Arc<App>,
    template: &str,
    method: &str,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    match template {
        "/connect/{provider}" => app.authorize.handle(request).await,
        "/oauth/{provider}/callback" | "/oauth/{provider}/complete" => {
            app.callback.handle(request).await
        }
        "/webhook" | "/meta/deauthorize" | "/meta/data-deletion" | "/meta/data-deletion/{code}" => {
            app.webhook.handle(request).await
        }
        "/connections/{provider}/{account_id}/graph/{path+}" => app.graph.handle(request).await,
        "/connections/{provider}/{account_id}/posts"
        | "/connections/{provider}/{account_id}/posts/uploads"
        | "/connections/{provider}/{account_id}/posts/{post_id}" => {
            app.publish.handle(request).await
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
    }
}
