//! The outbound webhooks in the local stack. What AWS wires (the events
//! table's stream → pipe → bus → rule → `DeliveryQueue` → `deliver`) is a
//! loop here ([`LocalWebhooks::pump`]: new events onto moto's queue as the
//! rule would put them, the queue's messages to `deliver` as Lambda would),
//! and a small receiver at `/dev/receiver` that the demo page registers as an
//! endpoint, verifies each delivery's signature, and can be switched to
//! answer 500 to show retries.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use secrecy::SecretString;
use serde_json::{json, Map, Value};
use shared::outbound::resolver::Lookup;
use shared::outbound::signature::verify;
use shared::vault::KmsDataKeys;
use shared::{Clock, EnvReader, FromEnv};

use crate::apigw::{ApiRequest, ResponseExt};
use crate::stack::Stack;

/// The receiver's state, as the demo page shows it.
#[derive(Default)]
struct Receiver {
    failing: bool,
    endpoint: Option<(String, SecretString)>,
    deliveries: Vec<Value>,
}

pub struct LocalWebhooks {
    admin: admin::Admin<KmsDataKeys>,
    deliver: Arc<deliver::Deliver<KmsDataKeys>>,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    slow_queue: String,
    dynamodb: aws_sdk_dynamodb::Client,
    events_table: String,
    forwarded: Mutex<HashSet<String>>,
    receiver: Mutex<Receiver>,
    /// Where the receiver is reached (`http://127.0.0.1:<port>/dev/receiver`).
    receiver_url: String,
}

/// The `eventSourceARN` Lambda's records carry for the queue at `url`
/// (moto's account and region), which tells `deliver` its lane.
pub fn queue_arn(url: &str) -> String {
    let name = url.rsplit('/').next().unwrap_or_default();
    format!("arn:aws:sqs:us-east-1:123456789012:{name}")
}

impl LocalWebhooks {
    /// Queues and a key in moto, and `admin` and `deliver` configured as the
    /// template would (with `DELIVERY_ALLOW_LOOPBACK=true`).
    pub async fn start(stack: &Stack, base_url: &str) -> Arc<Self> {
        let sqs = aws_sdk_sqs::Client::new(&stack.aws);
        let mut env = stack.env.clone();
        for (name, var) in [
            ("deliveries", "DELIVERY_QUEUE_URL"),
            ("slow-deliveries", "DELIVERY_SLOW_QUEUE_URL"),
            ("dead-deliveries", "DELIVERY_DEAD_LETTER_QUEUE_URL"),
        ] {
            let q = sqs.create_queue().queue_name(format!("local-{name}"));
            let created = q.send().await.expect("create a queue");
            env.insert(var.into(), created.queue_url().unwrap_or_default().into());
        }
        let key = stack
            .kms
            .create_key()
            .send()
            .await
            .expect("create the endpoint secret key");
        let key_id = key
            .key_metadata()
            .map(|m| m.key_id().to_string())
            .unwrap_or_default();
        env.insert("ENDPOINT_KEY_ID".into(), key_id);
        env.insert("DELIVERY_ALLOW_LOOPBACK".into(), "true".into());
        let admin_config =
            admin::AdminConfig::from_env(EnvReader::from_map(env.clone())).expect("admin config");
        let deliver_config = deliver::DeliverConfig::from_env(EnvReader::from_map(env.clone()))
            .expect("deliver config");
        let keys = || KmsDataKeys::new(stack.kms.clone(), &admin_config.outbound.endpoint_key_id);
        let clock = Clock::system();
        Arc::new(Self {
            admin: admin::Admin::new(
                admin_config.clone(),
                &stack.dynamodb,
                sqs.clone(),
                keys(),
                clock.clone(),
            ),
            deliver: Arc::new(
                deliver::Deliver::new(
                    deliver_config.clone(),
                    &stack.dynamodb,
                    sqs.clone(),
                    keys(),
                    Lookup::System,
                    clock,
                )
                .expect("an HTTPS client"),
            ),
            queue: deliver_config.queue_url,
            slow_queue: deliver_config.slow_queue_url,
            sqs,
            dynamodb: stack.dynamodb.clone(),
            events_table: stack.var("EVENTS_TABLE").to_string(),
            forwarded: Mutex::default(),
            receiver: Mutex::default(),
            receiver_url: format!("{base_url}/dev/receiver"),
        })
    }

    /// Starts the loop AWS would run (a round every half second) and answers
    /// the receiver's routes.
    pub async fn run(stack: &Stack, base_url: &str) -> Router {
        let webhooks = Self::start(stack, base_url).await;
        let pumped = webhooks.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = pumped.pump().await {
                    tracing::warn!(error = %e, "outbound webhooks: a round failed");
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
        webhooks.router()
    }

    /// One round: new events onto the queue, each lane's messages to
    /// `deliver` as its event source mapping would hand them (the fast
    /// lane's in batches of up to ten, the slow lane's one per invocation,
    /// concurrently).
    pub async fn pump(self: &Arc<Self>) -> Result<(), String> {
        self.forward_new_events().await?;
        let fast = async {
            let batch = self.receive(&self.queue).await?;
            self.invoke(&self.queue, batch).await
        };
        let slow = async {
            let mut each = tokio::task::JoinSet::new();
            for record in self.receive(&self.slow_queue).await? {
                let this = self.clone();
                each.spawn(async move { this.invoke(&this.slow_queue, vec![record]).await });
            }
            let done = each.join_all().await;
            done.into_iter()
                .collect::<Result<Vec<()>, String>>()
                .map(drop)
        };
        tokio::try_join!(fast, slow).map(drop)
    }

    /// Up to ten visible messages of `queue`, as records.
    async fn receive(&self, queue: &str) -> Result<Vec<Value>, String> {
        let got = self
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let arn = queue_arn(queue);
        Ok(got.messages().iter().map(|m| json!({
            "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
            "eventSourceARN": arn,
        })).collect())
    }

    /// `deliver` on `records`, then what it did not report failed deleted.
    async fn invoke(&self, queue: &str, records: Vec<Value>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let answer = self.deliver.handle(json!({ "Records": records })).await;
        let failed = answer["batchItemFailures"].to_string();
        for r in &records {
            let id = r["messageId"].as_str().unwrap_or_default();
            if !failed.contains(&format!("\"{id}\"")) {
                let handle = r["receiptHandle"].as_str().unwrap_or_default();
                let delete = self
                    .sqs
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(handle);
                delete.send().await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// What the pipe and the rule do: every new event, as a bus event.
    async fn forward_new_events(&self) -> Result<(), String> {
        let pages = self
            .dynamodb
            .scan()
            .table_name(&self.events_table)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await;
        for item in &pages.map_err(|e| e.to_string())? {
            let Some(id) = item.get("event_id").and_then(|v| v.as_s().ok()) else {
                continue;
            };
            if !self.forwarded.lock().unwrap().insert(id.clone()) {
                continue;
            }
            let image: Map<String, Value> = item
                .iter()
                .filter_map(|(k, v)| {
                    let typed = match v {
                        aws_sdk_dynamodb::types::AttributeValue::S(s) => json!({ "S": s }),
                        aws_sdk_dynamodb::types::AttributeValue::N(n) => json!({ "N": n }),
                        _ => return None,
                    };
                    Some((k.clone(), typed))
                })
                .collect();
            let kind = image["kind"]["S"].clone();
            let event = json!({"source": "ig-connect", "detail-type": kind,
                "detail": {"eventName": "INSERT", "dynamodb": {"NewImage": image}}});
            let send = self
                .sqs
                .send_message()
                .queue_url(&self.queue)
                .message_body(event.to_string());
            send.send().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// `/dev/receiver` (the endpoint), `/dev/receiver/state` (GET: what it
    /// got and the endpoint's attempts; POST `{"failing"}`),
    /// `/dev/webhooks/register` (registers it through `admin`), and
    /// `/dev/admin/...`: the `/admin/...` routes as a SigV4-signed caller
    /// would reach them (the local gateway checks no SigV4 and answers
    /// `/admin` itself with 403).
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/dev/receiver", post(receive))
            .route("/dev/receiver/state", get(state).post(set_failing))
            .route("/dev/webhooks/register", post(register))
            .route("/dev/admin/{*rest}", any(admin_as_local_caller))
            .with_state(self)
    }

    async fn admin(&self, req: ApiRequest) -> (u16, Value) {
        let resp = self
            .admin
            .handle(
                req.iam("arn:aws:iam::000000000000:role/local")
                    .into_request(),
            )
            .await;
        let status = resp.status().as_u16();
        (
            status,
            if status == 204 {
                Value::Null
            } else {
                resp.body_json()
            },
        )
    }
}

type Shared = State<Arc<LocalWebhooks>>;

async fn register(State(w): Shared) -> Response {
    if let Some((id, _)) = &w.receiver.lock().unwrap().endpoint {
        return Json(json!({ "endpoint_id": id })).into_response();
    }
    let body = json!({"url": w.receiver_url, "description": "the local stack's receiver"});
    let (status, e) = w
        .admin(ApiRequest::post("/admin/endpoints").json(&body))
        .await;
    if status != 201 {
        return (StatusCode::BAD_GATEWAY, Json(e)).into_response();
    }
    let id = e["id"].as_str().unwrap_or_default().to_string();
    let secret = SecretString::from(e["secret"].as_str().unwrap_or_default().to_string());
    w.receiver.lock().unwrap().endpoint = Some((id.clone(), secret));
    Json(json!({ "endpoint_id": id })).into_response()
}

async fn receive(State(w): Shared, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h: HashMap<&str, &str> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .into_iter()
        .map(|k| {
            (
                k,
                headers
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let mut r = w.receiver.lock().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verified = r.endpoint.as_ref().is_some_and(|(_, secret)| {
        let (id, ts, sig) = (
            h["webhook-id"],
            h["webhook-timestamp"],
            h["webhook-signature"],
        );
        verify(secret, id, ts, sig, &body, now)
    });
    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
    let status = if r.failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    r.deliveries.insert(0, json!({
        "webhook_id": h["webhook-id"], "type": event["type"], "account_id": event["data"]["account_id"],
        "at": shared::clock::rfc3339(time::OffsetDateTime::now_utc()), "verified": verified,
        "answered": status.as_u16(),
    }));
    r.deliveries.truncate(50);
    status
}

async fn state(State(w): Shared) -> Json<Value> {
    let (endpoint, failing, deliveries) = {
        let r = w.receiver.lock().unwrap();
        (
            r.endpoint.as_ref().map(|(id, _)| id.clone()),
            r.failing,
            r.deliveries.clone(),
        )
    };
    let attempts = match &endpoint {
        Some(id) => w
            .admin(ApiRequest::get(&format!(
                "/admin/endpoints/{id}/attempts?limit=20"
            )))
            .await
            .1["attempts"]
            .clone(),
        None => json!([]),
    };
    Json(
        json!({"endpoint_id": endpoint, "failing": failing, "deliveries": deliveries, "attempts": attempts}),
    )
}

/// `/dev/admin/<rest>?<query>` → `admin`'s `/admin/<rest>?<query>`, with the
/// method and body as sent, from a fixed local IAM caller.
async fn admin_as_local_caller(
    State(w): Shared,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("", |p| p.as_str());
    let path = format!("/admin/{}", path.trim_start_matches("/dev/admin/"));
    let mut req = ApiRequest::new(method.as_str(), &path);
    if !body.is_empty() {
        req = req
            .body(body.to_vec())
            .header("content-type", "application/json");
    }
    let (status, answer) = w.admin(req).await;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    if answer.is_null() {
        return status.into_response();
    }
    (status, Json(answer)).into_response()
}

async fn set_failing(State(w): Shared, Json(body): Json<Value>) -> Json<Value> {
    let failing = body["failing"].as_bool().unwrap_or(false);
    w.receiver.lock().unwrap().failing = failing;
    Json(json!({ "failing": failing }))
}
