//! Outbound webhooks end to end: the real `admin` and `deliver` handlers
//! against moto's DynamoDB, KMS and SQS, delivering to a real HTTP receiver
//! on 127.0.0.1, every signature verified by the official Python
//! `standardwebhooks` library (scripts/receiver-python installs it).
//! moto fires neither the EventBridge rule nor the SQS event source: the
//! tests put on the queue what the rule would, and hand `deliver` what
//! Lambda would receive from it (deleting what it did not report failed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use admin::{Admin, AdminConfig};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use deliver::{Deliver, DeliverConfig};
use infra::apigw::{ApiRequest, ResponseExt};
use infra::stack::{Stack, StackOptions};
use integration_tests::TEST_EPOCH;
use serde_json::{json, Value};
use shared::aws_sdk_dynamodb::types::AttributeValue;
use shared::outbound::resolver::Lookup;
use shared::vault::KmsDataKeys;
use shared::{Clock, EnvReader, FromEnv};
use time::Duration;

const ADMIN_ARN: &str = "arn:aws:iam::123456789012:role/backend-admin";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Captured {
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// A backend on 127.0.0.1 whose answer depends on the path: `/ok*` 200,
/// `/dead` 500, `/busy` 429 with `Retry-After: 120`, `/redirect` 302 to
/// `/ok`, `/slow` never answers, `/held` answers 200 once the test opens
/// the gate.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Captured>>>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Receiver {
    async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (log, held) = (seen.clone(), gate.clone());
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (log, held) = (log.clone(), held.clone());
            async move {
                let headers = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                    .collect();
                let path = uri.path().to_string();
                log.lock().unwrap().push(Captured {
                    path: path.clone(),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                if path == "/held" {
                    drop(held.acquire().await);
                }
                answer(&path).await
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { port, seen, gate }
    }

    /// `/held` answers from now on (and the requests it holds get theirs).
    fn open_gate(&self) {
        self.gate
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn got(&self, path: &str) -> Vec<Captured> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|c| c.path == path).cloned().collect()
    }
}

async fn answer(path: &str) -> Response {
    match path {
        "/dead" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "/busy" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "120")]).into_response(),
        "/redirect" => (StatusCode::FOUND, [("location", "/ok-target")]).into_response(),
        "/slow" => std::future::pending().await,
        _ => (StatusCode::OK, "ok").into_response(),
    }
}

/// The Python with `standardwebhooks`, installed once.
fn receiver_python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let root = infra::template::template_path()
            .parent()
            .unwrap()
            .to_path_buf();
        let out = std::process::Command::new(root.join("scripts/receiver-python"))
            .output()
            .expect("scripts/receiver-python runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// Whether the official library accepts `c` under `secret` at `now`.
fn verifies(secret: &str, c: &Captured, now: i64) -> bool {
    use std::io::Write;
    let root = infra::template::template_path()
        .parent()
        .unwrap()
        .to_path_buf();
    let mut child = std::process::Command::new(receiver_python())
        .arg(root.join("tests/verify_standard_webhook.py"))
        .arg(now.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let input = json!({"secret": secret, "headers": c.headers, "body": c.body});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

struct World {
    stack: Stack,
    clock: Clock,
    admin: Admin<KmsDataKeys>,
    deliver: Arc<Deliver<KmsDataKeys>>,
    sqs: aws_sdk_sqs::Client,
    queue: String,
    slow_queue: String,
    dead_letters: String,
}

/// The fast lane's patience in these tests: as in the service (twice the
/// slowest answer; quick below the least), but at least 2 s and at most
/// 2.5 s, under the 3 s attempt timeout, so that a busy test machine
/// answering slowly is not mistaken for a slow endpoint.
const TEST_PATIENCE: shared::outbound::lane::Bounds = shared::outbound::lane::Bounds {
    min: std::time::Duration::from_millis(2000),
    max: std::time::Duration::from_millis(2500),
};

async fn world(allow_loopback: bool, lookup: Lookup) -> World {
    world_at(allow_loopback, lookup, Clock::fixed(TEST_EPOCH)).await
}

async fn world_at(allow_loopback: bool, lookup: Lookup, clock: Clock) -> World {
    integration_tests::logs();
    let mut stack = Stack::start(StackOptions::for_tests()).await;
    let sqs = aws_sdk_sqs::Client::new(&stack.aws);
    let url = |name: String| {
        let sqs = sqs.clone();
        async move {
            let q = sqs.create_queue().queue_name(name).send().await.unwrap();
            q.queue_url().unwrap().to_string()
        }
    };
    let queue = url(format!("{}-deliveries", stack.var("ENDPOINTS_TABLE"))).await;
    let slow_queue = url(format!("{}-slow", stack.var("ENDPOINTS_TABLE"))).await;
    let dead_letters = url(format!("{}-dead", stack.var("ENDPOINTS_TABLE"))).await;
    let key = stack.kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_string();
    for (k, v) in [
        ("ENDPOINT_KEY_ID", key_id),
        ("DELIVERY_QUEUE_URL", queue.clone()),
        ("DELIVERY_SLOW_QUEUE_URL", slow_queue.clone()),
        ("DELIVERY_DEAD_LETTER_QUEUE_URL", dead_letters.clone()),
        ("DELIVERY_MAX_DELAY_SECONDS", "0".into()),
        ("DELIVERY_ALLOW_LOOPBACK", allow_loopback.to_string()),
    ] {
        stack.env.insert(k.into(), v);
    }
    let env = || EnvReader::from_map(stack.env.clone());
    let admin_config = AdminConfig::from_env(env()).expect("admin config");
    let deliver_config = DeliverConfig::from_env(env()).expect("deliver config");
    let keys = || KmsDataKeys::new(stack.kms.clone(), &admin_config.outbound.endpoint_key_id);
    let admin = Admin::new(
        admin_config.clone(),
        &stack.dynamodb,
        sqs.clone(),
        keys(),
        clock.clone(),
    );
    let deliver = Deliver::new(
        deliver_config,
        &stack.dynamodb,
        sqs.clone(),
        keys(),
        lookup,
        clock.clone(),
    )
    .unwrap()
    .with_jitter(|| 0.0)
    .with_patience(TEST_PATIENCE)
    .with_timeout(std::time::Duration::from_secs(3))
    .unwrap();
    World {
        stack,
        clock,
        admin,
        deliver: Arc::new(deliver),
        sqs,
        queue,
        slow_queue,
        dead_letters,
    }
}

/// An event as the events bus's rule puts it on the queue.
fn bus_event(event_id: &str, kind: &str, account_id: &str) -> String {
    json!({
        "version": "0", "id": "b1", "source": "ig-connect", "detail-type": kind,
        "account": "123456789012", "time": "2026-11-21T12:00:00Z", "region": "us-east-1",
        "resources": [],
        "detail": {"eventName": "INSERT", "eventSource": "aws:dynamodb", "dynamodb": {"NewImage": {
            "event_id": {"S": event_id}, "kind": {"S": kind}, "provider": {"S": "instagram"},
            "account_id": {"S": account_id}, "user_id": {"S": "user-1"},
            "occurred_at": {"S": "2026-11-21T11:59:59.120Z"},
            "received_at": {"S": "2026-11-21T12:00:00.004Z"},
            "payload": {"S": "{\"message\":{\"text\":\"hi\"}}"},
            "expires_at": {"N": "1795000000"}
        }}}
    })
    .to_string()
}

impl World {
    async fn admin(&self, req: ApiRequest) -> (u16, Value) {
        let resp = self.admin.handle(req.iam(ADMIN_ARN).into_request()).await;
        let status = resp.status().as_u16();
        let body = if status == 204 {
            Value::Null
        } else {
            resp.body_json()
        };
        (status, body)
    }

    /// Registers an endpoint; its id and secret.
    async fn endpoint(&self, body: Value) -> (String, String) {
        let (status, e) = self
            .admin(ApiRequest::post("/admin/endpoints").json(&body))
            .await;
        assert_eq!(status, 201, "{e}");
        (
            e["id"].as_str().unwrap().into(),
            e["secret"].as_str().unwrap().into(),
        )
    }

    /// Stores an event (its attributes in DynamoDB's typed JSON).
    async fn store_event(&self, image: &Value) {
        let item = image.as_object().unwrap().iter().map(|(k, v)| {
            let attr = match (v.get("S"), v.get("N")) {
                (Some(s), _) => AttributeValue::S(s.as_str().unwrap().into()),
                (_, Some(n)) => AttributeValue::N(n.as_str().unwrap().into()),
                _ => panic!("S or N"),
            };
            (k.clone(), attr)
        });
        let table = self.stack.var("EVENTS_TABLE");
        let put = self.stack.dynamodb.put_item().table_name(table);
        put.set_item(Some(item.collect())).send().await.unwrap();
    }

    /// Puts on the queue what the rule would; a bus event is first stored
    /// in the events table, as the pipe only forwards what was stored
    /// (attempts read it there).
    async fn publish(&self, body: String) {
        let parsed: Value = serde_json::from_str(&body).unwrap();
        if let Some(image) = parsed.pointer("/detail/dynamodb/NewImage") {
            self.store_event(image).await;
        }
        self.sqs
            .send_message()
            .queue_url(&self.queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// What Lambda would do with the fast lane's visible messages (one
    /// receive, up to ten): hand them to `deliver` and delete those not
    /// reported failed. Returns how many records were handed over.
    async fn pump(&self) -> usize {
        self.pump_queue(&self.queue, 10).await
    }

    /// The same for the slow lane, whose batches are of one record.
    async fn pump_slow(&self) -> usize {
        self.pump_queue(&self.slow_queue, 1).await
    }

    async fn pump_queue(&self, queue: &str, batch: i32) -> usize {
        let got = self
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(batch)
            .visibility_timeout(30)
            .send()
            .await
            .unwrap();
        let messages = got.messages().to_vec();
        if messages.is_empty() {
            return 0;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                    "body": m.body(), "attributes": {}, "eventSource": "aws:sqs",
                    "eventSourceARN": infra::outbound::queue_arn(queue),
                })
            })
            .collect();
        let answer = self.deliver.handle(json!({ "Records": records })).await;
        let failed: Vec<&str> = answer["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap())
            .collect();
        for m in &messages {
            if !failed.contains(&m.message_id().unwrap()) {
                self.sqs
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        messages.len()
    }

    /// Deletes what waits in the queue (retries a test is not about).
    async fn discard(&self) {
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.queue)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            if got.messages().is_empty() {
                return;
            }
            for m in got.messages() {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    async fn attempts(&self, id: &str, query: &str) -> Vec<Value> {
        let (status, body) = self
            .admin(ApiRequest::get(&format!(
                "/admin/endpoints/{id}/attempts{query}"
            )))
            .await;
        assert_eq!(status, 200, "{body}");
        body["attempts"].as_array().unwrap().clone()
    }

    async fn waiting(&self, queue: &str) -> Vec<Value> {
        let got = self
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        got.messages()
            .iter()
            .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
            .collect()
    }
}

fn loopback() -> Lookup {
    Lookup::System
}

#[tokio::test]
async fn events_reach_every_matching_endpoint_signed_and_a_dead_one_is_retried_alone() {
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (live, live_secret) = w
        .endpoint(json!({"url": rx.url("/ok"), "kinds": ["messages"]}))
        .await;
    let (dead, dead_secret) = w
        .endpoint(json!({"url": rx.url("/dead"), "kinds": ["connection.*", "messages"]}))
        .await;
    let (other, _) = w
        .endpoint(json!({"url": rx.url("/ok-comments"), "kinds": ["comments"]}))
        .await;
    let (_, _) = w
        .endpoint(json!({"url": rx.url("/ok-elsewhere"), "accounts": ["999"]}))
        .await;

    w.publish(bus_event("mid.1", "messages", "1784")).await;
    assert_eq!(w.pump().await, 1, "the bus event fans out...");
    assert_eq!(w.pump().await, 2, "...to one attempt per matching endpoint");

    // The live endpoint got it once, signed so that the official library
    // accepts it; the body is the contract's.
    let got = rx.got("/ok");
    assert_eq!(got.len(), 1);
    let now = w.clock.now().unix_timestamp();
    assert!(verifies(&live_secret, &got[0], now));
    assert!(
        !verifies(&dead_secret, &got[0], now),
        "another endpoint's secret does not verify"
    );
    let h = &got[0].headers;
    assert_eq!(h["webhook-id"], "mid.1");
    assert_eq!(h["webhook-timestamp"], now.to_string());
    assert!(h["user-agent"].starts_with("ig-connect"));
    assert_eq!(h["content-type"], "application/json");
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["type"], "messages");
    assert_eq!(body["timestamp"], "2026-11-21T11:59:59.120Z");
    assert_eq!(body["data"]["account_id"], "1784");
    assert_eq!(body["data"]["payload"]["message"]["text"], "hi");
    assert!(rx.got("/ok-comments").is_empty() && rx.got("/ok-elsewhere").is_empty());
    assert!(w.attempts(&other, "").await.is_empty());

    // The dead endpoint failed; its retry waits in the queue, due in 5 s.
    assert_eq!(rx.got("/dead").len(), 1);
    let a = w.attempts(&dead, "").await;
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0]["outcome"].as_str(), a[0]["status"].as_u64()),
        (Some("failed"), Some(500))
    );
    assert_eq!(a[0]["error"], "http_status");
    assert_eq!(a[0]["next_attempt_at"], "2026-11-21T12:00:05Z");
    let ok = w.attempts(&live, "").await;
    assert_eq!(
        (ok[0]["outcome"].as_str(), ok[0]["error"].clone()),
        (Some("delivered"), Value::Null)
    );

    // The retry waits in the queue: attempt 2, due 5 s after the first.
    let waiting = w.waiting(&w.queue).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0]["endpoint_id"], dead.as_str());
    assert_eq!(waiting[0]["attempt"], 2);
    assert_eq!(waiting[0]["due_at"], TEST_EPOCH.unix_timestamp() + 5);
    // Due: the same id and body, a fresh timestamp, still verifiable.
    w.clock.advance(Duration::seconds(5));
    assert_eq!(w.pump().await, 1);
    let again = rx.got("/dead");
    assert_eq!(again.len(), 2);
    assert_eq!(again[1].headers["webhook-id"], "mid.1");
    assert_eq!(again[1].body, again[0].body);
    assert!(verifies(&dead_secret, &again[1], now + 5));
    let a = w.attempts(&dead, "").await;
    assert_eq!(
        a.iter()
            .map(|x| x["attempt"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 1],
        "newest first"
    );
    assert_eq!(a[0]["next_attempt_at"], "2026-11-21T12:05:05Z");
    let page = w.attempts(&dead, "?limit=1&outcome=failed").await;
    assert_eq!(page.len(), 1);
    assert_eq!(
        rx.got("/ok").len(),
        1,
        "the live endpoint is not sent anything again"
    );

    // No secret or signature in any log line.
    let logs = integration_tests::logs();
    for secret in [&live_secret, &dead_secret] {
        assert!(!logs.contains(secret.trim_start_matches("whsec_")));
    }
    let sig = &got[0].headers["webhook-signature"];
    assert!(!logs.contains(sig.trim_start_matches("v1,")));
}

#[tokio::test]
async fn retry_after_timeouts_and_redirects_are_failed_attempts_each_on_its_own() {
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (busy, _) = w.endpoint(json!({"url": rx.url("/busy")})).await;
    let (slow, _) = w.endpoint(json!({"url": rx.url("/slow")})).await;
    let (redirect, _) = w.endpoint(json!({"url": rx.url("/redirect")})).await;
    let (live, _) = w.endpoint(json!({"url": rx.url("/ok")})).await;
    w.publish(bus_event("mid.7", "comments", "1784")).await;
    assert_eq!(w.pump().await, 1);
    assert_eq!(w.pump().await, 4, "the four attempts run in one batch");

    let b = w.attempts(&busy, "").await.remove(0);
    assert_eq!(
        (b["status"].as_u64(), b["error"].as_str()),
        (Some(429), Some("http_status"))
    );
    assert_eq!(
        b["next_attempt_at"], "2026-11-21T12:02:00Z",
        "Retry-After: 120, not 5 s"
    );
    let r = w.attempts(&redirect, "").await.remove(0);
    assert_eq!(
        (r["status"].as_u64(), r["error"].as_str()),
        (Some(302), Some("http_status"))
    );
    assert!(
        rx.got("/ok-target").is_empty(),
        "the redirect is not followed"
    );
    let l = w.attempts(&live, "").await.remove(0);
    assert_eq!(
        l["outcome"], "delivered",
        "the slow endpoint delays no other"
    );
    assert_eq!(
        w.waiting(&w.queue).await.len(),
        2,
        "two retries wait in the fast lane"
    );

    // The unanswered one went to the slow lane, which waits the full
    // timeout, records it, and keeps its retry.
    assert!(w.attempts(&slow, "").await.is_empty(), "not an attempt yet");
    assert_eq!(w.pump_slow().await, 1);
    let s = w.attempts(&slow, "").await.remove(0);
    assert_eq!(
        (
            s["attempt"].as_u64(),
            s["status"].clone(),
            s["error"].as_str()
        ),
        (Some(1), Value::Null, Some("timeout"))
    );
    assert_eq!(s["next_attempt_at"], "2026-11-21T12:00:05Z");
    let retry = w.waiting(&w.slow_queue).await;
    assert_eq!(retry.len(), 1, "the retry waits in the slow lane");
    assert_eq!(retry[0]["attempt"], 2);
}

#[tokio::test]
async fn a_slow_endpoint_is_served_from_the_slow_lane_and_holds_up_no_batch() {
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (quick, _) = w.endpoint(json!({"url": rx.url("/ok-quick")})).await;
    let (held, secret) = w.endpoint(json!({"url": rx.url("/held")})).await;
    w.publish(bus_event("mid.21", "messages", "1784")).await;
    assert_eq!(w.pump().await, 1, "fanned out, both in the fast lane");
    assert_eq!(w.pump().await, 2);

    // The batch ended while /held still holds its request.
    assert_eq!(rx.got("/held").len(), 1, "it was sent once");
    assert_eq!(w.attempts(&quick, "").await[0]["outcome"], "delivered");
    assert!(w.attempts(&held, "").await.is_empty(), "not a failure");
    let handed = w.waiting(&w.slow_queue).await;
    assert_eq!(handed.len(), 1, "handed to the slow lane");
    assert_eq!(
        (
            handed[0]["endpoint_id"].as_str(),
            handed[0]["attempt"].as_u64()
        ),
        (Some(held.as_str()), Some(1))
    );
    assert!(w.waiting(&w.queue).await.is_empty());

    // Marked slow: its next attempt goes to the slow lane directly.
    w.publish(bus_event("mid.22", "messages", "1784")).await;
    assert_eq!(w.pump().await, 1);
    let fast = w.waiting(&w.queue).await;
    assert_eq!(fast.len(), 1);
    assert_eq!(fast[0]["endpoint_id"], quick.as_str());
    assert_eq!(w.waiting(&w.slow_queue).await.len(), 2);

    // It answers promptly again: both delivered from the slow lane.
    rx.open_gate();
    while w.pump_slow().await > 0 {}
    let done = w.attempts(&held, "").await;
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|a| a["outcome"] == "delivered"), "{done:?}");
    let got = rx.got("/held");
    let ids: Vec<&str> = got
        .iter()
        .map(|c| c.headers["webhook-id"].as_str())
        .collect();
    assert_eq!(
        ids.iter().filter(|i| **i == "mid.21").count(),
        2,
        "the request the fast lane gave up on, and the slow lane's: the same webhook-id"
    );
    let now = TEST_EPOCH.unix_timestamp();
    assert!(got.iter().all(|c| verifies(&secret, c, now)));

    // Within its 10 minutes in the slow lane, quick answers keep it there;
    // after them, the first quick answer brings it back.
    w.discard().await;
    w.clock.advance(Duration::minutes(10));
    w.publish(bus_event("mid.23", "messages", "1784")).await;
    assert_eq!(w.pump().await, 1);
    assert_eq!(w.waiting(&w.slow_queue).await.len(), 1, "still slow");
    assert_eq!(w.pump_slow().await, 1);
    w.discard().await;
    w.publish(bus_event("mid.24", "messages", "1784")).await;
    assert_eq!(w.pump().await, 1);
    assert_eq!(w.waiting(&w.queue).await.len(), 2, "both in the fast lane");
    assert!(w.waiting(&w.slow_queue).await.is_empty());
}

#[tokio::test]
async fn after_72_hours_a_delivery_goes_to_the_dead_letter_queue() {
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (dead, _) = w.endpoint(json!({"url": rx.url("/dead")})).await;
    let now = TEST_EPOCH.unix_timestamp();
    let at = json!({"S": "2026-11-18T12:00:00.000Z"});
    w.store_event(
        &json!({"event_id": {"S": "mid.9"}, "kind": {"S": "messages"},
        "account_id": {"S": "1"}, "occurred_at": at, "received_at": at, "payload": {"S": "{}"}}),
    )
    .await;
    let tenth = json!({"endpoint_id": dead, "event_id": "mid.9", "attempt": 10,
        "first_attempt_at": now - 63 * 3600 - 35 * 60, "due_at": now});
    w.publish(tenth.to_string()).await;
    assert_eq!(w.pump().await, 1);
    let a = w.attempts(&dead, "?event_id=mid.9").await;
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0]["next_attempt_at"],
        Value::Null,
        "no attempt after 72 hours"
    );
    let dead_letters = w.waiting(&w.dead_letters).await;
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0]["event_id"], "mid.9");
    assert!(dead_letters[0].get("event").is_none(), "never the payload");
    assert!(w.waiting(&w.queue).await.is_empty());
}

#[tokio::test]
async fn an_event_deleted_before_its_attempt_is_not_delivered() {
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (id, _) = w.endpoint(json!({"url": rx.url("/ok")})).await;
    w.publish(bus_event("mid.13", "messages", "1784")).await;
    assert_eq!(w.pump().await, 1, "fanned out");
    let queued = w.waiting(&w.queue).await;
    assert_eq!(queued.len(), 1);
    assert!(queued[0].get("event").is_none() && !queued[0].to_string().contains("text"));
    // Data deletion (or retention) removes the event while the attempt waits.
    let table = w.stack.var("EVENTS_TABLE");
    let key = AttributeValue::S("mid.13".into());
    let del = w.stack.dynamodb.delete_item().table_name(table);
    del.key("event_id", key).send().await.unwrap();
    assert_eq!(w.pump().await, 1, "the attempt");
    assert!(rx.got("/ok").is_empty());
    assert!(w.attempts(&id, "").await.is_empty());
    assert!(w.waiting(&w.queue).await.is_empty(), "no retry either");
}

/// Accepts connections on 127.0.0.1 and counts them.
async fn counting_listener() -> (u16, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(Mutex::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            *seen.lock().unwrap() += 1;
        }
    });
    (port, count)
}

#[tokio::test]
async fn internal_addresses_are_refused_without_connecting() {
    let (port, connections) = counting_listener().await;
    let hosts: HashMap<String, Vec<std::net::IpAddr>> = [
        ("loop.example", "127.0.0.1"),
        ("metadata.example", "169.254.169.254"),
        ("mapped.example", "::ffff:127.0.0.1"),
        ("private.example", "10.0.0.1"),
        ("cgnat.example", "100.64.0.1"),
        ("ula.example", "fd00:ec2::254"),
    ]
    .into_iter()
    .map(|(h, ip)| (h.to_string(), vec![ip.parse().unwrap()]))
    .collect();
    let names: Vec<String> = hosts.keys().cloned().collect();
    let w = world(false, Lookup::Table(Arc::new(hosts))).await;
    let (status, body) = w
        .admin(
            ApiRequest::post("/admin/endpoints")
                .json(&json!({"url": format!("http://127.0.0.1:{port}/")})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_url")),
        "no loopback allowance"
    );
    let mut ids = Vec::new();
    for host in &names {
        ids.push(
            w.endpoint(json!({"url": format!("https://{host}:{port}/hook")}))
                .await
                .0,
        );
    }
    w.publish(bus_event("mid.3", "messages", "1784")).await;
    assert_eq!(w.pump().await, 1);
    assert_eq!(w.pump().await, names.len());
    for (id, host) in ids.iter().zip(&names) {
        let a = w.attempts(id, "").await;
        assert_eq!(a[0]["error"], "refused_address", "{host}");
    }
    assert_eq!(*connections.lock().unwrap(), 0, "nothing was connected to");
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_old_one_for_24_hours() {
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (id, old) = w
        .endpoint(json!({"url": rx.url("/ok"), "description": "main"}))
        .await;
    let (status, rotated) = w
        .admin(ApiRequest::post(&format!(
            "/admin/endpoints/{id}/rotate-secret"
        )))
        .await;
    assert_eq!(status, 200);
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert!(new.starts_with("whsec_") && new != old);

    w.publish(bus_event("mid.4", "messages", "1784")).await;
    w.pump().await;
    w.pump().await;
    let got = rx.got("/ok");
    let now = w.clock.now().unix_timestamp();
    assert_eq!(got[0].headers["webhook-signature"].split(' ').count(), 2);
    assert!(verifies(&new, &got[0], now) && verifies(&old, &got[0], now));

    w.clock.advance(Duration::hours(24));
    w.publish(bus_event("mid.5", "messages", "1784")).await;
    w.pump().await;
    w.pump().await;
    let got = rx.got("/ok");
    let now = w.clock.now().unix_timestamp();
    assert_eq!(got[1].headers["webhook-signature"].split(' ').count(), 1);
    assert!(verifies(&new, &got[1], now));
    assert!(
        !verifies(&old, &got[1], now),
        "the old secret no longer signs"
    );

    // Secrets appear in the create and rotate answers only.
    let (_, one) = w
        .admin(ApiRequest::get(&format!("/admin/endpoints/{id}")))
        .await;
    let (_, all) = w.admin(ApiRequest::get("/admin/endpoints")).await;
    for text in [one.to_string(), all.to_string(), integration_tests::logs()] {
        assert!(!text.contains(new.trim_start_matches("whsec_")));
        assert!(!text.contains(old.trim_start_matches("whsec_")));
    }
    assert_eq!(one["description"], "main");
    assert!(one.get("secret").is_none());
}

impl World {
    fn store(&self) -> shared::outbound::store::EndpointStore {
        let config = AdminConfig::from_env(EnvReader::from_map(self.stack.env.clone()));
        config
            .expect("admin config")
            .outbound
            .store(&self.stack.dynamodb)
    }
}

#[tokio::test]
async fn a_patch_read_before_a_rotation_does_not_undo_it() {
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (id, old) = w.endpoint(json!({"url": rx.url("/ok")})).await;
    let store = w.store();
    // A PATCH reads the endpoint, a rotation lands, then the PATCH writes.
    let mut read_by_patch = store.get(&id).await.unwrap().unwrap();
    let path = format!("/admin/endpoints/{id}/rotate-secret");
    let (status, rotated) = w.admin(ApiRequest::post(&path)).await;
    assert_eq!(status, 200);
    let new = rotated["secret"].as_str().unwrap().to_string();
    read_by_patch.description = "patched".into();
    assert!(store.save_settings(&read_by_patch, false).await.unwrap());
    // A second rotation from the same stale read is refused, not applied.
    let stale = read_by_patch.secret.clone();
    let until = w.clock.now() + Duration::hours(24);
    let again = store.rotate_secret(&read_by_patch, &stale, until, w.clock.now());
    assert!(!again.await.unwrap());

    w.publish(bus_event("mid.6", "messages", "1784")).await;
    w.pump().await;
    w.pump().await;
    let got = rx.got("/ok");
    let now = w.clock.now().unix_timestamp();
    assert_eq!(got.len(), 1);
    assert!(verifies(&new, &got[0], now), "the rotated secret signs");
    assert!(verifies(&old, &got[0], now), "the old one beside it");
    let (_, e) = w
        .admin(ApiRequest::get(&format!("/admin/endpoints/{id}")))
        .await;
    assert_eq!(e["description"], "patched");
}

#[tokio::test]
async fn an_attempt_for_an_event_the_endpoint_no_longer_takes_is_dropped() {
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (id, _) = w
        .endpoint(json!({"url": rx.url("/ok"), "kinds": ["messages"]}))
        .await;
    w.publish(bus_event("mid.7", "messages", "1784")).await;
    w.publish(bus_event("mid.8", "messages", "1785")).await;
    assert_eq!(w.pump().await, 2, "both fanned out to the endpoint");
    // Narrowed before the attempts run: one to another kind, then an account.
    let path = format!("/admin/endpoints/{id}");
    let narrowed = json!({"kinds": ["comments"]});
    let (status, _) = w
        .admin(ApiRequest::new("PATCH", &path).json(&narrowed))
        .await;
    assert_eq!(status, 200);
    assert_eq!(w.pump().await, 2, "the two attempts");
    assert!(rx.got("/ok").is_empty(), "no kind it takes now");
    assert!(w.attempts(&id, "").await.is_empty());

    w.publish(bus_event("mid.11", "messages", "1784")).await;
    w.publish(bus_event("mid.12", "messages", "1785")).await;
    let (status, _) = w
        .admin(ApiRequest::new("PATCH", &path).json(&json!({"kinds": null})))
        .await;
    assert_eq!(status, 200);
    w.pump().await;
    let only = json!({"accounts": ["1785"]});
    let (status, _) = w.admin(ApiRequest::new("PATCH", &path).json(&only)).await;
    assert_eq!(status, 200);
    w.pump().await;
    let got = rx.got("/ok");
    assert_eq!(got.len(), 1, "only the account it takes now");
    assert_eq!(got[0].headers["webhook-id"], "mid.12");
}

#[tokio::test]
async fn an_endpoint_failing_for_5_days_is_disabled_and_says_so() {
    let capture = shared::metrics::Capture::start();
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (dead, _) = w.endpoint(json!({"url": rx.url("/dead")})).await;
    w.publish(bus_event("mid.10", "messages", "1784")).await;
    w.pump().await;
    w.pump().await;
    let (_, e) = w
        .admin(ApiRequest::get(&format!("/admin/endpoints/{dead}")))
        .await;
    assert_eq!(e["status"], "enabled", "one failure disables nothing");

    // Nearly 5 days of failures: still enabled.
    w.clock.advance(Duration::days(5) - Duration::seconds(1));
    w.discard().await;
    w.publish(bus_event("mid.11", "messages", "1784")).await;
    w.pump().await;
    w.pump().await;
    let (_, e) = w
        .admin(ApiRequest::get(&format!("/admin/endpoints/{dead}")))
        .await;
    assert_eq!(e["status"], "enabled");

    // Five days: disabled, with its reason, an event and a metric.
    w.clock.advance(Duration::seconds(1));
    w.discard().await;
    w.publish(bus_event("mid.12", "messages", "1784")).await;
    w.pump().await;
    w.pump().await;
    let (_, e) = w
        .admin(ApiRequest::get(&format!("/admin/endpoints/{dead}")))
        .await;
    assert_eq!(
        (e["status"].as_str(), e["disabled_reason"].as_str()),
        (Some("disabled"), Some("failing"))
    );
    assert!(capture.total("deliver", "EndpointsDisabled") >= 1.0);
    let stored = w
        .stack
        .dynamodb
        .query()
        .table_name(w.stack.var("EVENTS_TABLE"))
        .index_name("by_account")
        .key_condition_expression("account_id = :a")
        .expression_attribute_values(
            ":a",
            aws_sdk_dynamodb::types::AttributeValue::S(dead.clone()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        stored.items().len(),
        1,
        "webhook_endpoint.disabled was written"
    );

    // Disabled: nothing more is sent to it.
    let sent = rx.got("/dead").len();
    w.discard().await;
    w.publish(bus_event("mid.13", "messages", "1784")).await;
    w.pump().await;
    assert_eq!(w.pump().await, 0, "no attempt for a disabled endpoint");
    assert_eq!(rx.got("/dead").len(), sent);

    // Re-enabled by hand: its failure streak starts afresh.
    let patch = ApiRequest::new("PATCH", &format!("/admin/endpoints/{dead}"))
        .json(&json!({"status": "enabled"}));
    let (status, e) = w.admin(patch).await;
    assert_eq!(
        (status, e["status"].as_str(), e["disabled_reason"].clone()),
        (200, Some("enabled"), Value::Null)
    );
}

#[tokio::test]
async fn the_admin_routes_check_what_they_are_given() {
    let w = world(false, Lookup::System).await;
    let unsigned = w
        .admin
        .handle(ApiRequest::get("/admin/endpoints").into_request())
        .await;
    assert_eq!(unsigned.status(), 403, "no IAM identity, no answer");
    for url in [
        "http://b.example.com/",
        "https://10.0.0.1/",
        "https://localhost/",
        "https://u:p@b.example.com/",
        "https://b.example.com/#x",
    ] {
        let (status, body) = w
            .admin(ApiRequest::post("/admin/endpoints").json(&json!({"url": url})))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_url")),
            "{url}"
        );
    }
    let bad_kinds = json!({"url": "https://b.example.com/", "kinds": ["*"]});
    let (status, body) = w
        .admin(ApiRequest::post("/admin/endpoints").json(&bad_kinds))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_kinds"))
    );

    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            w.endpoint(json!({"url": format!("https://b{i}.example.com/")}))
                .await
                .0,
        );
    }
    let (status, body) = w
        .admin(ApiRequest::post("/admin/endpoints").json(&json!({"url": "https://x.example.com/"})))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("too_many_endpoints"))
    );
    let (status, _) = w
        .admin(ApiRequest::new(
            "DELETE",
            &format!("/admin/endpoints/{}", ids[0]),
        ))
        .await;
    assert_eq!(status, 204);
    let (status, _) = w
        .admin(ApiRequest::new(
            "DELETE",
            &format!("/admin/endpoints/{}", ids[0]),
        ))
        .await;
    assert_eq!(status, 404);
    w.endpoint(json!({"url": "https://x.example.com/"})).await;

    let (status, list) = w.admin(ApiRequest::get("/admin/endpoints")).await;
    assert_eq!(status, 200);
    assert_eq!(list["endpoints"].as_array().unwrap().len(), 20);
    assert!(!list.to_string().contains("whsec_"));
    let (status, _) = w.admin(ApiRequest::get("/admin/endpoints/ep_nope")).await;
    assert_eq!(status, 404);
    let patch = ApiRequest::new("PATCH", &format!("/admin/endpoints/{}", ids[1]))
        .json(&json!({"status": "disabled", "kinds": ["connection.*"]}));
    let (status, e) = w.admin(patch).await;
    assert_eq!(status, 200);
    assert_eq!(
        (e["disabled_reason"].as_str(), e["kinds"][0].as_str()),
        (Some("manual"), Some("connection.*"))
    );
    let (_, again) = w
        .admin(ApiRequest::get(&format!("/admin/endpoints/{}", ids[1])))
        .await;
    assert_eq!(again, e, "what PATCH answered is what is stored");
}

/// The README's receiver answers 413 at once to a `content-length` over
/// 1 MiB, without reading (and waiting for) the body.
async fn refuses_a_body_over_1_mib(port: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let head = "POST /ig-events HTTP/1.1\r\nhost: x\r\ncontent-length: 2097152\r\n\r\n{}";
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = [0u8; 12];
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_exact(&mut answer),
    );
    assert!(
        read.await.is_ok(),
        "it answered without waiting for the body"
    );
    assert_eq!(&answer, b"HTTP/1.0 413");
}

#[tokio::test]
async fn the_readmes_receiver_verifies_deliveries_with_the_official_library() {
    use tokio::io::AsyncBufReadExt;
    let root = infra::template::template_path()
        .parent()
        .unwrap()
        .to_path_buf();
    let script = root.join("examples/receiver/receiver.py");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let code = std::fs::read_to_string(&script).unwrap();
    assert!(
        readme.contains(&code),
        "README.md shows examples/receiver/receiver.py as it is"
    );

    // A real receiver checks the timestamp against its own clock: this
    // world's fixed clock starts at the receiver's now.
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let w = world_at(true, loopback(), Clock::fixed(now)).await;
    let (id, secret) = w
        .endpoint(json!({"url": "http://127.0.0.1:9/", "kinds": ["messages"]}))
        .await;
    let mut child = tokio::process::Command::new(receiver_python())
        .arg(&script)
        .env("WEBHOOK_SECRET", &secret)
        .env("PORT", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next_line().await.unwrap().unwrap();
    let port = ready.strip_prefix("listening on ").unwrap();
    let patch = ApiRequest::new("PATCH", &format!("/admin/endpoints/{id}"))
        .json(&json!({"url": format!("http://127.0.0.1:{port}/ig-events")}));
    assert_eq!(w.admin(patch).await.0, 200);

    w.publish(bus_event("mid.20", "messages", "1784")).await;
    w.pump().await;
    w.pump().await;
    let printed = lines.next_line().await.unwrap().unwrap();
    assert_eq!(printed, "messages 1784 2026-11-21T11:59:59.120Z");
    let a = w.attempts(&id, "").await;
    assert_eq!(
        (a[0]["outcome"].as_str(), a[0]["status"].as_u64()),
        (Some("delivered"), Some(204))
    );
    refuses_a_body_over_1_mib(port).await;
}

#[tokio::test]
async fn a_replay_redelivers_stored_events_with_their_original_ids() {
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (live, secret) = w.endpoint(json!({"url": rx.url("/ok")})).await;
    w.endpoint(json!({"url": rx.url("/ok-other"), "kinds": ["messages"]}))
        .await;
    let events =
        shared::store::EventStore::new(w.stack.dynamodb.clone(), w.stack.var("EVENTS_TABLE"));
    for (id, kind, account, ago) in [
        ("e1", "messages", "1784", Duration::hours(2)),
        ("e2", "comments", "1784", Duration::hours(1)),
        ("e3", "messages", "1784", Duration::days(3)),
        ("e4", "messages", "999", Duration::minutes(30)),
    ] {
        let at = TEST_EPOCH - ago;
        let event = shared::store::Event {
            event_id: id.into(),
            kind: shared::event_kind::EventKind::parse(kind),
            provider: Some(shared::Provider::Instagram),
            account_id: account.into(),
            user_id: Some("user-1".into()),
            occurred_at: at,
            received_at: at,
            payload: r#"{"n": 1}"#.into(),
            expires_at: at + Duration::days(14),
        };
        assert!(events.put(&event).await.unwrap());
    }
    let range = json!({"since": "2026-11-20T12:00:00Z", "until": "2026-11-21T12:00:00Z"});
    let mut ask = range.clone();
    ask["dry_run"] = json!(true);
    let (status, counted) = w.admin(ApiRequest::post("/admin/replays").json(&ask)).await;
    assert_eq!(
        (status, counted["events"].as_u64()),
        (202, Some(3)),
        "e1, e2, e4"
    );
    assert_eq!(counted["replay_id"], Value::Null);
    assert_eq!(w.pump().await, 0, "a dry run only counts");

    let mut ask = range.clone();
    ask["endpoint_id"] = json!(live);
    ask["account_id"] = json!("1784");
    let (status, started) = w.admin(ApiRequest::post("/admin/replays").json(&ask)).await;
    assert_eq!((status, started["events"].as_u64()), (202, Some(2)));
    let replay = started["replay_id"].as_str().unwrap().to_string();
    assert_eq!(w.pump().await, 1, "the job's page");
    assert_eq!(
        w.pump().await,
        2,
        "one attempt per event, to that endpoint only"
    );
    let got = rx.got("/ok");
    let mut ids: Vec<&str> = got
        .iter()
        .map(|c| c.headers["webhook-id"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["e1", "e2"], "the original webhook-ids");
    assert!(got
        .iter()
        .all(|c| verifies(&secret, c, w.clock.now().unix_timestamp())));
    assert!(rx.got("/ok-other").is_empty());
    let (status, job) = w
        .admin(ApiRequest::get(&format!("/admin/replays/{replay}")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        job,
        json!({"replay_id": replay, "status": "complete", "events": 2, "enqueued": 2})
    );

    let too_old = json!({"since": "2026-11-01T12:00:00Z", "until": "2026-11-21T12:00:00Z"});
    let (status, body) = w
        .admin(ApiRequest::post("/admin/replays").json(&too_old))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_range"))
    );
    let mut unknown = range.clone();
    unknown["endpoint_id"] = json!("ep_nope");
    assert_eq!(
        w.admin(ApiRequest::post("/admin/replays").json(&unknown))
            .await
            .0,
        404
    );
    assert_eq!(
        w.admin(ApiRequest::get("/admin/replays/rp_nope")).await.0,
        404
    );
}

#[tokio::test]
async fn a_replay_resumes_page_by_page_and_a_duplicate_message_changes_nothing() {
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (live, _) = w.endpoint(json!({"url": rx.url("/ok")})).await;
    let events =
        shared::store::EventStore::new(w.stack.dynamodb.clone(), w.stack.var("EVENTS_TABLE"));
    let stored: Vec<shared::store::Event> = (0..130)
        .map(|i| shared::store::Event {
            event_id: format!("e{i:03}"),
            kind: shared::event_kind::EventKind::Webhook("messages".into()),
            provider: Some(shared::Provider::Instagram),
            account_id: "1784".into(),
            user_id: None,
            occurred_at: TEST_EPOCH - Duration::minutes(i + 1),
            received_at: TEST_EPOCH,
            payload: "{}".into(),
            expires_at: TEST_EPOCH + Duration::days(14),
        })
        .collect();
    assert_eq!(events.put_all(&stored, 8).await.unwrap(), 130);
    let ask = json!({"endpoint_id": live, "since": "2026-11-21T00:00:00Z", "until": "2026-11-21T12:00:00Z"});
    let (status, started) = w.admin(ApiRequest::post("/admin/replays").json(&ask)).await;
    assert_eq!((status, started["events"].as_u64()), (202, Some(130)));
    let replay = started["replay_id"].as_str().unwrap().to_string();
    // SQS may hand the job's message over twice.
    w.publish(json!({ "replay_id": replay }).to_string()).await;
    while w.pump().await > 0 {}
    let (_, job) = w
        .admin(ApiRequest::get(&format!("/admin/replays/{replay}")))
        .await;
    assert_eq!(
        job,
        json!({"replay_id": replay, "status": "complete", "events": 130, "enqueued": 130})
    );
    let mut ids: Vec<String> = rx
        .got("/ok")
        .iter()
        .map(|c| c.headers["webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), 130, "the duplicate message enqueued nothing");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 130, "every stored event");
}

#[tokio::test]
async fn a_replay_the_queue_refused_is_withdrawn_and_a_retry_makes_the_only_job() {
    let rx = Receiver::start().await;
    let w = world(true, loopback()).await;
    let (live, _) = w.endpoint(json!({"url": rx.url("/ok")})).await;
    let stored_jobs = || async {
        let out = (w.stack.dynamodb.query())
            .table_name(w.stack.var("ENDPOINTS_TABLE"))
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", AttributeValue::S("replay".into()))
            .send()
            .await
            .unwrap();
        out.items().len()
    };
    // The delivery queue gone: SendMessage fails.
    let name = w.queue.rsplit('/').next().unwrap().to_string();
    w.sqs
        .delete_queue()
        .queue_url(&w.queue)
        .send()
        .await
        .unwrap();
    let ask = json!({"endpoint_id": live, "since": "2026-11-21T00:00:00Z", "until": "2026-11-21T12:00:00Z"});
    let (status, body) = w.admin(ApiRequest::post("/admin/replays").json(&ask)).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")));
    assert_eq!(stored_jobs().await, 0, "nothing left behind");

    let again = w.sqs.create_queue().queue_name(&name).send().await.unwrap();
    assert_eq!(again.queue_url(), Some(w.queue.as_str()));
    let (status, started) = w.admin(ApiRequest::post("/admin/replays").json(&ask)).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(stored_jobs().await, 1);
    assert_eq!(w.pump().await, 1, "the job's page");

    // A job withdrawn while `deliver` was reading it is not written back.
    let store = shared::outbound::store::EndpointStore::new(
        w.stack.dynamodb.clone(),
        w.stack.var("ENDPOINTS_TABLE"),
    );
    let replay = started["replay_id"].as_str().unwrap();
    let (_, view) = w
        .admin(ApiRequest::get(&format!("/admin/replays/{replay}")))
        .await;
    assert_eq!(view["status"], "complete");
    assert!(
        !store.withdraw_replay(replay).await.unwrap(),
        "a finished job stays"
    );
    let mut job = store.replay(replay).await.unwrap().unwrap();
    // As it was stored, before its first page.
    (job.id, job.cursor, job.complete, job.enqueued) = ("rp_withdrawn".into(), None, false, 0);
    store.put_replay(&job, TEST_EPOCH).await.unwrap();
    assert!(store.withdraw_replay(&job.id).await.unwrap());
    assert!(!store.advance_replay(&job, None, 0).await.unwrap());
    assert_eq!(stored_jobs().await, 1);
}
