//! The call to Meta and what follows from its answer: the token opened (at
//! most once per connection per five minutes), only `GET` retried, a dead
//! token marking the connection at once, a throttle blocking the account for
//! every container, and nothing of a credential going back to the caller.

use std::time::{Duration, Instant};

use rand::RngExt;
use serde_json::{json, Value};
use shared::connection::Connection;
use shared::graph::policy::{self, GraphMethod, Subject};
use shared::graph::ratelimit::{self, MetaAnswerLimits};
use shared::graph::scrub::{rewrite_paging, scrub};
use shared::graph::store::Block;
use shared::graph::token_cache::CacheKey;
use shared::meta::proxy::{GraphAnswer, GraphCall, Unreachable};
use shared::secrecy::{ExposeSecret, SecretString};
use shared::store::Event;
use shared::vault::{DataKeys, TokenOwner};
use shared::Provider;

use crate::answer::{limits_json, rate_limited};
use crate::{CallTrace, Found, Graph, ProxyAnswer, ProxyRequest, ProxyStore};

/// `GET` attempts when Meta fails or can't be reached.
const GET_ATTEMPTS: u32 = 3;
/// No retry starts after this much time in one request.
const RETRY_BUDGET: Duration = Duration::from_secs(12);

/// What calling Meta came to.
pub(crate) struct MetaOutcome {
    pub answer: ProxyAnswer,
    /// Meta may have acted, but no answer came back (a timed-out send).
    pub outcome_unknown: bool,
}

impl From<ProxyAnswer> for MetaOutcome {
    fn from(answer: ProxyAnswer) -> Self {
        Self {
            answer,
            outcome_unknown: false,
        }
    }
}

pub(crate) fn subject(conn: &Connection) -> Subject<'_> {
    Subject {
        provider: conn.provider,
        account_id: &conn.account_id,
        page_id: conn.page_id.as_deref(),
    }
}

pub(crate) fn cache_key(conn: &Connection) -> CacheKey {
    CacheKey {
        user_id: conn.user_id.clone(),
        provider: conn.provider,
        account_id: conn.account_id.clone(),
    }
}

fn http_method(method: GraphMethod) -> reqwest::Method {
    match method {
        GraphMethod::Get => reqwest::Method::GET,
        GraphMethod::Post => reqwest::Method::POST,
        GraphMethod::Delete => reqwest::Method::DELETE,
    }
}

impl<K: DataKeys, S: ProxyStore> Graph<K, S> {
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

    pub(crate) async fn call_meta(
        &self,
        req: &ProxyRequest,
        found: &Found,
        segments: &[&str],
        trace: &mut CallTrace,
    ) -> MetaOutcome {
        let conn = &found.conn;
        let (token, cached) = match self.open_token(found).await {
            Ok(t) => t,
            Err(answer) => return answer.into(),
        };
        trace.token_from_cache = Some(cached);
        let secrets = match conn.provider {
            Provider::Facebook => match self.secrets.get().await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "could not read the app secrets");
                    return ProxyAnswer::unavailable().into();
                }
            },
            Provider::Instagram => None,
        };
        let base = policy::graph_base(conn.provider, &self.config.meta.urls);
        let version = &self.config.meta.graph_api_version;
        let url = match policy::target_url(base, version, segments) {
            Ok(url) => url,
            Err(e) => {
                tracing::error!(error = %e, "no Graph URL to call");
                return ProxyAnswer::meta_unavailable().into();
            }
        };
        let call = GraphCall {
            method: http_method(req.method),
            url,
            query: &req.query,
            body: req.body.as_ref(),
            token: &token,
            app_secret: secrets.as_ref().map(|s| s.app_secret(Provider::Facebook)),
        };
        match self.send(&call, req.method, trace).await {
            Ok(meta) => self.act_on(conn, meta, &token).await.into(),
            Err(unreachable) => MetaOutcome {
                answer: ProxyAnswer::meta_unavailable(),
                outcome_unknown: unreachable.outcome_unknown(),
            },
        }
    }

    /// Sends the call; only a `GET` is tried again (with jitter, within the
    /// budget) when Meta can't be reached or answers 5xx. `Err`: no answer
    /// worth handing back (a 5xx counts as [`Unreachable::NotSent`]: Meta
    /// said it failed).
    async fn send(
        &self,
        call: &GraphCall<'_>,
        method: GraphMethod,
        trace: &mut CallTrace,
    ) -> Result<GraphAnswer, Unreachable> {
        let started = Instant::now();
        let attempts = if method.is_safe() { GET_ATTEMPTS } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            trace.attempts = attempt;
            let failure = match self.meta.graph_call(call).await {
                Ok(a) => {
                    trace.meta_status = Some(a.status);
                    trace.meta_latency = Some(a.latency);
                    trace.meta_trace_id = a.header("x-fb-trace-id").map(str::to_string);
                    if a.status < 500 {
                        return Ok(a);
                    }
                    Unreachable::NotSent(format!("meta answered {}", a.status))
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "meta unreachable");
                    e
                }
            };
            let wait = Duration::from_millis(rand::rng().random_range(50..=150u64) << attempt);
            if attempt == attempts || started.elapsed() + wait > RETRY_BUDGET {
                return Err(failure);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Meta's answer, acted upon: a dead token marks the connection at once,
    /// a throttle blocks the account for every container, and no credential
    /// ever goes back to the caller (CONTRACT.md, "Proxy amendments").
    async fn act_on(
        &self,
        conn: &Connection,
        meta: GraphAnswer,
        token: &SecretString,
    ) -> ProxyAnswer {
        let Ok(mut body) = serde_json::from_slice::<Value>(&meta.body) else {
            return ProxyAnswer::error(502, "meta_unavailable", "Meta's answer was not JSON.");
        };
        let base = policy::graph_base(conn.provider, &self.config.meta.urls);
        let dropped = rewrite_paging(&mut body, base, &subject(conn));
        let scrubbed = scrub(&mut body, token.expose_secret());
        if dropped + scrubbed > 0 {
            tracing::warn!(
                dropped,
                scrubbed,
                "removed credentials or links from Meta's answer"
            );
        }
        let error = body.get("error").cloned();
        let code = error
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(|c| c.as_i64().or_else(|| c.as_str()?.parse().ok()));
        if matches!(code, Some(190 | 102)) {
            self.token_died(conn).await;
            return ProxyAnswer::error(
                409,
                "connection_needs_reauth",
                "Meta says this connection's token is no longer valid: connect again.",
            )
            .with_meta(error.unwrap_or(Value::Null));
        }
        let mut headers = meta.headers.clone();
        if let Some(mut throttled) = self.note_limits(conn, &meta, code, error).await {
            throttled.headers.append(&mut headers);
            return throttled;
        }
        ProxyAnswer {
            status: meta.status,
            headers,
            body,
            replayed: false,
        }
    }

    /// Records a block Meta's answer puts on the account; `Some`: the answer
    /// is a throttle, handed back as `429`.
    async fn note_limits(
        &self,
        conn: &Connection,
        meta: &GraphAnswer,
        code: Option<i64>,
        error: Option<Value>,
    ) -> Option<ProxyAnswer> {
        let now = self.clock.now();
        let limits = MetaAnswerLimits {
            error_code: code,
            business_use_case_usage: meta.header("x-business-use-case-usage"),
            app_usage: meta.header("x-app-usage"),
        };
        let blocks = ratelimit::blocks(now, &limits)?;
        let block = Block {
            until: blocks.until,
            meta: error.unwrap_or_else(|| json!({"usage": limits_json(meta)})),
        };
        Box::pin(self.record_blocks(conn, blocks, &block, meta)).await;
        ratelimit::is_throttling(code).then(|| rate_limited(&block, now))
    }

    async fn token_died(&self, conn: &Connection) {
        self.tokens.evict(&cache_key(conn));
        let now = self.clock.now();
        let event = Event::needs_reauth(conn, now, self.config.store.event_retention);
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
