//! `deliver`: the outbound webhooks' SQS consumer. A new event from the bus
//! fans out to one attempt message per matching enabled endpoint (each
//! endpoint independent); an attempt message is one signed `POST`, its
//! attempt record, and the next attempt scheduled in the queue (or the
//! dead-letter queue after 72 hours). Attempts of a batch run concurrently;
//! failures are reported per record (`batchItemFailures`).

use std::sync::Arc;

use serde_json::{json, Value};
use shared::config::{event_retention, table};
use shared::meta::ClientError;
use shared::metrics::Metrics;
use shared::outbound::config::OutboundConfig;
use shared::outbound::resolver::{
    delivery_client, delivery_client_timing_out, GuardedResolver, Lookup,
};
use shared::store::EventStore;
use shared::vault::{DataKeys, KmsDataKeys, TokenVault};
use shared::{Clock, EnvReader, FromEnv};

mod attempt;
#[cfg(test)]
mod handler_tests;
mod health;
pub mod message;
mod patience;
pub mod queue;
mod replay;
mod secrets;
pub mod send;
mod store;

use attempt::Source;
pub use health::DISABLED_EVENT_ID_PREFIX;
use message::{read_body, Incoming, OutboundEvent};
use patience::Patience;
pub use queue::{Queue, Queues, SqsQueues};
use shared::outbound::lane::Lane;
pub use store::{DeliverStore, Stores};

#[derive(Clone, Debug)]
pub struct DeliverConfig {
    pub outbound: OutboundConfig,
    pub events_table: String,
    pub event_retention: std::time::Duration,
    /// `DELIVERY_QUEUE_URL`: the fast lane, where events arrive.
    pub queue_url: String,
    /// `DELIVERY_SLOW_QUEUE_URL`: the slow lane (see `shared::outbound::lane`).
    pub slow_queue_url: String,
    /// `DELIVERY_DEAD_LETTER_QUEUE_URL`: where deliveries go after 72 hours.
    pub dead_letter_url: String,
    /// `DELIVERY_MAX_DELAY_SECONDS` (0..=900, default 900).
    pub max_delay: i64,
}

impl FromEnv for DeliverConfig {
    fn read(env: &mut EnvReader) -> Option<Self> {
        Some(Self {
            outbound: OutboundConfig::read(env),
            events_table: table(env, "EVENTS_TABLE"),
            event_retention: event_retention(env),
            queue_url: env.required("DELIVERY_QUEUE_URL"),
            slow_queue_url: env.required("DELIVERY_SLOW_QUEUE_URL"),
            dead_letter_url: env.required("DELIVERY_DEAD_LETTER_QUEUE_URL"),
            max_delay: env.number_or("DELIVERY_MAX_DELAY_SECONDS", 900, 0, 900) as i64,
        })
    }
}

/// Every metric `deliver` writes (namespace `IgConnect`, dimension
/// `function = deliver`).
pub const METRICS: &[&str] = &[
    "Delivered",
    "DeliveryFailed",
    "DeadLettered",
    "HandedToSlowLane",
    "RecordErrors",
    "EndpointsDisabled",
];

/// How one record ended, for the batch's answer and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    FannedOut(usize),
    Delivered,
    Failed,
    DeadLettered,
    /// Not due yet: hidden in the queue until it is (reported as a failure
    /// so SQS keeps it).
    Waiting,
    /// Not due yet, due within 15 minutes: a delayed copy was enqueued.
    Requeued,
    /// No answer within the fast lane's patience, or the endpoint is slow:
    /// the attempt was handed to the slow lane.
    HandedOff,
    /// A page of a replay: this many attempts enqueued.
    Replayed(usize),
    /// Endpoint deleted or disabled, or an unreadable record.
    Dropped,
}

/// The records of a batch being worked, each a task that knows its record's
/// message id, so that a task that panicked fails its own record only.
#[derive(Default)]
struct Running {
    tasks: tokio::task::JoinSet<Result<Outcome, String>>,
    ids: std::collections::HashMap<tokio::task::Id, String>,
}

impl Running {
    fn spawn<F>(&mut self, message_id: String, task: F)
    where
        F: std::future::Future<Output = Result<Outcome, String>> + Send + 'static,
    {
        let handle = self.tasks.spawn(task);
        self.ids.insert(handle.id(), message_id);
    }

    async fn join_all(mut self) -> Vec<(String, Result<Outcome, String>)> {
        let mut out = Vec::new();
        while let Some(joined) = self.tasks.join_next_with_id().await {
            let (task, result) = match joined {
                Ok((task, result)) => (task, result),
                Err(e) => (e.id(), Err(format!("the record's task failed: {e}"))),
            };
            out.push((self.ids.remove(&task).unwrap_or_default(), result));
        }
        out
    }
}

pub struct Deliver<K = KmsDataKeys, S = Stores, Q = SqsQueues> {
    pub(crate) config: DeliverConfig,
    /// The endpoints and events tables.
    pub(crate) store: S,
    pub(crate) secrets: secrets::Secrets<K>,
    pub(crate) queue: Queue<Q>,
    pub(crate) client: reqwest::Client,
    resolver: GuardedResolver,
    pub(crate) clock: Clock,
    /// The retry jitter (random in [-0.2, 0.2]; tests fix it).
    pub(crate) jitter: fn() -> f64,
    /// The fast lane's patience (`lane::Bounds`; tests lengthen it).
    pub(crate) bounds: shared::outbound::lane::Bounds,
}

impl<K: DataKeys + 'static> Deliver<K> {
    /// `lookup` resolves endpoint hosts (`Lookup::System` but in tests).
    pub fn new(
        config: DeliverConfig,
        dynamodb: &shared::aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        keys: K,
        lookup: Lookup,
        clock: Clock,
    ) -> Result<Self, ClientError> {
        let store = Stores {
            endpoints: config.outbound.store(dynamodb),
            events: EventStore::new(dynamodb.clone(), &config.events_table),
            dynamodb: dynamodb.clone(),
        };
        let queues = SqsQueues {
            sqs,
            url: config.queue_url.clone(),
            slow: config.slow_queue_url.clone(),
            dead_letters: config.dead_letter_url.clone(),
        };
        Self::with_store(config, store, queues, keys, lookup, clock)
    }
}

impl<K: DataKeys + 'static, S: DeliverStore + 'static, Q: Queues + 'static> Deliver<K, S, Q> {
    /// The handler over any tables and queues (the unit tests' are in
    /// memory).
    pub fn with_store(
        config: DeliverConfig,
        store: S,
        queues: Q,
        keys: K,
        lookup: Lookup,
        clock: Clock,
    ) -> Result<Self, ClientError> {
        let queue = Queue {
            queues,
            max_delay: config.max_delay,
        };
        let resolver = GuardedResolver::new(lookup, config.outbound.allow_loopback);
        Ok(Self {
            store,
            secrets: secrets::Secrets::new(TokenVault::new(keys)),
            client: delivery_client(resolver.clone())?,
            resolver,
            queue,
            clock,
            jitter: shared::outbound::schedule::random_jitter,
            bounds: shared::outbound::lane::Bounds::STANDARD,
            config,
        })
    }

    /// Times attempts out after `timeout` instead of 15 s (tests).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Result<Self, ClientError> {
        self.client = delivery_client_timing_out(self.resolver.clone(), timeout)?;
        Ok(self)
    }

    /// Fixes the retry jitter (tests).
    pub fn with_jitter(mut self, jitter: fn() -> f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the fast lane's bounds (tests).
    pub fn with_patience(mut self, bounds: shared::outbound::lane::Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// Where a record came from, and the patience of its batch.
    fn source(&self, record: &Value, patience: &Arc<Patience>) -> Source {
        let arn = record["eventSourceARN"].as_str();
        let lane = Lane::of_source(arn, &self.config.slow_queue_url);
        let receipt = record["receiptHandle"].as_str().unwrap_or_default();
        Source {
            receipt: receipt.to_string(),
            lane,
            patience: (lane == Lane::Fast).then(|| patience.clone()),
        }
    }

    /// One SQS batch: `{"batchItemFailures": [{"itemIdentifier": id}, ...]}`.
    pub async fn handle(self: &Arc<Self>, event: Value) -> Value {
        let mut running = Running::default();
        let mut fresh: Vec<(String, OutboundEvent)> = Vec::new();
        let mut outcomes: Vec<(String, Result<Outcome, String>)> = Vec::new();
        let patience = Arc::new(Patience::new(self.bounds));
        let records = event["Records"].as_array().cloned().unwrap_or_default();
        for record in records {
            let id = record["messageId"].as_str().unwrap_or_default().to_string();
            match read_body(record["body"].as_str().unwrap_or_default()) {
                Incoming::Event(e) => fresh.push((id, e)),
                Incoming::Attempt(m) => {
                    let (this, from) = (self.clone(), self.source(&record, &patience));
                    running.spawn(id, async move { this.attempt(m, &from).await });
                }
                Incoming::Replay(replay) => {
                    let this = self.clone();
                    running.spawn(id, async move { this.replay_page(&replay).await });
                }
                Incoming::Unreadable(why) => {
                    tracing::error!(reason = why, "dropping an unreadable record");
                    outcomes.push((id, Ok(Outcome::Dropped)));
                }
            }
        }
        outcomes.extend(self.fan_out(fresh).await);
        outcomes.extend(running.join_all().await);
        self.answer(outcomes)
    }

    /// One attempt message per matching enabled endpoint, for each event.
    async fn fan_out(
        &self,
        fresh: Vec<(String, OutboundEvent)>,
    ) -> Vec<(String, Result<Outcome, String>)> {
        if fresh.is_empty() {
            return Vec::new();
        }
        let endpoints = match self.store.endpoints().await {
            Ok(list) => list,
            Err(e) => {
                let e = e.to_string();
                return fresh
                    .into_iter()
                    .map(|(id, _)| (id, Err(e.clone())))
                    .collect();
            }
        };
        let now = self.clock.now();
        let mut out = Vec::new();
        for (id, event) in fresh {
            let messages = attempt::first_attempts(&endpoints, &event, now);
            let sent = self.queue.schedule_in_lanes(&messages, now).await;
            out.push((
                id,
                sent.map(|()| Outcome::FannedOut(messages.len()))
                    .map_err(|e| e.to_string()),
            ));
        }
        out
    }

    fn answer(&self, outcomes: Vec<(String, Result<Outcome, String>)>) -> Value {
        let count = |o: Outcome| outcomes.iter().filter(|(_, r)| r == &Ok(o)).count() as u64;
        let mut failures = Vec::new();
        for (id, result) in &outcomes {
            match result {
                Ok(Outcome::Waiting) => failures.push(json!({ "itemIdentifier": id })),
                Err(e) => {
                    tracing::error!(error = %e, "a record failed; SQS will hand it back");
                    failures.push(json!({ "itemIdentifier": id }));
                }
                Ok(_) => {}
            }
        }
        Metrics::new("deliver")
            .count("Delivered", count(Outcome::Delivered))
            .count("DeliveryFailed", count(Outcome::Failed))
            .count("DeadLettered", count(Outcome::DeadLettered))
            .count("HandedToSlowLane", count(Outcome::HandedOff))
            .count(
                "RecordErrors",
                outcomes.iter().filter(|(_, r)| r.is_err()).count() as u64,
            )
            .emit();
        json!({ "batchItemFailures": failures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_fails_its_own_record_only() {
        let mut running = Running::default();
        running.spawn("m-ok".into(), async { Ok(Outcome::Delivered) });
        running.spawn("m-panics".into(), async { panic!("a bug") });
        let mut got = running.join_all().await;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got[0].0, "m-ok");
        assert_eq!(got[0].1, Ok(Outcome::Delivered));
        assert_eq!(got[1].0, "m-panics", "its own message id, not an empty one");
        assert!(got[1].1.is_err());
    }
}
