//! The Graph proxy: the product acts with a connection (send a DM, read media,
//! publish) and never sees its token (CONTRACT.md, "Graph proxy", and its
//! "Proxy amendments").
//!
//! Two doors, one behaviour: the HTTP route
//! `/connections/{provider}/{account_id}/graph/{path+}` (the user's JWT) and
//! direct invocation by the product's backend (IAM), each its own Lambda
//! function (`GRAPH_DOOR`). The order of the steps is the point: refuse what
//! the contract refuses before anything is opened or sent, hold a caller over
//! its token buckets, honour a block Meta put on the account or the whole app
//! before calling it, claim an idempotency key before sending, and act on
//! Meta's answer (a dead token, a throttle) for every later call and every
//! container.

mod answer;
mod doors;
#[cfg(test)]
mod handler_tests;
mod idempotency;
mod limits;
mod meta_call;
mod store;

pub use answer::ProxyAnswer;
pub use doors::{Door, InvokeRequest};
pub use store::{ProxyStore, Stores};

use std::time::{Duration, Instant};

use serde_json::Value;
use shared::config::{self, MetaAppConfig, StoreConfig};
use shared::connection::Connection;
use shared::graph::buckets::CallerLimits;
use shared::graph::policy::{self, GraphMethod};
use shared::graph::store::GraphStore;
use shared::graph::token_cache::TokenCache;
use shared::logging::tag;
use shared::meta::proxy::GraphBody;
use shared::meta::{ClientError, MetaClient};
use shared::metrics::Metrics;
use shared::secrets::SecretsCache;
use shared::vault::{DataKeys, SealedToken, TokenVault};
use shared::{Clock, EnvReader, FromEnv, Provider};

use idempotency::Settle;

/// Bodies above this are refused with `413`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long an idempotency claim may stay in flight before another attempt
/// with the same request may take it over (longer than the function runs).
const CLAIM_LEASE: shared::time::Duration = shared::time::Duration::seconds(60);

#[derive(Clone, Debug)]
pub struct GraphConfig {
    pub store: StoreConfig,
    pub graph_table: String,
    pub token_key_id: String,
    pub meta_secret_id: String,
    pub meta: MetaAppConfig,
    /// Which door this function is (`GRAPH_DOOR`: `http` or `invoke`).
    pub door: Door,
    pub limits: CallerLimits,
}

impl FromEnv for GraphConfig {
    fn read(env: &mut EnvReader) -> Option<Self> {
        let door = env.or_default("GRAPH_DOOR", "http");
        let door = Door::parse(&door).unwrap_or_else(|| {
            env.problem(format!("GRAPH_DOOR must be http or invoke, not {door:?}"));
            Door::Http
        });
        Some(Self {
            store: StoreConfig::read(env),
            graph_table: config::table(env, "GRAPH_TABLE"),
            token_key_id: env.required("TOKEN_KEY_ID"),
            meta_secret_id: env.required("META_SECRET_ID"),
            meta: MetaAppConfig::read(env),
            door,
            limits: CallerLimits::read(env)?,
        })
    }
}

/// One request, from either door, parsed there.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    pub door: Door,
    /// The caller: the JWT's `sub`, or the backend's `user_id`. Only the
    /// connection's owner may act.
    pub user_id: String,
    pub provider: Provider,
    pub account_id: String,
    pub method: GraphMethod,
    /// The Graph path, without a leading `/` (checked by the policy).
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<GraphBody>,
    /// The size of the body as received, for the `413`.
    pub body_len: usize,
    pub idempotency_key: Option<String>,
}

/// What happened in one call: the log line's fields, and what the benchmark
/// measures (proxy overhead = total latency minus Meta's).
#[derive(Clone, Debug, Default)]
pub struct CallTrace {
    /// The path as logged (numeric ids as `{id}`).
    pub path: String,
    pub meta_status: Option<u16>,
    /// Meta's latency on the last attempt.
    pub meta_latency: Option<Duration>,
    pub meta_trace_id: Option<String>,
    pub attempts: u32,
    pub token_from_cache: Option<bool>,
    pub latency: Duration,
    /// Time spent waiting for the service's own store (DynamoDB).
    pub store_latency: Duration,
}

/// The proxy, over its token keys (KMS) and its store (DynamoDB:
/// [`Stores`]).
pub struct Graph<K, S = Stores> {
    config: GraphConfig,
    store: S,
    meta: MetaClient,
    vault: TokenVault<K>,
    secrets: SecretsCache,
    tokens: TokenCache,
    clock: Clock,
}

/// A connection found for a request, with its sealed token.
struct Found {
    conn: Connection,
    sealed: Option<SealedToken>,
}

impl<K: DataKeys> Graph<K> {
    pub fn new(
        config: GraphConfig,
        dynamodb: shared::aws_sdk_dynamodb::Client,
        secrets: shared::aws_sdk_secretsmanager::Client,
        keys: K,
        clock: Clock,
    ) -> Result<Self, ClientError> {
        let stores = Stores {
            connections: config.store.connections(&dynamodb),
            graph: GraphStore::new(
                dynamodb,
                &config.graph_table,
                &config.store.connections_table,
                &config.store.events_table,
            ),
        };
        let secrets = SecretsCache::new(secrets, &config.meta_secret_id);
        Self::with_store(config, stores, secrets, keys, clock)
    }
}

impl<K: DataKeys, S: ProxyStore> Graph<K, S> {
    /// The proxy over any store (the unit tests' is in memory).
    pub fn with_store(
        config: GraphConfig,
        store: S,
        secrets: SecretsCache,
        keys: K,
        clock: Clock,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            store,
            meta: MetaClient::new(config.meta.clone())?,
            vault: TokenVault::new(keys),
            secrets,
            tokens: TokenCache::new(clock.clone()),
            config,
            clock,
        })
    }

    /// Waits at most `timeout` for Meta's whole answer (the default is
    /// [`shared::meta`]'s; tests shorten it).
    pub fn with_meta_timeout(mut self, timeout: Duration) -> Result<Self, ClientError> {
        self.meta = MetaClient::with_timeout(self.config.meta.clone(), timeout)?;
        Ok(self)
    }

    /// How many connections' tokens this container holds open.
    pub fn cached_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// One request through the proxy, logged once.
    pub async fn proxy(&self, req: ProxyRequest) -> ProxyAnswer {
        self.proxy_traced(req).await.0
    }

    /// [`Self::proxy`], also returning what happened (for measurements).
    pub async fn proxy_traced(&self, req: ProxyRequest) -> (ProxyAnswer, CallTrace) {
        let started = Instant::now();
        let mut trace = CallTrace::default();
        let answer = self.answer(&req, &mut trace).await;
        trace.latency = started.elapsed();
        tracing::info!(
            provider = %req.provider,
            account_id = %req.account_id,
            door = req.door.as_str(),
            user = %tag(&req.user_id),
            method = req.method.as_str(),
            path = %trace.path,
            status = answer.status,
            error = answer.error_code(),
            replayed = answer.replayed,
            meta_status = trace.meta_status,
            meta_latency_ms = trace.meta_latency.map(|m| m.as_millis() as u64),
            meta_trace_id = trace.meta_trace_id.as_deref(),
            meta_attempts = trace.attempts,
            token_cached = trace.token_from_cache,
            latency_ms = trace.latency.as_millis() as u64,
            "graph call"
        );
        self.vault
            .emit_with_usage(call_metrics(req.provider, &answer, &trace));
        (answer, trace)
    }

    /// The steps of one call.
    async fn answer(&self, req: &ProxyRequest, trace: &mut CallTrace) -> ProxyAnswer {
        if self.config.meta.app_id(req.provider).is_none() {
            return ProxyAnswer::error(404, "unknown_provider", "This provider is not available.");
        }
        if req.body_len > MAX_BODY_BYTES {
            return ProxyAnswer::error(413, "body_too_large", "The body must be at most 1 MiB.");
        }
        // The connection, Meta's blocks and the caller's buckets, together:
        // one round trip's latency instead of several. (The limits' future
        // is boxed, as is the bucket check below: the proxy's own future stays
        // small enough for the runtime loop's stack in a debug build.)
        let now = self.clock.now();
        let store_started = Instant::now();
        let limits = Box::pin(self.limits(req, now));
        let (found, limits) = tokio::join!(self.find(req), limits);
        trace.store_latency += store_started.elapsed();
        let found = match found {
            Ok(Some(found)) => found,
            Ok(None) => {
                return ProxyAnswer::error(404, "not_found", "No such connection of yours.")
            }
            Err(answer) => return answer,
        };
        let conn = &found.conn;
        if let Some(answer) = Box::pin(self.over_bucket(limits.buckets)).await {
            return answer;
        }
        let segments = match check_policy(req, conn) {
            Ok(segments) => segments,
            Err(answer) => return answer,
        };
        trace.path = policy::path_template(&segments);
        // The idempotency key first: a send that already succeeded is
        // answered as it was, even once the account is blocked or the
        // connection needs the person again.
        let claimed = match self.claim(req, conn).await {
            Ok(claimed) => claimed,
            Err(answer) => return answer,
        };
        if let Some(refused) = answer::refusal(conn.status, limits.block, now) {
            // Meta was not called: the key stays free for a later try.
            if let Some(c) = &claimed {
                self.settle(conn, c, Settle::NotSent).await;
            }
            return refused;
        }
        let outcome = self.call_meta(req, &found, &segments, trace).await;
        if let Some(c) = &claimed {
            let how = if outcome.outcome_unknown {
                Settle::Unknown
            } else {
                Settle::of(&outcome.answer)
            };
            self.settle(conn, c, how).await;
        }
        outcome.answer
    }

    /// The caller's connection: only its owner may act (the owner is the
    /// connection's key, so another user's row is never read).
    async fn find(&self, req: &ProxyRequest) -> Result<Option<Found>, ProxyAnswer> {
        if req.user_id.is_empty() {
            return Ok(None);
        }
        let found = self
            .store
            .connection(&req.user_id, req.provider, &req.account_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not read the connection");
                ProxyAnswer::unavailable()
            })?;
        Ok(found.map(|(conn, sealed)| Found { conn, sealed }))
    }
}

/// The policy over the path, the query, and the body (form pairs, or a JSON
/// body at any depth).
fn check_policy<'r>(req: &'r ProxyRequest, conn: &Connection) -> Result<Vec<&'r str>, ProxyAnswer> {
    let refused = |r: policy::Refusal| ProxyAnswer::error(400, "path_not_allowed", &r.to_string());
    let mut params: Vec<(&str, &str)> = req
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match &req.body {
        Some(GraphBody::Form(pairs)) => {
            params.extend(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        }
        Some(GraphBody::Json(body)) => policy::check_json_body(body).map_err(refused)?,
        None => {}
    }
    let subject = meta_call::subject(conn);
    policy::check(&subject, req.method.as_str(), &req.path, &params).map_err(refused)
}

/// Every metric name [`call_metrics`] may write (alarms name these).
pub const CALL_METRICS: [&str; 8] = [
    "Answers2xx",
    "Answers4xx",
    "Answers5xx",
    "MetaThrottled",
    "RateLimited",
    "IdempotentReplays",
    "KmsDecrypts",
    "MetaLatency",
];

/// The call's metrics (EMF): answers by status class, Meta's throttling,
/// callers over their buckets, idempotent replays, Meta's latency, KMS
/// decryptions.
fn call_metrics(provider: Provider, answer: &ProxyAnswer, trace: &CallTrace) -> Metrics {
    let class = match answer.status {
        200..=299 => "Answers2xx",
        400..=499 => "Answers4xx",
        _ => "Answers5xx",
    };
    let mut m = Metrics::new("graph")
        .provider(provider.as_str())
        .count(class, 1);
    match answer.body.get("error").and_then(Value::as_str) {
        Some("meta_rate_limited") => m = m.count("MetaThrottled", 1),
        Some("rate_limited") => m = m.count("RateLimited", 1),
        _ => {}
    }
    if answer.replayed {
        m = m.count("IdempotentReplays", 1);
    }
    if trace.token_from_cache == Some(false) {
        m = m.count("KmsDecrypts", 1);
    }
    if let Some(latency) = trace.meta_latency {
        m = m.millis("MetaLatency", latency.as_secs_f64() * 1000.0);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_counts_its_outcome_by_provider_never_by_account() {
        let throttled = ProxyAnswer::error(429, "meta_rate_limited", "x");
        let trace = CallTrace {
            token_from_cache: Some(false),
            meta_latency: Some(Duration::from_millis(100)),
            ..CallTrace::default()
        };
        let doc = call_metrics(Provider::Instagram, &throttled, &trace).document(1);
        assert_eq!(doc["provider"], "instagram");
        assert_eq!(doc["Answers4xx"], 1.0);
        assert_eq!(doc["MetaThrottled"], 1.0);
        assert_eq!(doc["KmsDecrypts"], 1.0);
        assert_eq!(doc["MetaLatency"], 100.0);
        assert!(doc.get("account_id").is_none() && !doc.to_string().contains("\"1\""));
        let mut replay = ProxyAnswer::error(200, "x", "y");
        replay.replayed = true;
        let doc = call_metrics(Provider::Facebook, &replay, &CallTrace::default()).document(1);
        assert_eq!(doc["Answers2xx"], 1.0);
        assert_eq!(doc["IdempotentReplays"], 1.0);
        assert!(doc.get("MetaLatency").is_none());
        // A caller over its bucket is not Meta throttling (that alarm stays
        // quiet).
        let ours = ProxyAnswer::error(429, "rate_limited", "x");
        let doc = call_metrics(Provider::Instagram, &ours, &CallTrace::default()).document(1);
        assert_eq!(doc["RateLimited"], 1.0);
        assert!(doc.get("MetaThrottled").is_none());
    }

    #[test]
    fn every_name_written_is_listed_for_the_alarms() {
        let trace = CallTrace {
            token_from_cache: Some(false),
            meta_latency: Some(Duration::from_millis(3)),
            ..CallTrace::default()
        };
        for (status, error) in [
            (200, "x"),
            (404, "not_found"),
            (429, "meta_rate_limited"),
            (429, "rate_limited"),
            (502, "meta_unavailable"),
        ] {
            let mut answer = ProxyAnswer::error(status, error, "y");
            answer.replayed = status == 200;
            let doc = call_metrics(Provider::Instagram, &answer, &trace).document(1);
            for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
            {
                let name = m["Name"].as_str().unwrap();
                assert!(CALL_METRICS.contains(&name), "{name}");
            }
        }
    }
}
