//! The Graph proxy: the product acts with a connection (send a DM, read media,
//! publish) and never sees its token (CONTRACT.md, "Graph proxy").
//!
//! Two doors, one behaviour: the HTTP route
//! `/connections/{provider}/{account_id}/graph/{path+}` (the user's JWT) and
//! direct invocation by the product's backend (IAM). The order of the steps is
//! the point: refuse what the contract refuses before anything is opened or
//! sent, hold a caller over its token buckets, honour a block Meta put on
//! the account or the whole app before calling it, claim an
//! idempotency key before sending, and act on Meta's answer (a dead token, a
//! throttle) for every later call and every container.

mod doors;
mod limits;

pub use doors::InvokeRequest;

use std::time::{Duration, Instant};

use rand::RngExt;
use serde_json::{json, Value};
use shared::config::{self, MetaAppConfig, StoreConfig};
use shared::connection::{Connection, Lifecycle, Status};
use shared::graph::buckets::CallerLimits;
use shared::graph::policy::{self, GraphMethod, Subject};
use shared::graph::ratelimit::{self, MetaAnswerLimits};
use shared::graph::store::{request_fingerprint, Block, Claim, GraphStore, StoredAnswer};
use shared::graph::strip_tokens;
use shared::graph::token_cache::{CacheKey, TokenCache};
use shared::meta::proxy::{GraphAnswer, GraphBody, GraphCall};
use shared::meta::MetaClient;
use shared::metrics::Metrics;
use shared::secrecy::SecretString;
use shared::secrets::SecretsCache;
use shared::store::{ConnectionStore, Event, UserConnections};
use shared::vault::{DataKeys, SealedToken, TokenOwner, TokenVault};
use shared::{Clock, EnvReader, FromEnv, Provider};

/// Bodies above this are refused with `413`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long an idempotency claim may stay in flight before another attempt
/// with the same request may take it over (longer than the function runs).
const CLAIM_LEASE: shared::time::Duration = shared::time::Duration::seconds(60);
/// `GET` attempts when Meta fails or can't be reached.
const GET_ATTEMPTS: u32 = 3;
/// No retry starts after this much time in one request.
const RETRY_BUDGET: Duration = Duration::from_secs(12);

#[derive(Clone, Debug)]
pub struct GraphConfig {
    pub store: StoreConfig,
    pub graph_table: String,
    pub token_key_id: String,
    pub meta_secret_id: String,
    pub meta: MetaAppConfig,
    pub limits: CallerLimits,
}

impl FromEnv for GraphConfig {
    fn read(env: &mut EnvReader) -> Self {
        Self {
            store: StoreConfig::read(env),
            graph_table: config::table(env, "GRAPH_TABLE"),
            token_key_id: env.required("TOKEN_KEY_ID"),
            meta_secret_id: env.required("META_SECRET_ID"),
            meta: MetaAppConfig::read(env),
            limits: CallerLimits::read(env),
        }
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The frontend, as the JWT's user.
    User(String),
    /// The product's backend, optionally naming the owner it expects.
    Backend { user_id: Option<String> },
}

/// One request, from either door.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    pub caller: Caller,
    pub provider: String,
    pub account_id: String,
    pub method: String,
    /// The Graph path, without a leading `/`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<GraphBody>,
    /// The size of the body as received, for the `413`.
    pub body_len: usize,
    pub idempotency_key: Option<String>,
}

/// The proxy's answer, the same for both doors.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub replayed: bool,
}

impl ProxyAnswer {
    fn error(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: json!({"error": code, "message": message}),
            replayed: false,
        }
    }

    fn with_meta(mut self, meta: Value) -> Self {
        self.body["meta"] = meta;
        self
    }

    fn header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.into(), value));
        self
    }

    fn stored(&self) -> StoredAnswer {
        StoredAnswer {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    fn replay(stored: StoredAnswer) -> Self {
        Self {
            status: stored.status,
            headers: stored.headers,
            body: stored.body,
            replayed: true,
        }
    }

    fn unavailable() -> Self {
        Self::error(
            503,
            "service_unavailable",
            "The service could not reach its store. Try again.",
        )
    }
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

pub struct Graph<K> {
    config: GraphConfig,
    connections: ConnectionStore,
    store: GraphStore,
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
    ) -> Self {
        Self {
            connections: config.store.connections(&dynamodb),
            store: GraphStore::new(
                dynamodb,
                &config.graph_table,
                &config.store.connections_table,
                &config.store.events_table,
            ),
            meta: MetaClient::new(config.meta.clone()),
            vault: TokenVault::new(keys),
            secrets: SecretsCache::new(secrets, &config.meta_secret_id),
            tokens: TokenCache::new(clock.clone()),
            config,
            clock,
        }
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
            door = match req.caller { Caller::User(_) => "http", Caller::Backend { .. } => "invoke" },
            method = %req.method.to_ascii_uppercase(),
            path = %trace.path,
            status = answer.status,
            error = answer.body.get("error").and_then(serde_json::Value::as_str).unwrap_or_default(),
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
            .take_usage()
            .add_to(call_metrics(&req, &answer, &trace))
            .emit();
        (answer, trace)
    }

    async fn answer(&self, req: &ProxyRequest, trace: &mut CallTrace) -> ProxyAnswer {
        let Some(provider) =
            Provider::parse(&req.provider).filter(|p| self.config.meta.app_id(*p).is_some())
        else {
            return ProxyAnswer::error(404, "unknown_provider", "This provider is not available.");
        };
        if req.body_len > MAX_BODY_BYTES {
            return ProxyAnswer::error(413, "body_too_large", "The body must be at most 1 MiB.");
        }
        // The connection, Meta's blocks and the caller's buckets, together:
        // one round trip's latency instead of several. (The limits' future
        // is boxed, as are the other two below: the proxy's own future stays
        // small enough for the runtime loop's stack in a debug build.)
        let now = self.clock.now();
        let store_started = Instant::now();
        let limits = Box::pin(self.limits(req, provider, now));
        let (found, limits) = tokio::join!(self.find(req, provider), limits);
        trace.store_latency += store_started.elapsed();
        let found = match found {
            Ok(Some(found)) => found,
            Ok(None) => {
                return ProxyAnswer::error(404, "not_found", "No such connection of yours.")
            }
            Err(answer) => return answer,
        };
        let conn = &found.conn;
        if let Some(answer) = Box::pin(self.over_bucket(limits.buckets, conn, now)).await {
            return answer;
        }
        let segments = match self.check_policy(req, conn) {
            Ok(segments) => segments,
            Err(answer) => return answer,
        };
        trace.path = policy::path_template(&segments);
        let method = GraphMethod::parse(&req.method).expect("the policy checked the method");
        // The idempotency key first: a send that already succeeded is
        // answered as it was, even once the account is blocked or the
        // connection needs the person again.
        let claim = match self.claim(req, provider, method).await {
            Ok(Some(claim)) => Some(claim),
            Ok(None) => None,
            Err(answer) => return answer,
        };
        if let Some(refused) = refusal(conn.status, limits.block, now) {
            // Meta was not called: the key stays free for a later try.
            if let Some((key, fingerprint)) = &claim {
                if let Err(e) = self
                    .store
                    .release(provider, &conn.account_id, key, fingerprint)
                    .await
                {
                    tracing::error!(error = %e, "could not release the idempotency key");
                }
            }
            return refused;
        }
        let answer = self.call_meta(req, &found, method, &segments, trace).await;
        if let Some((key, fingerprint)) = claim {
            self.settle_claim(provider, &conn.account_id, &key, &fingerprint, &answer)
                .await;
        }
        answer
    }

    /// The connection, checked against the caller: only its owner may act.
    async fn find(
        &self,
        req: &ProxyRequest,
        provider: Provider,
    ) -> Result<Option<Found>, ProxyAnswer> {
        let owner = match &req.caller {
            Caller::User(u) | Caller::Backend { user_id: Some(u) } => Some(u.clone()),
            Caller::Backend { user_id: None } => self
                .connections
                .owner_of(&req.account_id)
                .await
                .map_err(|e| {
                tracing::error!(error = %e, "could not read the owner claim");
                ProxyAnswer::unavailable()
            })?,
        };
        let Some(owner) = owner.filter(|o| !o.is_empty()) else {
            return Ok(None);
        };
        let found = self
            .connections
            .get(&owner, provider, &req.account_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not read the connection");
                ProxyAnswer::unavailable()
            })?;
        Ok(found.map(|(conn, sealed)| Found { conn, sealed }))
    }

    fn check_policy<'r>(
        &self,
        req: &'r ProxyRequest,
        conn: &Connection,
    ) -> Result<Vec<&'r str>, ProxyAnswer> {
        let subject = Subject {
            provider: conn.provider,
            account_id: &conn.account_id,
            page_id: conn.page_id.as_deref(),
        };
        let mut params: Vec<(&str, &str)> = req
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Graph reads parameters from bodies too.
        match &req.body {
            Some(GraphBody::Form(pairs)) => {
                params.extend(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            }
            Some(GraphBody::Json(Value::Object(map))) => params.extend(
                map.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))),
            ),
            _ => {}
        }
        policy::check(&subject, &req.method, &req.path, &params)
            .map_err(|refusal| ProxyAnswer::error(400, "path_not_allowed", &refusal.to_string()))
    }

    /// Claims the idempotency key of a `POST`/`DELETE`. `Ok(None)`: no key
    /// (or a `GET`, which is safe to repeat); `Err`: answer at once.
    async fn claim(
        &self,
        req: &ProxyRequest,
        provider: Provider,
        method: GraphMethod,
    ) -> Result<Option<(String, String)>, ProxyAnswer> {
        let Some(key) = req.idempotency_key.as_deref().filter(|_| !method.is_safe()) else {
            return Ok(None);
        };
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ProxyAnswer::error(
                400,
                "invalid_request",
                "The idempotency key must be 1 to 255 visible ASCII characters.",
            ));
        }
        let body = match &req.body {
            Some(GraphBody::Json(v)) => Some(v.clone()),
            Some(GraphBody::Form(pairs)) => Some(json!(pairs)),
            None => None,
        };
        let fingerprint = request_fingerprint(&req.method, &req.path, &req.query, body.as_ref());
        let claim = self
            .store
            .claim(
                provider,
                &req.account_id,
                key,
                &fingerprint,
                self.clock.now(),
                CLAIM_LEASE,
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not claim the idempotency key");
                ProxyAnswer::unavailable()
            })?;
        match claim {
            Claim::Started => Ok(Some((key.to_string(), fingerprint))),
            Claim::Replay(stored) => Err(ProxyAnswer::replay(stored)),
            Claim::InProgress => Err(ProxyAnswer::error(
                409,
                "request_in_progress",
                "A request with this idempotency key is still running. Try again shortly.",
            )),
            Claim::Reused => Err(ProxyAnswer::error(
                422,
                "idempotency_key_reused",
                "This idempotency key was used for a different request.",
            )),
        }
    }

    /// Keeps the answer for replays, or gives the key up when Meta did not
    /// act on the request (throttled, unreachable, or the service failed), so
    /// the caller's retry may try again.
    async fn settle_claim(
        &self,
        provider: Provider,
        account_id: &str,
        key: &str,
        fingerprint: &str,
        answer: &ProxyAnswer,
    ) {
        let result = if matches!(answer.status, 429 | 502 | 503) {
            self.store
                .release(provider, account_id, key, fingerprint)
                .await
        } else {
            self.store
                .finish(provider, account_id, key, fingerprint, &answer.stored())
                .await
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "could not record the idempotent answer");
        }
    }

    async fn open_token(&self, found: &Found) -> Result<(SecretString, bool), ProxyAnswer> {
        let conn = &found.conn;
        let Some(sealed) = &found.sealed else {
            tracing::error!("the connection has no sealed token");
            return Err(ProxyAnswer::unavailable());
        };
        let owner = TokenOwner {
            user_id: conn.user_id.clone(),
            provider: conn.provider,
            account_id: conn.account_id.clone(),
        };
        let mut opened_now = false;
        let token = self
            .tokens
            .get_or_open(&cache_key(conn), sealed, || {
                opened_now = true;
                self.vault.open(sealed, &owner)
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not open the token");
                ProxyAnswer::unavailable()
            })?;
        Ok((token, !opened_now))
    }

    async fn call_meta(
        &self,
        req: &ProxyRequest,
        found: &Found,
        method: GraphMethod,
        segments: &[&str],
        trace: &mut CallTrace,
    ) -> ProxyAnswer {
        let conn = &found.conn;
        let (token, cached) = match self.open_token(found).await {
            Ok(t) => t,
            Err(answer) => return answer,
        };
        trace.token_from_cache = Some(cached);
        let secrets = match conn.provider {
            Provider::Facebook => match self.secrets.get().await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "could not read the app secrets");
                    return ProxyAnswer::unavailable();
                }
            },
            Provider::Instagram => None,
        };
        let base = policy::graph_base(conn.provider, &self.config.meta.urls);
        let call = GraphCall {
            method: match method {
                GraphMethod::Get => reqwest::Method::GET,
                GraphMethod::Post => reqwest::Method::POST,
                GraphMethod::Delete => reqwest::Method::DELETE,
            },
            url: policy::target_url(base, &self.config.meta.graph_api_version, segments),
            query: &req.query,
            body: req.body.as_ref(),
            token: &token,
            app_secret: secrets.as_ref().map(|s| s.app_secret(Provider::Facebook)),
        };
        let Some(meta) = self.send(&call, method, trace).await else {
            return ProxyAnswer::error(
                502,
                "meta_unavailable",
                "Meta could not be reached or failed. Try again later.",
            );
        };
        self.act_on(conn, meta).await
    }

    /// Sends the call; only a `GET` is tried again (with jitter, within the
    /// budget) when Meta can't be reached or answers 5xx. `None`: no answer
    /// worth handing back.
    async fn send(
        &self,
        call: &GraphCall<'_>,
        method: GraphMethod,
        trace: &mut CallTrace,
    ) -> Option<GraphAnswer> {
        let started = Instant::now();
        let attempts = if method.is_safe() { GET_ATTEMPTS } else { 1 };
        for attempt in 1..=attempts {
            trace.attempts = attempt;
            let result = self.meta.graph_call(call).await;
            let failed = match &result {
                Ok(a) => {
                    trace.meta_status = Some(a.status);
                    trace.meta_latency = Some(a.latency);
                    trace.meta_trace_id = a.header("x-fb-trace-id").map(str::to_string);
                    a.status >= 500
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "meta unreachable");
                    true
                }
            };
            if !failed {
                return result.ok();
            }
            let wait = Duration::from_millis(rand::rng().random_range(50..=150u64) << attempt);
            if attempt == attempts || started.elapsed() + wait > RETRY_BUDGET {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        None
    }

    /// Meta's answer, acted upon: a dead token marks the connection at once,
    /// a throttle blocks the account for every container, and no token ever
    /// goes back to the caller.
    async fn act_on(&self, conn: &Connection, meta: GraphAnswer) -> ProxyAnswer {
        let Ok(mut body) = serde_json::from_slice::<Value>(&meta.body) else {
            return ProxyAnswer::error(502, "meta_unavailable", "Meta's answer was not JSON.");
        };
        let stripped = strip_tokens(&mut body);
        if stripped > 0 {
            tracing::warn!(stripped, "removed access_token fields from Meta's answer");
        }
        let error = body.get("error").cloned();
        let code = error
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(|c| c.as_i64().or_else(|| c.as_str()?.parse().ok()));
        let mut headers: Vec<(String, String)> = meta.headers.clone();
        if matches!(code, Some(190 | 102)) {
            self.token_died(conn).await;
            return ProxyAnswer::error(
                409,
                "connection_needs_reauth",
                "Meta says this connection's token is no longer valid: connect again.",
            )
            .with_meta(error.unwrap_or(Value::Null));
        }
        let now = self.clock.now();
        let limits = MetaAnswerLimits {
            error_code: code,
            business_use_case_usage: meta.header("x-business-use-case-usage"),
            app_usage: meta.header("x-app-usage"),
        };
        if let Some(blocks) = ratelimit::blocks(now, &limits) {
            let block = Block {
                until: blocks.until,
                meta: error
                    .clone()
                    .unwrap_or_else(|| json!({"usage": limits_json(&meta)})),
            };
            Box::pin(self.record_blocks(conn, blocks, &block, &meta)).await;
            if ratelimit::is_throttling(code) {
                let mut answer = rate_limited(&block, now);
                answer.headers.append(&mut headers);
                return answer;
            }
        }
        ProxyAnswer {
            status: meta.status,
            headers,
            body,
            replayed: false,
        }
    }

    async fn token_died(&self, conn: &Connection) {
        self.tokens.evict(&cache_key(conn));
        let now = self.clock.now();
        let mut after = conn.clone();
        after.status = Status::NeedsReauth;
        let event = Event::lifecycle(
            Lifecycle::NeedsReauth,
            &after,
            now,
            self.config.store.event_retention,
        );
        match self.store.mark_needs_reauth(conn, &event, now).await {
            Ok(true) => tracing::warn!(
                provider = %conn.provider,
                account_id = %conn.account_id,
                "meta says the token is dead: connection needs reauth"
            ),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "could not mark the connection needs_reauth"),
        }
    }
}

/// The call's metrics (EMF): answers by status class, Meta's throttling,
/// callers over their buckets, idempotent replays, Meta's latency, KMS decryptions.
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

fn call_metrics(req: &ProxyRequest, answer: &ProxyAnswer, trace: &CallTrace) -> Metrics {
    let provider = match Provider::parse(&req.provider) {
        Some(Provider::Facebook) => "facebook",
        Some(Provider::Instagram) => "instagram",
        None => "unknown",
    };
    let class = match answer.status {
        200..=299 => "Answers2xx",
        400..=499 => "Answers4xx",
        _ => "Answers5xx",
    };
    let mut m = Metrics::new("graph").provider(provider).count(class, 1);
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

fn cache_key(conn: &Connection) -> CacheKey {
    CacheKey {
        user_id: conn.user_id.clone(),
        provider: conn.provider,
        account_id: conn.account_id.clone(),
    }
}

/// Why a call is refused without reaching Meta: the connection's status
/// (`409`), Meta's block on the account (`429`), or the block unreadable
/// (`503`). `None`: go ahead.
fn refusal(
    status: Status,
    block: Result<Option<Block>, shared::store::StoreError>,
    now: shared::time::OffsetDateTime,
) -> Option<ProxyAnswer> {
    match status {
        Status::Active => {}
        Status::NeedsReauth => {
            return Some(ProxyAnswer::error(
                409,
                "connection_needs_reauth",
                "This connection must be connected again.",
            ))
        }
        Status::Revoked => {
            return Some(ProxyAnswer::error(
                409,
                "connection_revoked",
                "The person removed this app at Meta.",
            ))
        }
    }
    match block {
        Ok(Some(block)) => Some(rate_limited(&block, now)),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "could not read the rate-limit state");
            Some(ProxyAnswer::unavailable())
        }
    }
}

fn rate_limited(block: &Block, now: shared::time::OffsetDateTime) -> ProxyAnswer {
    ProxyAnswer::error(
        429,
        "meta_rate_limited",
        "Meta is limiting calls for this account (or the whole app). Try again after Retry-After seconds.",
    )
    .with_meta(block.meta.clone())
    .header(
        "retry-after",
        ratelimit::retry_after_secs(now, block.until).to_string(),
    )
}

/// The usage headers as JSON, for the caller to see why calls paused.
fn limits_json(meta: &GraphAnswer) -> Value {
    let parse = |h: &str| {
        meta.header(h)
            .and_then(|v| serde_json::from_str::<Value>(v).ok())
            .unwrap_or(Value::Null)
    };
    json!({
        "x-app-usage": parse("x-app-usage"),
        "x-business-use-case-usage": parse("x-business-use-case-usage"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(provider: &str) -> ProxyRequest {
        ProxyRequest {
            caller: Caller::User("u".into()),
            provider: provider.into(),
            account_id: "1".into(),
            method: "GET".into(),
            path: "me".into(),
            query: vec![],
            body: None,
            body_len: 0,
            idempotency_key: None,
        }
    }

    #[test]
    fn each_call_counts_its_outcome_by_provider_never_by_account() {
        let throttled = ProxyAnswer::error(429, "meta_rate_limited", "x");
        let trace = CallTrace {
            token_from_cache: Some(false),
            meta_latency: Some(Duration::from_millis(100)),
            ..CallTrace::default()
        };
        let doc = call_metrics(&req("instagram"), &throttled, &trace).document(1);
        assert_eq!(doc["provider"], "instagram");
        assert_eq!(doc["Answers4xx"], 1.0);
        assert_eq!(doc["MetaThrottled"], 1.0);
        assert_eq!(doc["KmsDecrypts"], 1.0);
        assert_eq!(doc["MetaLatency"], 100.0);
        assert!(doc.get("account_id").is_none() && !doc.to_string().contains("\"1\""));
        // A caller over its bucket is not Meta throttling (that alarm stays
        // quiet).
        let ours = ProxyAnswer::error(429, "rate_limited", "x");
        let doc = call_metrics(&req("instagram"), &ours, &CallTrace::default()).document(1);
        assert_eq!(doc["RateLimited"], 1.0);
        assert!(doc.get("MetaThrottled").is_none());
        let mut replay = ProxyAnswer::error(200, "x", "y");
        replay.replayed = true;
        let doc = call_metrics(&req("facebook"), &replay, &CallTrace::default()).document(1);
        assert_eq!(doc["Answers2xx"], 1.0);
        assert_eq!(doc["IdempotentReplays"], 1.0);
        assert!(doc.get("MetaLatency").is_none());
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
            let doc = call_metrics(&req("instagram"), &answer, &trace).document(1);
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
