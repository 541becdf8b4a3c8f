//! Idempotency keys of `POST` and `DELETE` (CONTRACT.md, "Graph proxy",
//! idempotency, and "Proxy amendments"): claimed before Meta is called,
//! scoped to the owner and the connection as connected, settled with the
//! answer, given up when Meta did not act, kept as `outcome_unknown` when no
//! one can tell.

use serde_json::json;
use shared::connection::Connection;
use shared::graph::store::{request_fingerprint, Claim, IdemKey};
use shared::meta::proxy::GraphBody;
use shared::vault::DataKeys;

use crate::{Graph, ProxyAnswer, ProxyRequest, ProxyStore, CLAIM_LEASE};

/// A claimed key: what settles it.
pub(crate) struct Claimed {
    key: String,
    fingerprint: String,
}

/// How a claimed request ended, for its record.
pub(crate) enum Settle<'a> {
    /// Meta answered: keep the answer for replays.
    Answered(&'a ProxyAnswer),
    /// Meta was not called, or certainly did not act: free the key.
    NotSent,
    /// Meta may have acted, and its answer is lost: never send again.
    Unknown,
}

impl Settle<'_> {
    /// Which settlement an answer calls for: throttled, unreachable or the
    /// service failing mean Meta did not act.
    pub(crate) fn of(answer: &ProxyAnswer) -> Settle<'_> {
        if matches!(answer.status, 429 | 502 | 503) {
            Settle::NotSent
        } else {
            Settle::Answered(answer)
        }
    }
}

fn idem_key<'a>(conn: &'a Connection, key: &'a str) -> IdemKey<'a> {
    IdemKey {
        provider: conn.provider,
        account_id: &conn.account_id,
        user_id: &conn.user_id,
        connected_at: conn.connected_at,
        key,
    }
}

fn invalid_key() -> ProxyAnswer {
    ProxyAnswer::error(
        400,
        "invalid_request",
        "The idempotency key must be 1 to 255 visible ASCII characters.",
    )
}

impl<K: DataKeys, S: ProxyStore> Graph<K, S> {
    /// Claims the idempotency key of a `POST`/`DELETE`. `Ok(None)`: no key
    /// (or a `GET`, which is safe to repeat); `Err`: answer at once.
    pub(crate) async fn claim(
        &self,
        req: &ProxyRequest,
        conn: &Connection,
    ) -> Result<Option<Claimed>, ProxyAnswer> {
        let Some(key) = req
            .idempotency_key
            .as_deref()
            .filter(|_| !req.method.is_safe())
        else {
            return Ok(None);
        };
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid_key());
        }
        let body = match &req.body {
            Some(GraphBody::Json(v)) => Some(v.clone()),
            Some(GraphBody::Form(pairs)) => Some(json!(pairs)),
            None => None,
        };
        let method = req.method.as_str();
        let fingerprint = request_fingerprint(method, &req.path, &req.query, body.as_ref());
        let claim = self
            .store
            .claim(
                &idem_key(conn, key),
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
            Claim::Started => Ok(Some(Claimed {
                key: key.to_string(),
                fingerprint,
            })),
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
            Claim::OutcomeUnknown => Err(ProxyAnswer::error(
                409,
                "outcome_unknown",
                "Meta did not answer the first request with this key in time, so whether it \
                 acted is unknown. It is not sent again: check at Meta, then use a new key.",
            )),
        }
    }

    /// Records how a claimed request ended.
    pub(crate) async fn settle(&self, conn: &Connection, claimed: &Claimed, how: Settle<'_>) {
        let key = idem_key(conn, &claimed.key);
        let fp = &claimed.fingerprint;
        let result = match how {
            Settle::Answered(answer) => self.store.finish(&key, fp, &answer.stored()).await,
            Settle::NotSent => self.store.release(&key, fp).await,
            Settle::Unknown => self.store.outcome_unknown(&key, fp).await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "could not record the idempotent request's outcome");
        }
    }
}
