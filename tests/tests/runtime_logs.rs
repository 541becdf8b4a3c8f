//! Nothing secret reaches the logs at the most verbose level, including what
//! the Lambda runtime itself logs: every function's real runtime loop
//! (`serve()`, as `main` runs it) is driven through a local Lambda Runtime API
//! with raw events (the JWT in `Authorization`, the OAuth code and state, the
//! binding cookie, a DM, a `signed_request`), with the functions' own
//! subscriber installed as `RUST_LOG=trace` would have it.
//!
//! One test in this binary: it sets process-wide environment variables that
//! the runtime reads at start.

use infra::apigw::ApiRequest;
use infra::runtime_api::{Outcome, RuntimeApi};
use integration_tests::*;
use serde_json::{json, Value};
use shared::webhook::make_signed_request;
use url::Url;

/// Starts `serve` (a function's runtime loop) against a fresh Runtime API.
async fn start_function<F>(name: &str, serve: F) -> RuntimeApi
where
    F: std::future::Future<Output = Result<(), lambda_http::Error>> + 'static,
{
    let api = RuntimeApi::start().await;
    // SAFETY-free in edition 2021; nothing else in this binary reads these.
    std::env::set_var("AWS_LAMBDA_RUNTIME_API", api.address());
    std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", name);
    std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256");
    std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    // The runtime's future is not `Send`: it runs as a local task, as it
    // would on its own thread in Lambda.
    tokio::task::spawn_local(serve);
    // The runtime has read its environment once it polls for an event.
    api.wait_for_runtime().await;
    api
}

fn http_response(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Response(v) => v,
        Outcome::Error(e) => panic!("the function failed: {e}"),
    }
}

fn header(resp: &Value, name: &str) -> String {
    resp["headers"][name]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            resp["multiValueHeaders"][name][0]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn no_secret_is_logged_at_trace_level_by_any_function_or_the_runtime() {
    tokio::task::LocalSet::new()
        .run_until(connect_webhook_refresh_through_the_runtime())
        .await;
}

async fn connect_webhook_refresh_through_the_runtime() {
    // The runtime loops run for the rest of the process: they borrow forever.
    let h: &'static Harness = Box::leak(Box::new(Harness::new().await));

    let authorize = start_function("authorize", h.authorize.serve()).await;
    let callback = start_function("callback", h.callback.serve()).await;
    let webhook = start_function("webhook", h.webhook.serve()).await;
    let refresh = start_function("refresh", h.refresher.serve(None)).await;
    let (graph, _) = infra::graph_proxy::graph(&h.stack, h.clock.clone());
    let graph: &'static _ = Box::leak(Box::new(graph));
    let graph_fn = start_function("graph-http", graph.serve()).await;
    let (backend, _) =
        infra::graph_proxy::graph_door(&h.stack, h.clock.clone(), graph::Door::Invoke);
    let backend: &'static _ = Box::leak(Box::new(backend));
    let backend_fn = start_function("graph", backend.serve()).await;

    // What CloudWatch would count from these functions' EMF lines.
    let metrics = shared::metrics::Capture::start();

    // The frontend starts a flow; API Gateway passes the JWT on in the event.
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLW9mLXRoZS1qd3Q";
    let event = ApiRequest::post("/connect/instagram")
        .user("user-1")
        .header("authorization", &format!("Bearer {jwt}"))
        .json(&json!({"return_to": "/done"}))
        .event();
    let resp = http_response(authorize.invoke(event).await);
    assert_eq!(resp["statusCode"], 200, "{resp}");
    let body: Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
    let authorize_url = body["authorize_url"].as_str().unwrap().to_string();
    let state = param(&Url::parse(&authorize_url).unwrap(), "state").unwrap();
    let set_cookie = resp["cookies"][0].as_str().unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let cookie_value = cookie.split_once('=').unwrap().1.to_string();

    // Meta sends the browser back with the code; the browser sends the cookie.
    let back = h.stack.meta.approve(&authorize_url);
    let code = param(&back, "code").unwrap();
    let event = ApiRequest::get(&format!(
        "{}?{}",
        back.path(),
        back.query().unwrap_or_default()
    ))
    .cookie(&cookie)
    .event();
    let resp = http_response(callback.invoke(event).await);
    assert_eq!(resp["statusCode"], 302, "{resp}");
    let location = Url::parse(&header(&resp, "location")).unwrap();
    assert_eq!(param(&location, "status").as_deref(), Some("connected"));
    let account = param(&location, "account_id").unwrap();

    // Meta delivers a DM, signed.
    let ig_secret = h.stack.meta.apps().instagram_app_secret;
    let dm_text = "my secret DM body 7f3a";
    let delivery = json!({"object": "instagram", "entry": [{"id": account, "time": 1795260000000u64,
        "messaging": [{"sender": {"id": "9001"}, "recipient": {"id": account}, "timestamp": 1795260000000u64,
                       "message": {"mid": "m_runtime_logs", "text": dm_text}}]}]})
    .to_string();
    let signature = shared::webhook::signature_header(ig_secret.as_bytes(), delivery.as_bytes());
    let event = Harness::signed_notification(delivery.as_bytes(), &ig_secret).event();
    let resp = http_response(webhook.invoke(event).await);
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert_eq!(h.events("messages").await.len(), 1);

    // Meta's subscription check, with the verify token.
    let secret_json = aws_sdk_secretsmanager::Client::new(&h.stack.aws)
        .get_secret_value()
        .secret_id(h.stack.var("META_SECRET_ID"))
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    let verify_token = serde_json::from_str::<Value>(&secret_json).unwrap()["webhook_verify_token"]
        .as_str()
        .unwrap()
        .to_string();
    let event = ApiRequest::get(&format!(
        "/webhook?hub.mode=subscribe&hub.verify_token={verify_token}&hub.challenge=4242"
    ))
    .event();
    let resp = http_response(webhook.invoke(event).await);
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert_eq!(resp["body"], "4242");

    // A scheduled refresh, 54 days on: the token is refreshed.
    h.clock.advance(time::Duration::days(54));
    let scheduled = json!({"version": "0", "id": "e1", "detail-type": "Scheduled Event",
        "source": "aws.scheduler", "account": "123456789012", "time": "2026-11-21T12:00:00Z",
        "region": "us-east-1", "resources": [], "detail": {}});
    let summary = http_response(refresh.invoke(scheduled).await);
    assert_eq!(summary["refreshed"], 1, "{summary}");
    // One test in this binary: the totals are this test's alone.
    assert_eq!(metrics.total("callback", "Connected"), 1.0);
    assert_eq!(metrics.total("callback", "Failed"), 0.0);
    assert_eq!(
        metrics.total("callback", "KmsCalls"),
        1.0,
        "one GenerateDataKey"
    );
    assert_eq!(metrics.total("webhook", "NewEvents"), 1.0);
    assert_eq!(metrics.total("refresh", "Refreshed"), 1.0);
    assert_eq!(
        metrics.total("refresh", "KmsCalls"),
        2.0,
        "one Decrypt, one GenerateDataKey"
    );
    assert_eq!(metrics.total("refresh", "KmsErrors"), 0.0);

    // The product acts with the connection through the Graph proxy: both
    // doors, through the runtime (an API Gateway event, then an invocation).
    let graph_text = "my secret reply body 91c2";
    let event = ApiRequest::post(&format!(
        "/connections/instagram/{account}/graph/me/messages"
    ))
    .user("user-1")
    .header("authorization", &format!("Bearer {jwt}"))
    .header("idempotency-key", "reply-1")
    .json(&json!({"recipient": {"id": "9001"}, "message": {"text": graph_text}}))
    .event();
    let resp = http_response(graph_fn.invoke(event).await);
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert_eq!(header(&resp, "cache-control"), "no-store");
    let answer = http_response(
        backend_fn
            .invoke(json!({"provider": "instagram", "account_id": account, "user_id": "user-1",
                "method": "GET", "path": "me/media", "query": {"fields": "id,caption", "limit": 1}}))
            .await,
    );
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(answer["body"]["data"].is_array(), "{answer}");
    assert_eq!(
        answer["body"]["paging"]["next"]["query"]["limit"], "1",
        "{answer}"
    );
    assert_eq!(metrics.total("graph", "Answers2xx"), 2.0);

    // The doors are separate: the backend's function reads an API Gateway
    // event with someone's `sub` as a malformed call, and the HTTP door's
    // function takes nothing but API Gateway's events.
    let forged = ApiRequest::get(&format!("/connections/instagram/{account}/graph/me"))
        .user("user-1")
        .event();
    let answer = http_response(backend_fn.invoke(forged).await);
    assert_eq!(answer["status"], 400, "{answer}");
    assert_eq!(answer["body"]["error"], "bad_request", "{answer}");
    let backend_shape = json!({"provider": "instagram", "account_id": account, "user_id": "user-1",
        "method": "GET", "path": "me"});
    assert!(matches!(
        graph_fn.invoke(backend_shape).await,
        Outcome::Error(_)
    ));
    assert_eq!(metrics.total("graph", "Answers5xx"), 0.0);

    // Meta deauthorizes the person, with a signed_request.
    let signed_request = make_signed_request(
        ig_secret.as_bytes(),
        &json!({"algorithm": "HMAC-SHA256", "issued_at": 1800000000, "user_id": "26000000000000001"}),
    );
    let event = ApiRequest::post("/meta/deauthorize")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("signed_request={signed_request}"))
        .event();
    let resp = http_response(webhook.invoke(event).await);
    assert_eq!(resp["statusCode"], 200, "{resp}");

    // Every runtime answered each invocation once, as Lambda requires.
    for api in [
        &authorize,
        &callback,
        &webhook,
        &refresh,
        &graph_fn,
        &backend_fn,
    ] {
        assert_eq!(api.refused(), 0, "an answer Lambda would refuse");
    }

    // The capture saw the functions at work, through the runtime.
    let logs = logs();
    for line in ["authorization started", "connected", "graph call"] {
        assert!(logs.contains(line), "the capture sees {line:?}");
    }
    let mut secrets = h.stack.meta.issued_secrets();
    assert!(secrets.contains(&code));
    secrets.extend([
        state,
        cookie_value,
        jwt.to_string(),
        dm_text.to_string(),
        graph_text.to_string(),
        signature,
        verify_token,
        signed_request.clone(),
        signed_request.split_once('.').unwrap().0.to_string(),
        ig_secret,
        h.stack.meta.apps().facebook_app_secret,
    ]);
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret is in the logs: {}",
            logs.lines()
                .find(|l| l.contains(secret.as_str()))
                .unwrap_or_default()
        );
    }
}
