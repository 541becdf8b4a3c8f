//! Meta's side of the service:
//! - `GET /webhook`: the subscription check.
//! - `POST /webhook`: signed notifications, each update stored once as an
//!   event before Meta gets its `200`.
//! - `POST /meta/deauthorize`: the person removed the app: revoke (`revoke`).
//! - `POST /meta/data-deletion`: tokens deleted at once, events and the
//!   proxy's stored answers by the asynchronous job (`deletion_request`,
//!   which accounts: `accounts`; the job: `deletion`).
//! - `GET /meta/data-deletion/{code}`: the status page Meta shows the person.
//!
//! Meta's routes are deployed under an unguessable path prefix (the
//! template's `MetaPathSecret`); they are answered the same whatever precedes
//! them ([`meta_route`]). The status page is for people, not Meta: it is on
//! the public API, and its URL (`PUBLIC_BASE_URL/meta/data-deletion/<code>`)
//! never carries the prefix.
//!
//! This function holds no KMS permission: it can delete tokens, never read them.

pub mod accounts;
pub mod deletion;
mod deletion_request;
pub mod delivery;
mod revoke;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::config::StoreConfig;
use shared::invoke::AsyncInvoke;
use shared::secrets::{AppSecrets, SecretsCache};
use shared::store::{ConnectionStore, Event, EventStore, Owner};
use shared::time::OffsetDateTime;
use shared::webhook::{self, SignatureError, SignedRequest};
use shared::{http, Clock, EnvReader, FromEnv, Provider};

use deletion::{DeletionConfig, DeletionJob};
use delivery::Delivery;

/// Conditional puts in flight at once while storing a delivery.
pub const STORE_CONCURRENCY: usize = 64;

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub store: StoreConfig,
    pub meta_secret_id: String,
    /// The public API's base: the status URL handed out is
    /// `<this>/meta/data-deletion/<code>`, never under Meta's prefix.
    pub public_base_url: String,
    /// The `data-deletion` function, invoked asynchronously for each request.
    pub data_deletion_function: String,
    /// The Graph proxy's table, for the job when it runs in this process (the
    /// local stack); in AWS the `data-deletion` function runs it.
    pub graph_table: String,
}

impl FromEnv for WebhookConfig {
    fn read(env: &mut EnvReader) -> Self {
        Self {
            store: StoreConfig::read(env),
            meta_secret_id: env.required("META_SECRET_ID"),
            public_base_url: env.base_url("PUBLIC_BASE_URL", None),
            data_deletion_function: env.optional("DATA_DELETION_FUNCTION"),
            graph_table: env.optional("GRAPH_TABLE"),
        }
    }
}

impl WebhookConfig {
    fn deletion(&self) -> DeletionConfig {
        DeletionConfig {
            store: self.store.clone(),
            graph_table: self.graph_table.clone(),
        }
    }
}

/// How a data-deletion request's job is started.
pub enum Launch {
    /// An asynchronous invocation of the `data-deletion` function (AWS).
    Lambda(AsyncInvoke),
    /// A task in this process (the local stack).
    InProcess,
    /// Not at all: the caller runs [`Webhook::deletion_job`] itself (tests).
    Later,
}

/// A Meta-facing route, whatever path prefix precedes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaRoute<'a> {
    SubscriptionCheck,
    Notification,
    Deauthorize,
    DataDeletion,
    DeletionStatus(&'a str),
}

/// The Meta-facing route of `path`, and the prefix before it (`""` or
/// `/<segments>`). The routes are matched by their ending, so they are
/// answered the same under any prefix (API Gateway only lets through the
/// one deployed).
pub fn meta_route<'a>(method: &Method, path: &'a str) -> Option<(&'a str, MetaRoute<'a>)> {
    let path = path.trim_end_matches('/');
    let fixed = [
        (Method::GET, "/webhook", MetaRoute::SubscriptionCheck),
        (Method::POST, "/webhook", MetaRoute::Notification),
        (Method::POST, "/meta/deauthorize", MetaRoute::Deauthorize),
        (Method::POST, "/meta/data-deletion", MetaRoute::DataDeletion),
    ];
    for (m, suffix, route) in fixed {
        if *method == m {
            if let Some(prefix) = path.strip_suffix(suffix) {
                return Some((prefix, route));
            }
        }
    }
    let (head, code) = path.rsplit_once('/')?;
    let prefix = head.strip_suffix("/meta/data-deletion")?;
    (*method == Method::GET).then_some((prefix, MetaRoute::DeletionStatus(code)))
}

pub struct Webhook {
    config: WebhookConfig,
    connections: ConnectionStore,
    events: EventStore,
    secrets: SecretsCache,
    clock: Clock,
    job: Arc<DeletionJob>,
    launch: Launch,
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let resp = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::Text(body))
        .expect("valid response");
    http::secure_headers(resp)
}

impl Webhook {
    pub fn new(
        config: WebhookConfig,
        dynamodb: shared::aws_sdk_dynamodb::Client,
        secrets: shared::aws_sdk_secretsmanager::Client,
        clock: Clock,
    ) -> Self {
        Self {
            connections: config.store.connections(&dynamodb),
            job: Arc::new(DeletionJob::new(
                &config.deletion(),
                dynamodb.clone(),
                clock.clone(),
            )),
            events: config.store.events(&dynamodb),
            secrets: SecretsCache::new(secrets, &config.meta_secret_id),
            config,
            clock,
            launch: Launch::Later,
        }
    }

    /// How data-deletion jobs are started (default: [`Launch::Later`]).
    pub fn with_launch(mut self, launch: Launch) -> Self {
        self.launch = launch;
        self
    }

    /// The data-deletion job, as the `data-deletion` function runs it.
    pub fn deletion_job(&self) -> &DeletionJob {
        &self.job
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        let path = req.uri().path().to_string();
        match meta_route(req.method(), &path) {
            Some((_, MetaRoute::SubscriptionCheck)) => self.subscription_check(&req).await,
            Some((_, MetaRoute::Notification)) => self.notification(&req).await,
            Some((_, MetaRoute::Deauthorize)) => self.deauthorize(&req).await,
            Some((_, MetaRoute::DataDeletion)) => self.data_deletion(&req).await,
            Some((_, MetaRoute::DeletionStatus(code))) => self.deletion_status(code).await,
            None => http::error(StatusCode::NOT_FOUND, "not_found", "No such route."),
        }
    }

    async fn secrets(&self) -> Option<std::sync::Arc<AppSecrets>> {
        self.secrets
            .get()
            .await
            .inspect_err(|e| tracing::error!(error = %e, "could not read the app secrets"))
            .ok()
    }

    /// `GET /webhook?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...`
    async fn subscription_check(&self, req: &Request) -> Response<Body> {
        let mode = http::query_param(req, "hub.mode");
        let token = http::query_param(req, "hub.verify_token").unwrap_or_default();
        let challenge = http::query_param(req, "hub.challenge").unwrap_or_default();
        let Some(secrets) = self.secrets().await else {
            return unavailable();
        };
        use shared::secrecy::ExposeSecret;
        let expected = secrets.webhook_verify_token.expose_secret();
        let ok = mode.as_deref() == Some("subscribe")
            && !expected.is_empty()
            && webhook::secret_eq(token.as_bytes(), expected.as_bytes())
            && !challenge.is_empty()
            && challenge.len() <= 256;
        if ok {
            tracing::info!("webhook subscription verified");
            text(StatusCode::OK, challenge)
        } else {
            tracing::warn!("webhook subscription check refused");
            text(StatusCode::FORBIDDEN, "forbidden".into())
        }
    }

    /// Verifies `signature` over `body` with either app secret, re-reading the
    /// secret once (rate limited) on a mismatch, in case it was rotated.
    async fn verified(&self, body: &[u8], signature: &[u8; 32]) -> Result<bool, ()> {
        let secrets = self.secrets().await.ok_or(())?;
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
    async fn notification(&self, req: &Request) -> Response<Body> {
        let (response, delivery) = self.deliver(req).await;
        delivery.metrics().emit();
        response
    }

    async fn deliver(&self, req: &Request) -> (Response<Body>, Delivery) {
        let body = http::body_bytes(req);
        if body.len() > webhook::MAX_BODY_BYTES {
            tracing::warn!(bytes = body.len(), "webhook refused: too large");
            return (
                http::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "The body is over 2 MiB.",
                ),
                Delivery::Oversized,
            );
        }
        let values: Vec<&str> = req
            .headers()
            .get_all("x-hub-signature-256")
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect();
        let signature = match webhook::parse_signature(&values) {
            Ok(sig) => sig,
            Err(e) => return (refuse(e), Delivery::BadSignature),
        };
        match self.verified(body, &signature).await {
            Ok(true) => {}
            Ok(false) => return (refuse(SignatureError::Mismatch), Delivery::BadSignature),
            Err(()) => return (unavailable(), Delivery::SecretsUnavailable),
        }
        let updates = match webhook::parse_notification(body) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "webhook refused: not Meta's shape");
                return (
                    http::error(
                        StatusCode::BAD_REQUEST,
                        "invalid_payload",
                        "Not a Meta notification.",
                    ),
                    Delivery::Malformed,
                );
            }
        };
        let entry_ids: Vec<&str> = updates.iter().map(|u| u.entry_id.as_str()).collect();
        let owners = match self.connections.owners(&entry_ids).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "webhook: owner lookup failed; Meta will retry");
                return (unavailable(), Delivery::StoreFailed);
            }
        };
        let now = self.clock.now();
        let events = to_events(&updates, &owners, now, self.config.store.event_retention);
        match self.events.put_all(&events, STORE_CONCURRENCY).await {
            Ok(new) => {
                tracing::info!(
                    updates = events.len(),
                    new,
                    duplicates = events.len() - new,
                    "webhook stored"
                );
                let stored = Delivery::Stored {
                    new,
                    duplicates: events.len() - new,
                };
                (
                    http::json(StatusCode::OK, &json!({"received": events.len()})),
                    stored,
                )
            }
            Err(e) => {
                // Nothing is acknowledged that was not stored: Meta retries,
                // and what did get stored is skipped then.
                tracing::error!(error = %e, updates = events.len(), "webhook store failed; Meta will retry");
                (unavailable(), Delivery::StoreFailed)
            }
        }
    }

    /// The verified `signed_request` of a form body.
    async fn signed_request(&self, req: &Request) -> Result<SignedRequest, Response<Body>> {
        let form = http::body_bytes(req);
        let signed = url::form_urlencoded::parse(form)
            .find(|(k, _)| k == "signed_request")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let Some(secrets) = self.secrets().await else {
            return Err(unavailable());
        };
        let mut result = with_keys(&secrets, |keys| {
            webhook::verify_signed_request(&signed, keys)
        });
        if result == Err(webhook::SignedRequestError::Mismatch) {
            if let Ok(Some(fresh)) = self.secrets.reload_rate_limited().await {
                result = with_keys(&fresh, |keys| webhook::verify_signed_request(&signed, keys));
            }
        }
        result.map_err(|e| {
            tracing::warn!(error = %e, "signed_request refused");
            http::error(
                StatusCode::BAD_REQUEST,
                "invalid_signed_request",
                &e.to_string(),
            )
        })
    }

    /// When the request was issued: Meta's `issued_at`, or (never seen from
    /// Meta) the time it arrived.
    fn issued_at(&self, request: &SignedRequest) -> OffsetDateTime {
        request
            .issued_at
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .unwrap_or_else(|| self.clock.now())
    }
}

pub use deletion_request::status_url;
use revoke::Revoked;

/// `503`: something this service needs is down for now. Meta retries a
/// delivery it did not get a 2xx for, so nothing is lost.
fn unavailable() -> Response<Body> {
    http::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Try again.")
}

fn refuse(e: SignatureError) -> Response<Body> {
    tracing::warn!(reason = %e, "webhook refused");
    http::error(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "The signature is missing or wrong.",
    )
}

fn with_keys<T>(secrets: &AppSecrets, f: impl Fn(&[&[u8]]) -> T) -> T {
    use shared::secrecy::ExposeSecret;
    f(&[
        secrets.facebook_app_secret.expose_secret().as_bytes(),
        secrets.instagram_app_secret.expose_secret().as_bytes(),
    ])
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
            let provider = match (u.object.as_str(), owner) {
                ("page", _) => "facebook",
                (_, Some(o)) if o.providers == [Provider::Facebook] => "facebook",
                _ => "instagram",
            };
            Event {
                event_id: u.event_id.clone(),
                kind: u.kind.clone(),
                provider: Some(provider.into()),
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

impl Webhook {
    /// Serves this handler on the Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`):
    /// what `main` does once it has built the handler, and what the tests run
    /// against a local Runtime API.
    pub async fn serve(&self) -> Result<(), lambda_http::Error> {
        http::serve(|req| self.handle(req)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_routes_are_answered_under_any_prefix() {
        let (get, post) = (Method::GET, Method::POST);
        for prefix in ["", "/s3cr3t-Path_0123456789abcdef", "/a/b"] {
            let at = |p: &str| format!("{prefix}{p}");
            assert_eq!(
                meta_route(&get, &at("/webhook")),
                Some((prefix, MetaRoute::SubscriptionCheck))
            );
            assert_eq!(
                meta_route(&post, &at("/webhook/")),
                Some((prefix, MetaRoute::Notification))
            );
            assert_eq!(
                meta_route(&post, &at("/meta/deauthorize")),
                Some((prefix, MetaRoute::Deauthorize))
            );
            assert_eq!(
                meta_route(&post, &at("/meta/data-deletion")),
                Some((prefix, MetaRoute::DataDeletion))
            );
            assert_eq!(
                meta_route(&get, &at("/meta/data-deletion/ABC123")),
                Some((prefix, MetaRoute::DeletionStatus("ABC123")))
            );
            for (m, p) in [
                (&get, "/meta/deauthorize"),
                (&post, "/meta/data-deletion/ABC"),
                (&get, "/meta/data-deletion"),
                (&post, "/xwebhook"),
                (&post, "/webhook/x"),
                (&Method::DELETE, "/webhook"),
            ] {
                assert_eq!(meta_route(m, &at(p)), None, "{m} {prefix}{p}");
            }
        }
    }
}
