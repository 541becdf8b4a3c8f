//! A local Lambda Runtime API (the interface `lambda_runtime` polls in AWS):
//! enough to run a function's real `serve()` loop in-process and invoke it
//! with events, as Lambda would, and as strict as Lambda about answers (one
//! per invocation id it handed out, at most 6 MB). Used by the tests that
//! look at what the runtime itself logs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::Notify;

/// What a function answered to one invocation.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Response(Value),
    Error(Value),
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<(String, Value)>,
    /// Ids handed to the runtime and not answered yet: Lambda takes one
    /// answer per invocation, and none for an id it never gave.
    in_flight: HashSet<String>,
    outcomes: HashMap<String, Outcome>,
    /// Answers Lambda would have refused (unknown id, a second answer).
    refused: usize,
    /// What each invocation is given before its deadline (300 s unless set).
    time_left: Option<Duration>,
    polls: usize,
    next_id: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Notify,
}

/// A Runtime API on `127.0.0.1`, serving one function.
#[derive(Clone)]
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

const BASE: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        });
        let app = Router::new()
            .route(&format!("{BASE}/invocation/next"), get(next))
            .route(&format!("{BASE}/invocation/{{id}}/response"), post(respond))
            .route(&format!("{BASE}/invocation/{{id}}/error"), post(fail))
            .route(&format!("{BASE}/init/error"), post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the runtime API on loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("runtime API serves");
        });
        Self { addr, shared }
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` that points a runtime here.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Waits until a runtime has asked for its first event (so it has read
    /// its environment and another one may be started).
    pub async fn wait_for_runtime(&self) {
        self.wait(|i| i.polls > 0).await;
    }

    /// Gives the next invocations `time_left` before their deadline (zero:
    /// out of time from the start, as a job's last seconds are).
    pub fn set_time_left(&self, time_left: Duration) {
        self.shared.inner.lock().unwrap().time_left = Some(time_left);
    }

    /// Answers the runtime sent that Lambda would have refused (an id it
    /// never handed out, a second answer to one invocation, over 6 MB).
    pub fn refused(&self) -> usize {
        self.shared.inner.lock().unwrap().refused
    }

    /// Invokes the function with `event` and waits for its answer.
    pub async fn invoke(&self, event: Value) -> Outcome {
        let id = {
            let mut i = self.shared.inner.lock().unwrap();
            i.next_id += 1;
            let id = format!("req-{}", i.next_id);
            i.queue.push_back((id.clone(), event));
            id
        };
        self.shared.changed.notify_waiters();
        self.wait(|i| i.outcomes.contains_key(&id)).await;
        let i = self.shared.inner.lock().unwrap();
        i.outcomes[&id].clone()
    }

    async fn wait(&self, ready: impl Fn(&Inner) -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let notified = self.shared.changed.notified();
                if ready(&self.shared.inner.lock().unwrap()) {
                    return;
                }
                notified.await;
            }
        })
        .await;
        waited.expect("the function answered within 60 s");
    }
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    loop {
        let notified = s.changed.notified();
        {
            let mut i = s.inner.lock().unwrap();
            let first_poll = i.polls == 0;
            i.polls += 1;
            if first_poll {
                s.changed.notify_waiters();
            }
            if let Some((id, event)) = i.queue.pop_front() {
                i.in_flight.insert(id.clone());
                let time_left = i.time_left.unwrap_or(Duration::from_secs(300));
                drop(i);
                s.changed.notify_waiters();
                let deadline_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis()
                    + time_left.as_millis();
                return (
                    [
                        ("lambda-runtime-aws-request-id", id),
                        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                        (
                            "lambda-runtime-invoked-function-arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:local".into(),
                        ),
                        ("lambda-runtime-trace-id", "Root=1-local".into()),
                    ],
                    event.to_string(),
                )
                    .into_response();
            }
        }
        notified.await;
    }
}

/// Lambda's limit on a synchronous invocation's response.
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Takes the answer to invocation `id` as Lambda does: once, for an id it
/// handed out, at most 6 MB; anything else is refused with Lambda's status
/// (and counted, see [`RuntimeApi::refused`]).
fn record(s: &Shared, id: String, size: usize, outcome: Outcome) -> Response {
    let mut i = s.inner.lock().unwrap();
    if !i.in_flight.remove(&id) {
        i.refused += 1;
        let body = r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#;
        return (StatusCode::BAD_REQUEST, body).into_response();
    }
    if size > MAX_RESPONSE_BYTES {
        i.refused += 1;
        let body =
            r#"{"errorMessage":"Response payload too large","errorType":"RequestEntityTooLarge"}"#;
        i.outcomes.insert(
            id,
            Outcome::Error(serde_json::from_str(body).unwrap_or_default()),
        );
        drop(i);
        s.changed.notify_waiters();
        return (StatusCode::PAYLOAD_TOO_LARGE, body).into_response();
    }
    i.outcomes.insert(id, outcome);
    drop(i);
    s.changed.notify_waiters();
    StatusCode::ACCEPTED.into_response()
}

fn json_or_text(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn respond(State(s): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    record(&s, id, body.len(), Outcome::Response(json_or_text(&body)))
}

async fn fail(State(s): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    record(&s, id, body.len(), Outcome::Error(json_or_text(&body)))
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let mut i = s.inner.lock().unwrap();
    i.outcomes
        .insert("init".into(), Outcome::Error(json_or_text(&body)));
    drop(i);
    s.changed.notify_waiters();
    StatusCode::ACCEPTED
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Lambda takes one answer per invocation it handed out: a second
    /// answer, or one for an id it never gave, is refused (400) and counted.
    #[tokio::test]
    async fn one_answer_per_invocation_id_it_handed_out() {
        let api = RuntimeApi::start().await;
        let base = format!("http://{}{BASE}", api.address());
        let invoking = tokio::spawn({
            let api = api.clone();
            async move { api.invoke(json!({"n": 1})).await }
        });
        let http = reqwest::Client::new();
        let next = http
            .get(format!("{base}/invocation/next"))
            .send()
            .await
            .unwrap();
        let id = next.headers()["lambda-runtime-aws-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(next.json::<Value>().await.unwrap(), json!({"n": 1}));
        let answer = |id: String, body: &'static str| {
            let http = http.clone();
            let url = format!("{base}/invocation/{id}/response");
            async move { http.post(url).body(body).send().await.unwrap().status() }
        };
        assert_eq!(answer(id.clone(), r#"{"ok":1}"#).await, 202);
        assert_eq!(answer(id.clone(), r#"{"ok":2}"#).await, 400);
        assert_eq!(answer("req-999".into(), r#"{"ok":3}"#).await, 400);
        assert_eq!(api.refused(), 2);
        assert_eq!(invoking.await.unwrap(), Outcome::Response(json!({"ok": 1})));
    }
}
