//! Meta's side of the service:
//! - `GET /webhook`: the subscription check.
//! - `POST /webhook`: signed notifications, each update stored once as an
//!   event before Meta gets its `200`.
//! - `POST /meta/deauthorize`: the person removed the app: revoke.
//! - `POST /meta/data-deletion`: tokens deleted at once, events and the
//!   proxy's stored answers by the asynchronous job (`deletion`).
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
pub mod delivery;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use rand::RngExt;
use serde_json::json;
use shared::clock::rfc3339;
use shared::config::StoreConfig;
use shared::connection::{Connection, Lifecycle};
use shared::invoke::AsyncInvoke;
use shared::logging::tag;
use shared::secrets::{AppSecrets, SecretsCache};
use shared::store::{
    ConnectionStore, DeletionAccount, DeletionPerson, DeletionRecord, DeletionStatus, Event,
    EventStore, Owner, UserConnections, DELETIONS_PER_PERSON,
};
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

    /// `POST /meta/deauthorize`: every connection of that person granted
    /// before the request was issued is revoked and its token deleted; a
    /// grant made after it is left alone.
    async fn deauthorize(&self, req: &Request) -> Response<Body> {
        let request = match self.signed_request(req).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let issued_at = self.issued_at(&request);
        match self
            .revoke_granted_before(&request.user_id, issued_at)
            .await
        {
            Ok(revoked) => {
                let newly = revoked.iter().filter(|r| r.newly).count();
                tracing::info!(meta_user = %tag(&request.user_id), revoked = newly, "deauthorized");
                http::json(StatusCode::OK, &json!({"revoked": newly}))
            }
            Err(()) => unavailable(),
        }
    }

    /// Revokes the person's connections whose grant is not newer than
    /// `issued_at`, and returns them (revoked now, or already before). A
    /// connection Meta issued its token for after `issued_at` was made again
    /// after the request: it is not touched, even if that happens while this
    /// runs (the revoke's condition).
    async fn revoke_granted_before(
        &self,
        meta_user: &str,
        issued_at: OffsetDateTime,
    ) -> Result<Vec<Revoked>, ()> {
        let conns = self
            .connections
            .by_meta_user(meta_user)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not find the person's connections");
            })?;
        let now = self.clock.now();
        let mut out = Vec::new();
        let mut kept = 0;
        for c in conns {
            if c.token_issued_at > issued_at {
                kept += 1;
                continue;
            }
            let mut revoked = c.clone();
            revoked.status = shared::connection::Status::Revoked;
            let event = Event::lifecycle(
                Lifecycle::Revoked,
                &revoked,
                now,
                self.config.store.event_retention,
            );
            let store_failed = |e: shared::store::StoreError| {
                tracing::error!(error = %e, "could not revoke a connection");
            };
            if self
                .connections
                .revoke_granted_before(&c, issued_at, &event, now)
                .await
                .map_err(store_failed)?
            {
                out.push(Revoked {
                    conn: c,
                    newly: true,
                });
                continue;
            }
            // Nothing changed: already revoked, gone, or granted again since
            // it was read. Only the first still concerns this request.
            let current = self
                .connections
                .get(&c.user_id, c.provider, &c.account_id)
                .await
                .map_err(store_failed)?;
            match current {
                Some((now_conn, _)) if now_conn.token_issued_at <= issued_at => {
                    out.push(Revoked {
                        conn: now_conn,
                        newly: false,
                    });
                }
                Some(_) => kept += 1,
                None => {}
            }
        }
        if kept > 0 {
            tracing::info!(
                meta_user = %tag(meta_user),
                kept,
                "signed_request older than a grant: that grant is kept"
            );
        }
        Ok(out)
    }

    /// `POST /meta/data-deletion`: the person's connections granted before
    /// the request are revoked (tokens deleted) at once, the product is told
    /// (`data_deletion.requested`), and the job deleting their stored events
    /// is started; Meta gets the status URL and the confirmation code at once,
    /// whatever the amount of data. The same request again gets the same code
    /// (and restarts its job if it is not done); at most
    /// [`DELETIONS_PER_PERSON`] records exist per person, further requests
    /// reuse the latest.
    async fn data_deletion(&self, req: &Request) -> Response<Body> {
        let request = match self.signed_request(req).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let Ok(record) = self.deletion_for(&request).await else {
            return unavailable();
        };
        http::json(
            StatusCode::OK,
            &json!({
                "url": status_url(&self.config.public_base_url, &record.code),
                "confirmation_code": record.code,
                "status": record.status.as_str(),
            }),
        )
    }

    /// The deletion record that answers `request`: the one it already made
    /// (Meta's retry, a replay), or a new one. `Err`: a store or the job's
    /// start failed (logged); Meta retries and gets the same code.
    async fn deletion_for(&self, request: &SignedRequest) -> Result<DeletionRecord, ()> {
        let meta_user = request.user_id.as_str();
        let person = self
            .connections
            .deletion_person(meta_user)
            .await
            .map_err(deletion_store_failed)?;
        if let Some(record) = self.deletion_again(request, person.as_ref()).await? {
            tracing::info!(meta_user = %tag(meta_user), "data deletion requested again: same code");
            return Ok(record);
        }
        self.new_deletion(request, person.as_ref()).await
    }

    /// The record of this very request (same person, same `issued_at`), its
    /// job started again if still pending.
    async fn deletion_again(
        &self,
        request: &SignedRequest,
        person: Option<&DeletionPerson>,
    ) -> Result<Option<DeletionRecord>, ()> {
        let Some(p) = person
            .filter(|p| request.issued_at.is_some() && p.latest_issued_at == request.issued_at)
        else {
            return Ok(None);
        };
        let record = self
            .connections
            .get_deletion(&p.latest_code)
            .await
            .map_err(deletion_store_failed)?;
        if let Some(record) = &record {
            if record.status == DeletionStatus::Pending {
                self.launch(&record.code).await?;
            }
        }
        Ok(record)
    }

    /// Revokes what the person granted before the request, records the
    /// request (with every account it covers: [`accounts::covered`]), tells
    /// the product and starts the job.
    async fn new_deletion(
        &self,
        request: &SignedRequest,
        person: Option<&DeletionPerson>,
    ) -> Result<DeletionRecord, ()> {
        let meta_user = request.user_id.as_str();
        let revoked = self
            .revoke_granted_before(meta_user, self.issued_at(request))
            .await?;
        let accounts = self.covered_accounts(meta_user, &revoked).await?;
        let now = self.clock.now();
        let record = self
            .deletion_record(person, accounts, now)
            .await
            .map_err(deletion_store_failed)?;
        // Tell the product first: it must delete its own copies.
        for account in deletion::noticed(&record.accounts) {
            let notice = deletion::notice(
                &record.code,
                account,
                now,
                self.config.store.event_retention,
            );
            self.events
                .put(&notice)
                .await
                .map_err(deletion_store_failed)?;
        }
        let count = match person {
            Some(p) if p.count >= DELETIONS_PER_PERSON => p.count,
            Some(p) => p.count + 1,
            None => 1,
        };
        let started = self
            .connections
            .start_deletion(meta_user, request.issued_at, &record, person, count)
            .await
            .map_err(deletion_store_failed)?;
        if !started {
            tracing::warn!(meta_user = %tag(meta_user), "data deletion: another request of this person at the same time; Meta will retry");
            return Err(());
        }
        if record.status == DeletionStatus::Pending {
            // On failure the record is pending; Meta's retry starts the job.
            self.launch(&record.code).await?;
        }
        tracing::info!(
            meta_user = %tag(meta_user),
            connections = revoked.len(),
            accounts = record.accounts.len(),
            status = record.status.as_str(),
            "data deletion requested"
        );
        Ok(record)
    }

    /// The record a new request writes: a new code, or, past the cap, the
    /// latest one again with the accounts it still had to do.
    async fn deletion_record(
        &self,
        person: Option<&DeletionPerson>,
        mut accounts: Vec<DeletionAccount>,
        now: OffsetDateTime,
    ) -> Result<DeletionRecord, shared::store::StoreError> {
        let mut code = confirmation_code();
        let mut events_deleted = 0;
        if let Some(p) = person.filter(|p| p.count >= DELETIONS_PER_PERSON) {
            code = p.latest_code.clone();
            if let Some(latest) = self.connections.get_deletion(&code).await? {
                events_deleted = latest.events_deleted;
                for a in latest.accounts {
                    if !accounts
                        .iter()
                        .any(|b| b.provider == a.provider && b.account_id == a.account_id)
                    {
                        accounts.push(a);
                    }
                }
            }
            tracing::warn!("data deletion: this person's request limit is reached; the latest record is reused");
        }
        let done = accounts.is_empty();
        Ok(DeletionRecord {
            code,
            status: if done {
                DeletionStatus::Complete
            } else {
                DeletionStatus::Pending
            },
            requested_at: now,
            completed_at: done.then_some(now),
            accounts,
            events_deleted,
        })
    }

    /// The accounts a new request of `meta_user` covers: the connections it
    /// revoked, and the ones the person deleted within the retention
    /// (tombstones) that nobody holds again since.
    async fn covered_accounts(
        &self,
        meta_user: &str,
        revoked: &[Revoked],
    ) -> Result<Vec<DeletionAccount>, ()> {
        let deleted = self
            .connections
            .deleted_accounts(meta_user, self.clock.now())
            .await
            .map_err(deletion_store_failed)?;
        let mut gone = Vec::new();
        for account in deleted {
            let owner = self
                .connections
                .owner_of(&account.account_id)
                .await
                .map_err(deletion_store_failed)?;
            gone.push(accounts::Gone { account, owner });
        }
        Ok(accounts::covered(deletion_accounts(revoked), gone))
    }

    /// Starts the job for `code`.
    async fn launch(&self, code: &str) -> Result<(), ()> {
        match &self.launch {
            Launch::Lambda(job) => deletion::invoke(job, code, 0)
                .await
                .map_err(|e| tracing::error!(error = %e, "could not start the data-deletion job")),
            Launch::InProcess => {
                let (job, code) = (self.job.clone(), code.to_string());
                tokio::spawn(async move {
                    let stop_at = Instant::now() + Duration::from_secs(300);
                    if let Err(e) = job.run(&code, stop_at).await {
                        tracing::error!(error = %e, "data deletion failed");
                    }
                });
                Ok(())
            }
            Launch::Later => Ok(()),
        }
    }

    /// `GET /meta/data-deletion/{code}`: `pending`, then `complete`; never
    /// personal data.
    async fn deletion_status(&self, code: &str) -> Response<Body> {
        let not_found = || {
            http::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "No deletion request has this code.",
            )
        };
        if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return not_found();
        }
        match self.connections.get_deletion(code).await {
            Ok(Some(r)) => http::json(
                StatusCode::OK,
                &json!({
                    "confirmation_code": r.code,
                    "status": r.status.as_str(),
                    "requested_at": rfc3339(r.requested_at),
                    "completed_at": r.completed_at.map(rfc3339),
                    "message": match r.status {
                        DeletionStatus::Pending => "Your access tokens have been deleted; your stored events are being deleted.",
                        DeletionStatus::Complete => "Your Instagram connection data (access tokens and stored events) has been deleted.",
                    },
                }),
            ),
            Ok(None) => not_found(),
            Err(e) => {
                tracing::error!(error = %e, "could not read a deletion record");
                unavailable()
            }
        }
    }
}

/// The status page of deletion `code`, on the public API: never under Meta's
/// path prefix, whatever path the request came in on.
pub fn status_url(public_base_url: &str, code: &str) -> String {
    format!("{public_base_url}/meta/data-deletion/{code}")
}

/// A connection a Meta callback concerns, and whether this call revoked it.
struct Revoked {
    conn: Connection,
    newly: bool,
}

fn deletion_store_failed(e: shared::store::StoreError) {
    tracing::error!(error = %e, "data deletion: store failed; Meta will retry");
}

/// The accounts of the revoked connections ([`accounts::covered`] keeps
/// each once).
fn deletion_accounts(revoked: &[Revoked]) -> Vec<DeletionAccount> {
    revoked
        .iter()
        .map(|r| DeletionAccount {
            provider: r.conn.provider,
            account_id: r.conn.account_id.clone(),
            user_id: r.conn.user_id.clone(),
        })
        .collect()
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
