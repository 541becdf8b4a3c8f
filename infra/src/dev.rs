//! The local stack's `/dev/*` routes: what the demo page clicks to play
//! the product's identity provider, Meta, the product's backend and the
//! schedules.

use super::*;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

/// Mints a JWT for a user, standing in for the product's identity provider.
pub(crate) async fn dev_token(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sub = q.get("sub").cloned().unwrap_or_else(|| "demo-user".into());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Json(json!({"token": jwt::sign(&app.jwt_key, &sub, now, 3600)})).into_response()
}

/// Plays Meta: signs a message notification for an account with the
/// Instagram app secret and delivers it to `POST /webhook` through the gateway.
pub(crate) async fn dev_send_webhook(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
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
    let req = ApiRequest::post(&format!("{}/webhook", app.meta_path_prefix))
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
pub(crate) async fn dev_events(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sub = q.get("sub").cloned().unwrap_or_default();
    let out = app
        .dynamodb
        .scan()
        .table_name(&app.events_table)
        .send()
        .await;
    let Ok(out) = out else {
        return dev_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the events table could not be read",
        );
    };
    let get = |i: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, k: &str| {
        i.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let mut events: Vec<_> = out
        .items()
        .iter()
        .filter(|i| sub.is_empty() || get(i, "user_id") == sub)
        .map(|i| json!({"event_id": get(i, "event_id"), "kind": get(i, "kind"), "account_id": get(i, "account_id"), "user_id": get(i, "user_id"),
                         "occurred_at": get(i, "occurred_at"), "received_at": get(i, "received_at"), "payload": get(i, "payload")}))
        .collect();
    events.sort_by(|a, b| b["received_at"].as_str().cmp(&a["received_at"].as_str()));
    events.truncate(20);
    Json(json!({"events": events})).into_response()
}

/// Plays the product's backend: a direct invocation of the Graph proxy (what
/// `aws lambda invoke --function-name <GraphFunctionArn>` does in AWS).
pub(crate) async fn dev_invoke_graph(
    State(app): State<Arc<App>>,
    Json(payload): Json<serde_json::Value>,
) -> Response {
    Json(app.graph.handle_invocation(payload).await).into_response()
}

/// Plays the product's backend: a direct invocation of publishing (what
/// `aws lambda invoke --function-name <PublishFunctionArn>` does in AWS).
pub(crate) async fn dev_invoke_publish(
    State(app): State<Arc<App>>,
    Json(payload): Json<serde_json::Value>,
) -> Response {
    Json(app.publish.handle_invocation(payload).await).into_response()
}

/// Plays the every-minute schedule: one publish run, now.
pub(crate) async fn dev_run_publish(State(app): State<Arc<App>>) -> Response {
    let deadline = shared::continuation::Deadline::distant();
    match app.publish.run(deadline).await {
        Ok(summary) => Json(json!(summary)).into_response(),
        Err(e) => dev_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the publish run failed: {e}"),
        ),
    }
}

/// Runs the example DM bot (examples/dm-bot) over the events table, as its
/// stream would deliver it: every new message gets one answer through the
/// proxy's invocation door, however often this runs.
pub(crate) async fn dev_run_dm_bot(State(app): State<Arc<App>>) -> Response {
    let Ok(out) = app
        .dynamodb
        .scan()
        .table_name(&app.events_table)
        .send()
        .await
    else {
        return dev_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the events table could not be read",
        );
    };
    let records: Vec<serde_json::Value> = out
        .items()
        .iter()
        .enumerate()
        .map(|(i, item)| infra::graph_proxy::stream_record(item, i))
        .collect();
    let answered = records.iter().filter_map(dm_bot::reply_for).count();
    let proxy = infra::graph_proxy::InProcess(&app.graph);
    let result = dm_bot::handle(&proxy, &json!({"Records": records})).await;
    let retry = result["batchItemFailures"].as_array().map_or(0, Vec::len);
    Json(json!({"messages": answered, "to_retry": retry})).into_response()
}

/// Makes a connection due, as if time had passed: an Instagram token now
/// expires in 12 hours (issued 60 days before that), a Facebook Page token's
/// daily check is now. The row's `by_due` attributes say so, as the refresher
/// itself would have written them, so the next refresh run takes it.
pub(crate) async fn dev_age_connection(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let (sub, account) = (field("sub"), field("account_id"));
    let Some(provider) = shared::provider::Provider::parse(field("provider")) else {
        return dev_error(StatusCode::BAD_REQUEST, "unknown provider");
    };
    let now = time::OffsetDateTime::now_utc();
    let update = active_connection_update(&app, sub, provider, account);
    let (update, said) = make_due(update, provider, now);
    match update.send().await {
        Ok(_) => Json(json!({"aged": true, "message": said})).into_response(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            dev_error(
                StatusCode::NOT_FOUND,
                "no active connection of this user with that account",
            )
        }
        Err(e) => {
            tracing::error!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "age connection");
            dev_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the connections table could not be updated",
            )
        }
    }
}

/// An update of the user's connection with the account, if it is active; its
/// expression is [`make_due`]'s.
fn active_connection_update(
    app: &App,
    sub: &str,
    provider: shared::provider::Provider,
    account: &str,
) -> UpdateItemFluentBuilder {
    app.dynamodb
        .update_item()
        .table_name(&app.connections_table)
        .key(
            "pk",
            AttributeValue::S(shared::store::connections::user_pk(sub)),
        )
        .key(
            "sk",
            AttributeValue::S(shared::store::connections::conn_sk(provider, account)),
        )
        .condition_expression("attribute_exists(pk) AND #status = :active")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":active", AttributeValue::S("active".into()))
        .expression_attribute_values(":bucket", AttributeValue::S(provider.as_str().into()))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
}

/// The update that makes the connection due now, and the sentence that says
/// what it did.
fn make_due(
    update: UpdateItemFluentBuilder,
    provider: shared::provider::Provider,
    now: time::OffsetDateTime,
) -> (UpdateItemFluentBuilder, &'static str) {
    let n = |t: time::OffsetDateTime| AttributeValue::N(t.unix_timestamp().to_string());
    match provider {
        shared::provider::Provider::Instagram => {
            let expires = now + time::Duration::hours(12);
            let update = update
                .update_expression(
                    "SET token_issued_at = :issued, token_expires_at = :expires, \
                     due_bucket = :bucket, due_at = :expires, version = version + :one",
                )
                .expression_attribute_values(":issued", n(expires - time::Duration::days(60)))
                .expression_attribute_values(":expires", n(expires));
            (
                update,
                "Its token now expires in 12 hours: the next refresh run refreshes it.",
            )
        }
        shared::provider::Provider::Facebook => {
            let update = update
                .update_expression(
                    "SET due_bucket = :bucket, due_at = :now, version = version + :one",
                )
                .expression_attribute_values(":now", n(now));
            (
                update,
                "Its daily token check is due: the next refresh run checks it.",
            )
        }
    }
}

/// An error of a `/dev/*` route, shaped like the API's: `{"error", "message"}`.
pub(crate) fn dev_error(status: StatusCode, message: &str) -> Response {
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        _ => "server_error",
    };
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

pub(crate) async fn run_refresh(app: &App) -> Result<refresh::Summary, String> {
    let deadline = shared::continuation::Deadline::before(
        std::time::Instant::now() + std::time::Duration::from_secs(300),
        refresh::DEADLINE_MARGIN,
    );
    app.refresher.run(deadline).await.map_err(|e| e.to_string())
}

/// Plays EventBridge: one scheduled refresh run, now.
pub(crate) async fn dev_run_refresh(State(app): State<Arc<App>>) -> Response {
    match run_refresh(&app).await {
        Ok(summary) => Json(summary).into_response(),
        Err(e) => dev_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the refresh run failed: {e}"),
        ),
    }
}
