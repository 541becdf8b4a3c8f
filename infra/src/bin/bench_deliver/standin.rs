//! The stand-in for DynamoDB and SQS as far as `deliver` uses them,
//! answering at once: endpoints read from moto once (the slow marks kept
//! here and put on them), events seeded, writes acknowledged, messages held
//! for their `DelaySeconds` in the fast or the slow lane's queue.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

const FORWARDED: [&str; 3] = ["x-amz-target", "content-type", "authorization"];

/// The stand-in's queue: bodies, each visible from an instant.
#[derive(Default)]
pub struct Queue(pub Mutex<VecDeque<(Instant, String)>>);

impl Queue {
    pub fn push(&self, body: String, delay: Duration) {
        let at = Instant::now() + delay;
        self.0.lock().unwrap().push_back((at, body));
    }

    /// Up to `batch` visible messages, oldest first, as Lambda would get
    /// them.
    pub fn take(&self, batch: usize) -> Vec<String> {
        let now = Instant::now();
        let mut q = self.0.lock().unwrap();
        let mut out = Vec::new();
        q.retain(|(at, body)| {
            let take = *at <= now && out.len() < batch;
            if take {
                out.push(body.clone());
            }
            !take
        });
        out
    }
}

/// DynamoDB and SQS as far as `deliver` uses them, answering at once.
pub struct Store {
    pub queue: Queue,
    /// The slow lane's queue.
    pub slow: Queue,
    /// The endpoints marked slow (`slow_since`).
    pub slow_marks: Mutex<HashSet<String>>,
    /// Items by table and key (seeded events).
    pub items: Mutex<HashMap<String, Value>>,
    /// Reads answered by moto, by request (endpoints, the endpoint list).
    pub reads: Mutex<HashMap<String, Bytes>>,
    pub moto: String,
    pub http: reqwest::Client,
}

pub fn item_key(table: &str, key: &Value) -> String {
    let key = key.as_object().into_iter().flatten();
    let sorted: BTreeMap<&String, String> = key.map(|(k, v)| (k, v.to_string())).collect();
    format!("{table}|{sorted:?}")
}

fn aws_json(status: u16, body: impl Into<Bytes>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = [("content-type", "application/x-amz-json-1.0")];
    (status, content_type, body.into()).into_response()
}

impl Store {
    pub async fn serve(self: Arc<Self>, headers: HeaderMap, body: Bytes) -> Response {
        let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
        let target = target.unwrap_or_default().to_string();
        let req: Value = serde_json::from_slice(&body).unwrap_or_default();
        let op = target.rsplit('.').next().unwrap_or_default();
        match op {
            "GetItem" | "Query" => {
                let key = item_key(req["TableName"].as_str().unwrap_or(""), &req["Key"]);
                let seeded = self.items.lock().unwrap().get(&key).cloned();
                match seeded {
                    Some(item) => aws_json(200, json!({ "Item": item }).to_string()),
                    None => self.read_through(&target, &headers, body).await,
                }
            }
            "PutItem" => aws_json(200, "{}"),
            "UpdateItem" => self.update(&req),
            "SendMessageBatch" => self.enqueue(&req),
            _ => panic!("the stand-in does not answer {target}"),
        }
    }

    /// Acknowledges an update; keeps the endpoints' slow marks, which the
    /// endpoints' reads then carry.
    fn update(&self, req: &Value) -> Response {
        let expression = req["UpdateExpression"].as_str().unwrap_or_default();
        let id = req["Key"]["sk"]["S"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut slow = self.slow_marks.lock().unwrap();
        if expression.contains("SET slow_since") {
            slow.insert(id);
        } else if expression.contains("REMOVE slow_since") {
            slow.remove(&id);
        }
        aws_json(200, "{}")
    }

    /// A read's answer with the slow marks on the endpoints it holds.
    fn marked(&self, bytes: Bytes) -> Bytes {
        let slow = self.slow_marks.lock().unwrap();
        if slow.is_empty() {
            return bytes;
        }
        let mut answer: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let items = match answer.get_mut("Items") {
            Some(Value::Array(items)) => items.iter_mut().collect(),
            _ => answer.get_mut("Item").into_iter().collect::<Vec<_>>(),
        };
        for item in items {
            let id = item["sk"]["S"].as_str().unwrap_or_default();
            if slow.contains(id) {
                item["slow_since"] = json!({"N": "1764849600"});
            }
        }
        Bytes::from(answer.to_string())
    }

    fn enqueue(&self, req: &Value) -> Response {
        let mut ok = Vec::new();
        let url = req["QueueUrl"].as_str().unwrap_or_default();
        let queue = if url.ends_with("-slow") {
            &self.slow
        } else {
            &self.queue
        };
        for e in req["Entries"].as_array().into_iter().flatten() {
            let delay = Duration::from_secs(e["DelaySeconds"].as_u64().unwrap_or(0));
            let body = e["MessageBody"].as_str().unwrap_or_default();
            queue.push(body.into(), delay);
            ok.push(json!({"Id": e["Id"], "MessageId": "m", "MD5OfMessageBody": "-"}));
        }
        aws_json(200, json!({ "Successful": ok, "Failed": [] }).to_string())
    }

    /// A read moto answers once; the same request is then served from memory.
    async fn read_through(&self, target: &str, headers: &HeaderMap, body: Bytes) -> Response {
        let cache_key = format!("{target}|{}", String::from_utf8_lossy(&body));
        let cached = self.reads.lock().unwrap().get(&cache_key).cloned();
        if let Some(bytes) = cached {
            return aws_json(200, self.marked(bytes));
        }
        let mut req = self.http.post(&self.moto).body(body);
        let forwarded = headers
            .iter()
            .filter(|(n, _)| FORWARDED.contains(&n.as_str()));
        for (name, v) in forwarded {
            req = req.header(name, v.clone());
        }
        let resp = req.send().await.expect("moto answers");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("moto's body");
        if status == 200 {
            self.reads.lock().unwrap().insert(cache_key, bytes.clone());
        }
        aws_json(status, self.marked(bytes))
    }
}
