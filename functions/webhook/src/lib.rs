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
mod error;
#[cfg(test)]
mod handler_tests;
mod notification;
mod revoke;
mod store;

pub use error::Unavailable;
pub use store::{MetaStore, Stores};

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use shared::config::StoreConfig;
use shared::invoke::AsyncInvoke;
use shared::secrets::{AppSecrets, SecretsCache};
use shared::time::OffsetDateTime;
use shared::webhook::{self, SignedRequest};
use shared::{http, Clock, EnvReader, FromEnv};

use deletion::{DeletionConfig, DeletionJob};

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
    fn read(env: &mut EnvReader) -> Option<Self> {
        Some(Self {
            store: StoreConfig::read(env),
            meta_secret_id: env.required("META_SECRET_ID"),
            public_base_url: env.base_url("PUBLIC_BASE_URL", None),
            data_deletion_function: env.optional("DATA_DELETION_FUNCTION"),
            graph_table: env.optional("GRAPH_TABLE"),
        })
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

/// The handler of Meta's routes, over its store (DynamoDB: [`Stores`]).
pub struct Webhook<S = Stores> {
    config: WebhookConfig,
    store: S,
    secrets: SecretsCache,
    clock: Clock,
    job: Arc<DeletionJob>,
    launch: Launch,
}

impl Webhook<Stores> {
    pub fn new(
        config: WebhookConfig,
        dynamodb: shared::aws_sdk_dynamodb::Client,
        secrets: shared::aws_sdk_secretsmanager::Client,
        clock: Clock,
    ) -> Self {
        let stores = Stores {
            connections: config.store.connections(&dynamodb),
            events: config.store.events(&dynamodb),
        };
        let job = DeletionJob::new(&config.deletion(), dynamodb, clock.clone());
        let secrets = SecretsCache::new(secrets, &config.meta_secret_id);
        Self::with_store(config, stores, secrets, job, clock)
    }
}

impl<S: MetaStore> Webhook<S> {
    /// The handler over any store (the unit tests' is in memory).
    pub fn with_store(
        config: WebhookConfig,
        store: S,
        secrets: SecretsCache,
        job: DeletionJob,
        clock: Clock,
    ) -> Self {
        Self {
            config,
            store,
            secrets,
            job: Arc::new(job),
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

    async fn secrets(&self) -> Result<Arc<AppSecrets>, Unavailable> {
        Ok(self.secrets.get().await?)
    }

    /// `GET /webhook?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...`
    async fn subscription_check(&self, req: &Request) -> Response<Body> {
        let mode = http::query_param(req, "hub.mode");
        let token = http::query_param(req, "hub.verify_token").unwrap_or_default();
        let challenge = http::query_param(req, "hub.challenge").unwrap_or_default();
        let secrets = match self.secrets().await {
            Ok(s) => s,
            Err(e) => return e.response("subscription_check"),
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
            http::text(StatusCode::OK, challenge)
        } else {
            tracing::warn!("webhook subscription check refused");
            http::text(StatusCode::FORBIDDEN, "forbidden".into())
        }
    }

    /// The verified `signed_request` of a form body.
    async fn signed_request(&self, req: &Request) -> Result<SignedRequest, Response<Body>> {
        let form = http::body_bytes(req);
        let signed = url::form_urlencoded::parse(form)
            .find(|(k, _)| k == "signed_request")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let secrets = self
            .secrets()
            .await
            .map_err(|e| e.response("signed_request"))?;
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
pub use notification::to_events;
use revoke::Revoked;

use error::unavailable;

fn with_keys<T>(secrets: &AppSecrets, f: impl Fn(&[&[u8]]) -> T) -> T {
    use shared::secrecy::ExposeSecret;
    f(&[
        secrets.facebook_app_secret.expose_secret().as_bytes(),
        secrets.instagram_app_secret.expose_secret().as_bytes(),
    ])
}

impl<S: MetaStore> Webhook<S> {
    /// Serves this handler on the Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`):
    /// what `main` does once it has built the handler, and what the tests run
    /// against a local Runtime API.
    pub async fn serve(&self) -> Result<(), lambda_http::Error> {
        self.read_secrets_early();
        http::serve(|req| self.handle(req)).await
    }

    /// Every Meta route but the status page needs the app secrets, and a
    /// new container is started for a request: the read starts now, beside
    /// the runtime's first `/next`, and that request waits for it (the
    /// cache's lock) instead of starting its own. If it fails, the request
    /// reads again and answers as it always did (`503` when that fails too).
    fn read_secrets_early(&self) {
        let secrets = self.secrets.clone();
        tokio::spawn(async move {
            // Let the runtime's `/next` go out first: init ends there.
            tokio::task::yield_now().await;
            if let Err(e) = secrets.get().await {
                tracing::warn!(error = %e, "reading the app secrets at start failed");
            }
        });
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
