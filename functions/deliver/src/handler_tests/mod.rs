//! `deliver` without a server: its tables and queues in memory
//! ([`memory::Memory`], [`memory::MemoryQueues`]), the key service in
//! memory (`shared::vault::fake::FakeDataKeys`), a fixed clock, and each
//! endpoint a receiver on 127.0.0.1 ([`receiver::Receiver`]). Each test
//! calls `Deliver::handle` with the SQS batch Lambda would pass, and checks
//! what a backend or an operator would notice: what was `POST`ed and how it
//! was signed, the attempts recorded, what was queued where and with which
//! delay, the endpoints' health, and the records reported failed. Races,
//! the events table's real pages, KMS and timeouts stay in the integration
//! tests (`tests/tests/outbound.rs`).

mod attempts;
mod fan_out;
mod health;
mod memory;
mod receiver;
mod replays;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use secrecy::SecretString;
use serde_json::{json, Value};
use shared::aws_sdk_dynamodb::types::AttributeValue;
use shared::clock::rfc3339_millis;
use shared::outbound::config::OutboundConfig;
use shared::outbound::endpoint::{Endpoint, EndpointSecretOwner};
use shared::outbound::lane::Bounds;
use shared::outbound::resolver::Lookup;
use shared::outbound::signature::generate_secret;
use shared::time::{Duration, OffsetDateTime};
use shared::vault::fake::FakeDataKeys;
use shared::Clock;
use time::macros::datetime;

use crate::message::AttemptMessage;
use crate::store::EventItem;
use crate::{Deliver, DeliverConfig};
use memory::{Memory, MemoryQueues, Tables};

/// The instant every test's clock shows.
const NOW: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);
const QUEUES: &str = "https://sqs.us-east-1.amazonaws.com/123456789012";
/// The `eventSourceARN`s of the two lanes' records.
const FAST: &str = "arn:aws:sqs:us-east-1:123456789012:deliveries";
const SLOW: &str = "arn:aws:sqs:us-east-1:123456789012:deliveries-slow";
/// The fast lane waits up to 10 s for answers here: a busy test machine is
/// never taken for a slow endpoint.
const PATIENT: Bounds = Bounds {
    min: StdDuration::from_secs(2),
    max: StdDuration::from_secs(10),
};

type Handler = Deliver<FakeDataKeys, Memory, MemoryQueues>;

fn config() -> DeliverConfig {
    DeliverConfig {
        outbound: OutboundConfig {
            endpoints_table: "endpoints".into(),
            endpoint_key_id: "endpoint-key".into(),
            allow_loopback: true,
        },
        events_table: "events".into(),
        event_retention: StdDuration::from_secs(14 * 86_400),
        queue_url: format!("{QUEUES}/deliveries"),
        slow_queue_url: format!("{QUEUES}/deliveries-slow"),
        dead_letter_url: format!("{QUEUES}/deliveries-dead"),
        max_delay: 900,
    }
}

/// The handler over its tables and queues, both kept by the test.
struct World {
    h: Arc<Handler>,
    store: Memory,
    queues: MemoryQueues,
}

fn world() -> World {
    world_with(PATIENT)
}

/// A world whose fast lane waits as `bounds` say.
fn world_with(bounds: Bounds) -> World {
    let (store, queues) = (Memory::default(), MemoryQueues::default());
    let keys = FakeDataKeys::default();
    let clock = Clock::fixed(NOW);
    let h = Deliver::with_store(
        config(),
        store.clone(),
        queues.clone(),
        keys,
        Lookup::System,
        clock,
    )
    .unwrap()
    .with_jitter(|| 0.0)
    .with_patience(bounds);
    World {
        h: Arc::new(h),
        store,
        queues,
    }
}

impl World {
    /// Stores an enabled endpoint created yesterday that takes every event
    /// and posts to `url`, its secret sealed with the handler's key service.
    /// `change` edits it first. The secret, to check signatures with.
    async fn endpoint(&self, id: &str, url: &str, change: fn(&mut Endpoint)) -> SecretString {
        let secret = generate_secret();
        let vault = &self.h.secrets.vault;
        let sealed = vault.seal(&secret, &EndpointSecretOwner(id)).await;
        let mut endpoint = Endpoint {
            id: id.into(),
            url: url.into(),
            kinds: None,
            accounts: None,
            description: String::new(),
            disabled: None,
            created_at: NOW - Duration::days(1),
            updated_at: NOW - Duration::days(1),
            failing_since: None,
            slow_since: None,
            secret: sealed.expect("sealed"),
            previous_secret: None,
        };
        change(&mut endpoint);
        self.store.tables().endpoints.push(endpoint);
        secret
    }

    /// Stores an event of `kind` about `account`, as the events table
    /// holds it.
    fn stored_event(&self, event_id: &str, kind: &str, account: &str) {
        self.store
            .tables()
            .events
            .push(event_item(event_id, kind, account));
    }

    /// Calls the handler with `records`: the message ids it reports failed.
    async fn handle(&self, records: Vec<Value>) -> Vec<String> {
        let answer = self.h.handle(json!({ "Records": records })).await;
        let failures = answer["batchItemFailures"].as_array().expect("a list");
        let ids = failures.iter().map(|f| f["itemIdentifier"].as_str());
        ids.map(|id| id.expect("an id").to_string()).collect()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.store.tables()
    }

    fn sqs(&self) -> std::sync::MutexGuard<'_, memory::Sqs> {
        self.queues.tables()
    }
}

/// A stored event 1 minute old; its id orders replays' scans.
fn event_item(event_id: &str, kind: &str, account: &str) -> EventItem {
    let at = rfc3339_millis(NOW - Duration::minutes(1));
    let s = |v: &str| AttributeValue::S(v.into());
    EventItem::from([
        ("event_id".to_string(), s(event_id)),
        ("kind".to_string(), s(kind)),
        ("provider".to_string(), s("instagram")),
        ("account_id".to_string(), s(account)),
        ("user_id".to_string(), s("user-1")),
        ("occurred_at".to_string(), s(&at)),
        ("received_at".to_string(), s(&at)),
        ("payload".to_string(), s(r#"{"message":{"text":"hi"}}"#)),
        (
            "expires_at".to_string(),
            AttributeValue::N("1800000000".into()),
        ),
    ])
}

/// An SQS record of `body` received from the queue of `arn`.
fn record(id: &str, body: &str, arn: &str) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("receipt-{id}"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    })
}

/// A record of an attempt message received in the lane of `arn`.
fn attempt_record(id: &str, m: &AttemptMessage, arn: &str) -> Value {
    record(id, &serde_json::to_string(m).expect("JSON"), arn)
}

/// The first attempt of `event_id` to `endpoint_id`, due now.
fn first(endpoint_id: &str, event_id: &str) -> AttemptMessage {
    AttemptMessage {
        endpoint_id: endpoint_id.into(),
        event_id: event_id.into(),
        attempt: 1,
        first_attempt_at: None,
        due_at: NOW.unix_timestamp(),
        replay_id: None,
    }
}

/// A new event as the events bus's rule puts it on the delivery queue.
fn bus_event(event_id: &str, kind: &str, account: &str) -> String {
    let image: serde_json::Map<String, Value> = event_item(event_id, kind, account)
        .into_iter()
        .map(|(k, v)| match v {
            AttributeValue::S(s) => (k, json!({ "S": s })),
            AttributeValue::N(n) => (k, json!({ "N": n })),
            _ => (k, Value::Null),
        })
        .collect();
    json!({
        "version": "0", "id": "b1", "source": "ig-connect", "detail-type": kind,
        "account": "123456789012", "time": "2026-11-21T12:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": {"eventName": "INSERT", "eventSource": "aws:dynamodb",
            "dynamodb": {"NewImage": image}}
    })
    .to_string()
}
