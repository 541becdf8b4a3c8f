//! Meta's side of the service:
//! - `GET /webhook`: the subscription check.
//! - `POST /webhook`: signed notifications, each update stored once as an
//!   event before Meta gets its `200`.
//! - `POST /meta/deauthorize`: the person removed the app: revoke.
//! - `POST /meta/data-deletion` and `GET /meta/data-deletion/{code}`.
//!
//! This function holds no KMS permission: it can delete tokens, never read them.

use std::collections::HashMap;
use std::time::Duration;

use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use rand::RngExt;
use serde_json::json;
use shared::clock::rfc3339;
use shared::config::{self};
use shared::connection::Connection;
use shared::logging::tag;
use shared::secrets::{AppSecrets, SecretsCache};
use shared::store::{ConnectionStore, DeletionRecord, Event, EventStore, Owner};
use shared::time::OffsetDateTime;
use shared::webhook::{self, SignatureError};
use shared::{http, Clock, ConfigError, EnvReader, Provider};

/// Conditional puts in flight at once while storing a delivery.
pub const STORE_CONCURRENCY: usize = 64;

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub connections_table: String,
    pub events_table: String,
    pub meta_secret_id: String,
    pub public_base_url: String,
    pub event_retention: Duration,
}

impl WebhookConfig {
    pub fn from_env(mut env: EnvReader) -> Result<Self, ConfigError> {
        let config = Self {
            connections_table: config::table(&mut env, "CONNECTIONS_TABLE"),
            events_table: config::table(&mut env, "EVENTS_TABLE"),
            meta_secret_id: env.required("META_SECRET_ID"),
            public_base_url: env.base_url("PUBLIC_BASE_URL", None),
            event_retention: config::event_retention(&mut env),
        };
        env.finish().map(|()| config)
    }
}

pub struct Webhook {
    config: WebhookConfig,
    connections: ConnectionStore,
    events: EventStore,
    secrets: SecretsCache,
    clock: Clock,
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
            connections: ConnectionStore::new(
                dynamodb.clone(),
                &config.connections_table,
                &config.events_table,
            ),
            events: EventStore::new(dynamodb, &config.events_table),
            secrets: SecretsCache::new(secrets, &config.meta_secret_id),
            config,
            clock,
        }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        let path = req.uri().path().trim_end_matches('/').to_string();
        match (req.method().clone(), path.as_str()) {
            (Method::GET, "/webhook") => self.subscription_check(&req).await,
            (Method::POST, "/webhook") => self.notification(&req).await,
            (Method::POST, "/meta/deauthorize") => self.deauthorize(&req).await,
            (Method::POST, "/meta/data-deletion") => self.data_deletion(&req).await,
            (Method::GET, p) if p.starts_with("/meta/data-deletion/") => {
                self.deletion_status(&req).await
            }
            _ => http::error(StatusCode::NOT_FOUND, "not_found", "No such route."),
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

    /// `POST /webhook`.
    async fn notification(&self, req: &Request) -> Response<Body> {
        let body = http::body_bytes(req);
        if body.len() > webhook::MAX_BODY_BYTES {
            tracing::warn!(bytes = body.len(), "webhook refused: too large");
            return http::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "The body is over 2 MiB.",
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
            Err(e) => return refuse(e),
        };
        match self.verified(body, &signature).await {
            Ok(true) => {}
            Ok(false) => return refuse(SignatureError::Mismatch),
            Err(()) => return unavailable(),
        }
        let updates = match webhook::parse_notification(body) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "webhook refused: not Meta's shape");
                return http::error(
                    StatusCode::BAD_REQUEST,
                    "invalid_payload",
                    "Not a Meta notification.",
                );
            }
        };
        let entry_ids: Vec<&str> = updates.iter().map(|u| u.entry_id.as_str()).collect();
        let owners = match self.connections.owners(&entry_ids).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "webhook: owner lookup failed; Meta will retry");
                return unavailable();
            }
        };
        let now = self.clock.now();
        let events = to_events(&updates, &owners, now, self.config.event_retention);
        match self.events.put_all(&events, STORE_CONCURRENCY).await {
            Ok(new) => {
                tracing::info!(
                    updates = events.len(),
                    new,
                    duplicates = events.len() - new,
                    "webhook stored"
                );
                http::json(StatusCode::OK, &json!({"received": events.len()}))
            }
            Err(e) => {
                // Nothing is acknowledged that was not stored: Meta retries,
                // and what did get stored is skipped then.
                tracing::error!(error = %e, updates = events.len(), "webhook store failed; Meta will retry");
                unavailable()
            }
        }
    }

    /// The person in a verified `signed_request` form body.
    async fn signed_request(&self, req: &Request) -> Result<String, Response<Body>> {
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
        result.map(|r| r.user_id).map_err(|e| {
            tracing::warn!(error = %e, "signed_request refused");
            http::error(
                StatusCode::BAD_REQUEST,
                "invalid_signed_request",
                &e.to_string(),
            )
        })
    }

    /// `POST /meta/deauthorize`: every connection of that person is revoked and
    /// its token deleted.
    async fn deauthorize(&self, req: &Request) -> Response<Body> {
        let meta_user = match self.signed_request(req).await {
            Ok(u) => u,
            Err(resp) => return resp,
        };
        match self.revoke_all(&meta_user, "connection.revoked").await {
            Ok(conns) => {
                tracing::info!(meta_user = %tag(&meta_user), revoked = conns.len(), "deauthorized");
                http::json(StatusCode::OK, &json!({"revoked": conns.len()}))
            }
            Err(()) => unavailable(),
        }
    }

    async fn revoke_all(&self, meta_user: &str, kind: &str) -> Result<Vec<Connection>, ()> {
        let conns = self
            .connections
            .by_meta_user(meta_user)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not find the person's connections");
            })?;
        let now = self.clock.now();
        for c in &conns {
            let mut revoked = c.clone();
            revoked.status = shared::connection::Status::Revoked;
            let event = Event::lifecycle(kind, &revoked, now, self.config.event_retention);
            self.connections.revoke(c, &event, now).await.map_err(|e| {
                tracing::error!(error = %e, "could not revoke a connection");
            })?;
        }
        Ok(conns)
    }

    /// `POST /meta/data-deletion`: tokens and stored events of that person are
    /// deleted; Meta gets a status URL and a confirmation code.
    async fn data_deletion(&self, req: &Request) -> Response<Body> {
        let meta_user = match self.signed_request(req).await {
            Ok(u) => u,
            Err(resp) => return resp,
        };
        let now = self.clock.now();
        let code = confirmation_code();
        let result = async {
            let conns = self.revoke_all(&meta_user, "connection.revoked").await?;
            let mut deleted = 0;
            for c in &conns {
                deleted += self.events.delete_for_account(&c.account_id).await.map_err(|e| {
                    tracing::error!(error = %e, "could not delete events");
                })?;
            }
            // Tell the product, which must delete its own copies.
            for c in &conns {
                let mut e = Event::lifecycle("data_deletion.requested", c, now, self.config.event_retention);
                e.payload = json!({"confirmation_code": code, "provider": c.provider.as_str(), "account_id": c.account_id}).to_string();
                self.events.put(&e).await.map_err(|e| {
                    tracing::error!(error = %e, "could not write the deletion event");
                })?;
            }
            self.connections
                .put_deletion(&DeletionRecord {
                    code: code.clone(),
                    status: "completed".into(),
                    requested_at: now,
                    completed_at: Some(self.clock.now()),
                })
                .await
                .map_err(|e| tracing::error!(error = %e, "could not record the deletion"))?;
            Ok::<_, ()>((conns.len(), deleted))
        }
        .await;
        match result {
            Ok((connections, events)) => {
                tracing::info!(meta_user = %tag(&meta_user), connections, events, "data deleted");
                http::json(
                    StatusCode::OK,
                    &json!({
                        "url": format!("{}/meta/data-deletion/{code}", self.config.public_base_url),
                        "confirmation_code": code,
                    }),
                )
            }
            Err(()) => unavailable(),
        }
    }

    /// `GET /meta/data-deletion/{code}`.
    async fn deletion_status(&self, req: &Request) -> Response<Body> {
        let code = http::path_param(req, "code", 2).unwrap_or_default();
        if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return http::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "No deletion request has this code.",
            );
        }
        match self.connections.get_deletion(&code).await {
            Ok(Some(r)) => http::json(
                StatusCode::OK,
                &json!({
                    "confirmation_code": r.code,
                    "status": r.status,
                    "requested_at": rfc3339(r.requested_at),
                    "completed_at": r.completed_at.map(rfc3339),
                    "message": "Your Instagram connection data (access tokens and stored events) has been deleted.",
                }),
            ),
            Ok(None) => http::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "No deletion request has this code.",
            ),
            Err(e) => {
                tracing::error!(error = %e, "could not read a deletion record");
                unavailable()
            }
        }
    }
}

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

/// 20 alphanumeric characters (about 119 bits).
fn confirmation_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
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
        lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
            Ok::<_, std::convert::Infallible>(self.handle(req).await)
        }))
        .await
    }
}
