//! `POST /webhook`: Meta's signed notifications (CONTRACT.md, "POST
//! /webhook"). Verify before parsing, over the exact bytes; every update
//! stored once as an event before Meta gets its `200`; a `503` (Meta
//! retries) for whatever could not be stored.

use std::collections::HashMap;
use std::time::Duration;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::event_kind::EventKind;
use shared::http;
use shared::store::{Event, Owner};
use shared::time::OffsetDateTime;
use shared::webhook::{self, SignatureError};
use shared::Provider;

use crate::delivery::Delivery;
use crate::{with_keys, MetaStore, Unavailable, Webhook, STORE_CONCURRENCY};

impl<S: MetaStore> Webhook<S> {
    /// Verifies `signature` over `body` with either app secret, re-reading the
    /// secret once (rate limited) on a mismatch, in case it was rotated.
    async fn verified(&self, body: &[u8], signature: &[u8; 32]) -> Result<bool, Unavailable> {
        let secrets = self.secrets().await?;
        if with_keys(&secrets, |keys| webhook::verify(body, signature, keys)) {
            return Ok(true);
        }
        match self.secrets.reload_rate_limited().await {
            Ok(Some(fresh)) => Ok(with_keys(&fresh, |keys| {
                webhook::verify(body, signature, keys)
            })),
            Ok(None) => Ok(false),
            Err(e) => {
                tracing::error!(error = %e, "could not re-read the app secrets");
                Ok(false)
            }
        }
    }

    /// `POST /webhook`, counted as metrics ([`Delivery`]).
    pub(crate) async fn notification(&self, req: &Request) -> Response<Body> {
        let (response, delivery) = self.deliver(req).await;
        delivery.metrics().emit();
        response
    }

    async fn deliver(&self, req: &Request) -> (Response<Body>, Delivery) {
        let body = http::body_bytes(req);
        if let Err(refused) = self.check_signature(req, body).await {
            return refused;
        }
        let updates = match webhook::parse_notification(body) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "webhook refused: not Meta's shape");
                let resp = http::error(
                    StatusCode::BAD_REQUEST,
                    "invalid_payload",
                    "Not a Meta notification.",
                );
                return (resp, Delivery::Malformed);
            }
        };
        match self.store_updates(&updates).await {
            Ok((received, stored)) => {
                let resp = http::json(StatusCode::OK, &json!({ "received": received }));
                (resp, stored)
            }
            // Nothing is acknowledged that was not stored: Meta retries, and
            // what did get stored is skipped then.
            Err(e) => (e.response("notification"), Delivery::StoreFailed),
        }
    }

    /// The size cap, then the signature over the exact bytes (either app
    /// secret), before anything is parsed.
    async fn check_signature(
        &self,
        req: &Request,
        body: &[u8],
    ) -> Result<(), (Response<Body>, Delivery)> {
        if body.len() > webhook::MAX_BODY_BYTES {
            tracing::warn!(bytes = body.len(), "webhook refused: too large");
            let resp = http::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "The body is over 2 MiB.",
            );
            return Err((resp, Delivery::Oversized));
        }
        let values: Vec<&str> = req
            .headers()
            .get_all("x-hub-signature-256")
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect();
        let signature =
            webhook::parse_signature(&values).map_err(|e| (refuse(e), Delivery::BadSignature))?;
        match self.verified(body, &signature).await {
            Ok(true) => Ok(()),
            Ok(false) => Err((refuse(SignatureError::Mismatch), Delivery::BadSignature)),
            Err(e) => Err((e.response("notification"), Delivery::SecretsUnavailable)),
        }
    }

    /// Every update as one event, its owner looked up, stored once.
    async fn store_updates(
        &self,
        updates: &[webhook::Update<'_>],
    ) -> Result<(usize, Delivery), Unavailable> {
        let entry_ids: Vec<&str> = updates.iter().map(|u| u.entry_id.as_str()).collect();
        let owners = self.store.owners(&entry_ids).await?;
        let now = self.clock.now();
        let events = to_events(updates, &owners, now, self.config.store.event_retention);
        let new = self
            .store
            .put_events(&events, STORE_CONCURRENCY)
            .await
            .inspect_err(|_| tracing::warn!(updates = events.len(), "webhook store failed"))?;
        let duplicates = events.len() - new;
        tracing::info!(updates = events.len(), new, duplicates, "webhook stored");
        Ok((events.len(), Delivery::Stored { new, duplicates }))
    }
}

fn refuse(e: SignatureError) -> Response<Body> {
    tracing::warn!(reason = %e, "webhook refused");
    http::error(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "The signature is missing or wrong.",
    )
}

/// One event per update; the owner (if connected) and provider from the
/// owner claims.
pub fn to_events(
    updates: &[webhook::Update<'_>],
    owners: &HashMap<String, Owner>,
    now: OffsetDateTime,
    retention: Duration,
) -> Vec<Event> {
    updates
        .iter()
        .map(|u| {
            let owner = owners.get(&u.entry_id);
            // The object tells (a Page's), else the owner claim (an account
            // connected only through its Page), else Instagram Login.
            let provider = Provider::of_webhook_object(&u.object)
                .or_else(|| match owner.map(|o| o.providers.as_slice()) {
                    Some([only]) => Some(*only),
                    _ => None,
                })
                .unwrap_or(Provider::Instagram);
            Event {
                event_id: u.event_id.clone(),
                kind: EventKind::Webhook(u.kind.clone()),
                provider: Some(provider),
                account_id: owner
                    .map(|o| o.account_id.clone())
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| u.entry_id.clone()),
                user_id: owner.map(|o| o.user_id.clone()),
                occurred_at: u
                    .occurred_at_ms
                    .and_then(|ms| {
                        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
                    })
                    .unwrap_or(now),
                received_at: now,
                payload: u.raw.to_string(),
                expires_at: now + retention,
            }
        })
        .collect()
}
