//! The scheduled refresh (EventBridge, daily by default).
//!
//! Finds what is due through the `by_due` index (never a scan), takes a lease
//! per connection (a conditional write) and works on the row as that write
//! returned it, calls Meta with bounded concurrency, and writes the outcome
//! only over the version it leased. It stops starting work before the Lambda
//! deadline; whatever is left stays due for the next run. It also finishes
//! deleted connections: unsubscribes and revokes them at Meta, then destroys
//! the last copy of their token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use shared::config::{self, MetaAppConfig};
use shared::connection::{Connection, Status};
use shared::logging::tag;
use shared::meta::{MetaClient, MetaError};
use shared::refresh::{self, Plan};
use shared::secrets::{AppSecrets, SecretsCache};
use shared::store::{CleanupJob, ConnectionStore, Event, Settle};
use shared::time::OffsetDateTime;
use shared::vault::{DataKeys, TokenOwner, TokenVault};
use shared::{Clock, ConfigError, EnvReader, Provider};

#[derive(Clone, Debug)]
pub struct RefreshConfig {
    pub connections_table: String,
    pub events_table: String,
    pub token_key_id: String,
    pub meta_secret_id: String,
    pub meta: MetaAppConfig,
    pub window: time::Duration,
    pub concurrency: usize,
    pub max_failure_days: u32,
    pub event_retention: Duration,
}

use shared::time;

impl RefreshConfig {
    pub fn from_env(mut env: EnvReader) -> Result<Self, ConfigError> {
        let config = Self {
            connections_table: config::table(&mut env, "CONNECTIONS_TABLE"),
            events_table: config::table(&mut env, "EVENTS_TABLE"),
            token_key_id: env.required("TOKEN_KEY_ID"),
            meta_secret_id: env.required("META_SECRET_ID"),
            meta: MetaAppConfig::read(&mut env),
            window: time::Duration::days(env.number_or("REFRESH_WINDOW_DAYS", 7, 1, 50) as i64),
            concurrency: env.number_or("REFRESH_CONCURRENCY", 8, 1, 256) as usize,
            max_failure_days: env.number_or("REFRESH_MAX_FAILURE_DAYS", 3, 1, 30) as u32,
            event_retention: config::event_retention(&mut env),
        };
        env.finish().map(|()| config)
    }
}

/// What a run did: returned to EventBridge and logged.
#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub examined: usize,
    pub refreshed: usize,
    pub skipped: usize,
    pub failed: usize,
    pub needs_reauth: usize,
    pub resubscribed: usize,
}

impl Summary {
    fn add(&mut self, o: &Summary) {
        self.examined += o.examined;
        self.refreshed += o.refreshed;
        self.skipped += o.skipped;
        self.failed += o.failed;
        self.needs_reauth += o.needs_reauth;
        self.resubscribed += o.resubscribed;
    }
}

/// Stop starting new work when less than this is left before the deadline:
/// one connection takes at most a few Meta calls of 8 s each.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);
/// A lease outlives any single connection's work.
const LEASE_FOR: time::Duration = time::Duration::minutes(5);
/// Upper bound of keys one run loads from the index.
const MAX_PER_RUN: usize = 100_000;

pub struct Refresher<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    config: RefreshConfig,
    store: ConnectionStore,
    meta: MetaClient,
    vault: TokenVault<K>,
    secrets: SecretsCache,
    clock: Clock,
}

#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refresh run failed: {}", self.0)
    }
}

impl std::error::Error for RunError {}

impl<K: DataKeys + 'static> Refresher<K> {
    pub fn new(
        config: RefreshConfig,
        dynamodb: shared::aws_sdk_dynamodb::Client,
        secrets: shared::aws_sdk_secretsmanager::Client,
        keys: K,
        clock: Clock,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: ConnectionStore::new(
                    dynamodb,
                    &config.connections_table,
                    &config.events_table,
                ),
                meta: MetaClient::new(config.meta.clone()),
                vault: TokenVault::new(keys),
                secrets: SecretsCache::new(secrets, &config.meta_secret_id),
                config,
                clock,
            }),
        }
    }

    /// Serves scheduled runs on the Lambda Runtime API: each invocation is one
    /// run that stops before the invocation's deadline.
    pub async fn serve(&self) -> Result<(), lambda_http::Error> {
        use lambda_http::lambda_runtime::{run, service_fn, LambdaEvent};
        run(service_fn(
            move |event: LambdaEvent<serde_json::Value>| async move {
                let left = event
                    .context
                    .deadline()
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                let summary = self.run(Instant::now() + left).await?;
                Ok::<_, lambda_http::Error>(serde_json::to_value(summary)?)
            },
        ))
        .await
    }

    /// One run, stopping before `deadline` minus [`DEADLINE_MARGIN`].
    pub async fn run(&self, deadline: Instant) -> Result<Summary, RunError> {
        let inner = &self.inner;
        let secrets = inner
            .secrets
            .get()
            .await
            .map_err(|e| RunError(e.to_string()))?;
        let run_id = format!("run-{:016x}", rand::rng().next_u64());
        let stop_at = deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline);

        inner.finish_deletions(&secrets, stop_at).await;

        let now = inner.clock.now();
        let mut keys = inner
            .store
            .due("instagram", now + inner.config.window, MAX_PER_RUN)
            .await
            .map_err(|e| RunError(e.to_string()))?;
        keys.extend(
            inner
                .store
                .due("facebook", now, MAX_PER_RUN)
                .await
                .map_err(|e| RunError(e.to_string()))?,
        );

        let mut summary = Summary::default();
        let mut pending = keys.into_iter();
        let mut running = tokio::task::JoinSet::new();
        let mut stopped_early = false;
        loop {
            while running.len() < inner.config.concurrency {
                if Instant::now() >= stop_at {
                    stopped_early = pending.len() > 0;
                    break;
                }
                let Some(key) = pending.next() else { break };
                let inner = self.inner.clone();
                let secrets = secrets.clone();
                let run_id = run_id.clone();
                running.spawn(async move { inner.one(&key, &run_id, &secrets).await });
            }
            match running.join_next().await {
                Some(Ok(s)) => summary.add(&s),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "a refresh task failed");
                    summary.failed += 1;
                }
                None => break,
            }
        }
        tracing::info!(
            examined = summary.examined,
            refreshed = summary.refreshed,
            skipped = summary.skipped,
            failed = summary.failed,
            needs_reauth = summary.needs_reauth,
            resubscribed = summary.resubscribed,
            left_for_next_run = pending.len(),
            stopped_early,
            "refresh run done"
        );
        Ok(summary)
    }
}

impl<K: DataKeys> Inner<K> {
    /// Leases, decides, calls Meta and settles one connection.
    async fn one(&self, key: &(String, String), run_id: &str, secrets: &AppSecrets) -> Summary {
        let mut s = Summary::default();
        let now = self.clock.now();
        let (conn, sealed) = match self.store.take_lease(key, run_id, now, LEASE_FOR).await {
            Ok(Some(found)) => found,
            Ok(None) => return s, // another run holds it, or it is gone
            Err(e) => {
                tracing::error!(error = %e, "could not lease a connection");
                s.failed += 1;
                return s;
            }
        };
        s.examined += 1;
        let plan = refresh::plan(&conn, now, self.config.window);
        let owner = TokenOwner {
            user_id: conn.user_id.clone(),
            provider: conn.provider,
            account_id: conn.account_id.clone(),
        };
        let token = match (&plan, &sealed) {
            (Plan::Retire | Plan::Expired, _) => None,
            (_, Some(sealed)) => match self.vault.open(sealed, &owner).await {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(error = %e, account_id = %conn.account_id, "could not open a token");
                    self.release(&conn, run_id, now).await;
                    s.failed += 1;
                    return s;
                }
            },
            (_, None) => None,
        };
        let mut outcome = Settle::default();
        let mut event = None;
        // Meta answered for this token just now, and what it said of webhooks.
        let mut meta_ok = false;
        let mut still_subscribed: Option<bool> = None;
        match plan {
            Plan::Retire => {
                outcome.due = None;
                s.skipped += 1;
            }
            Plan::Expired => {
                self.needs_reauth(&conn, &mut outcome, &mut event, now, "token expired");
                s.needs_reauth += 1;
            }
            Plan::NotBefore(at) => {
                outcome.due = due_at(conn.provider, at, self.config.window);
                s.skipped += 1;
            }
            Plan::Refresh | Plan::Check => {
                let Some(token) = &token else {
                    self.needs_reauth(&conn, &mut outcome, &mut event, now, "no token stored");
                    s.needs_reauth += 1;
                    return self.finish(&conn, run_id, outcome, event, s, now).await;
                };
                // The subscription check runs beside the token call (both use
                // the current token, which stays valid through a refresh); its
                // answer counts only if Meta answered the token call.
                let token_call = async {
                    if plan == Plan::Refresh {
                        self.meta.instagram_refresh(token).await.map(Some)
                    } else {
                        self.check_facebook(secrets, token, now)
                            .await
                            .map(|()| None)
                    }
                };
                let subscription_check = async {
                    if conn.webhooks_subscribed {
                        Some(self.is_subscribed(&conn, secrets, token).await)
                    } else {
                        None
                    }
                };
                let (result, subscribed) = tokio::join!(token_call, subscription_check);
                still_subscribed = subscribed;
                match result {
                    Ok(Some(new)) => match self.vault.seal(&new.access_token, &owner).await {
                        Ok(sealed) => {
                            meta_ok = true;
                            let expires = new
                                .expires_in
                                .map(|secs| now + time::Duration::seconds(secs as i64));
                            outcome.new_token = Some((sealed, expires));
                            outcome.refreshed_at = Some(now);
                            outcome.failures = Some((0, None));
                            // Next: when the new token enters the window.
                            let next = expires
                                .map(|e| e - self.config.window)
                                .unwrap_or(now + refresh::RETRY_AFTER);
                            outcome.due = due_at(conn.provider, next, self.config.window);
                            let mut after = conn.clone();
                            after.token_expires_at = expires;
                            after.last_refreshed_at = Some(now);
                            event = Some(self.event("connection.refreshed", &after, now));
                            s.refreshed += 1;
                        }
                        Err(e) => {
                            // Meta already rotated the token; the old one stays
                            // valid for its remaining life. Try again next run.
                            tracing::error!(error = %e, "could not seal a refreshed token");
                            outcome.due = due_at(conn.provider, now, self.config.window);
                            s.failed += 1;
                        }
                    },
                    Ok(None) => {
                        // Facebook token healthy.
                        meta_ok = true;
                        outcome.due = due_at(
                            conn.provider,
                            now + refresh::FACEBOOK_CHECK_EVERY,
                            self.config.window,
                        );
                        if conn.refresh_failures > 0 {
                            outcome.failures = Some((0, None));
                            event = Some(self.event("connection.refreshed", &conn, now));
                        }
                        s.skipped += 1;
                    }
                    Err(MetaError::TokenInvalid {
                        code: meta_error_code,
                        subcode,
                        ..
                    }) => {
                        tracing::info!(account_id = %conn.account_id, meta_error_code, ?subcode, "meta says the token is dead");
                        self.needs_reauth(&conn, &mut outcome, &mut event, now, "token invalid");
                        s.needs_reauth += 1;
                    }
                    Err(e) => {
                        let (count, give_up) = refresh::after_failure(
                            conn.refresh_failures,
                            conn.last_refresh_failure_at,
                            now,
                            self.config.max_failure_days,
                        );
                        tracing::warn!(account_id = %conn.account_id, error = %e, failure_days = count, "refresh failed");
                        outcome.failures = Some((count, Some(now)));
                        if give_up {
                            self.needs_reauth(
                                &conn,
                                &mut outcome,
                                &mut event,
                                now,
                                "failing for days",
                            );
                            s.needs_reauth += 1;
                        } else {
                            // Left as it was: still due, for the next run.
                            outcome.due = due_at(conn.provider, now, self.config.window);
                            s.failed += 1;
                        }
                    }
                }
            }
        }
        // Webhooks: subscribe again when missing. Meta also drops the
        // subscription by itself after about an hour of failed deliveries: the
        // check above tells us whenever Meta answered for the token.
        if outcome.status.is_none() && conn.status == Status::Active {
            if let Some(token) = &token {
                let missing =
                    !conn.webhooks_subscribed || (meta_ok && still_subscribed == Some(false));
                if missing {
                    match self.subscribe(&conn, secrets, token).await {
                        Ok(()) => {
                            outcome.webhooks_subscribed = Some(true);
                            s.resubscribed += 1;
                        }
                        Err(e) => {
                            tracing::warn!(account_id = %conn.account_id, error = %e, "re-subscription failed");
                            outcome.webhooks_subscribed = Some(false);
                            // Try again tomorrow, whatever the token's schedule.
                            if outcome.due.is_some() {
                                outcome.due = due_at(
                                    conn.provider,
                                    now + refresh::RETRY_AFTER,
                                    self.config.window,
                                );
                            }
                        }
                    }
                }
            }
        }
        self.finish(&conn, run_id, outcome, event, s, now).await
    }

    /// Whether Meta still delivers this account's webhooks to us. A failed
    /// check counts as subscribed: only a clear "no" triggers a subscribe.
    async fn is_subscribed(
        &self,
        conn: &Connection,
        secrets: &AppSecrets,
        token: &shared::secrecy::SecretString,
    ) -> bool {
        let result = match (conn.provider, &conn.page_id) {
            (Provider::Facebook, Some(page)) => {
                self.meta
                    .facebook_page_is_subscribed(
                        secrets.app_secret(Provider::Facebook),
                        page,
                        token,
                    )
                    .await
            }
            _ => self.meta.instagram_is_subscribed(token).await,
        };
        result
            .inspect_err(|e| tracing::warn!(account_id = %conn.account_id, error = %e, "subscription check failed"))
            .unwrap_or(true)
    }

    async fn subscribe(
        &self,
        conn: &Connection,
        secrets: &AppSecrets,
        token: &shared::secrecy::SecretString,
    ) -> Result<(), MetaError> {
        let fields = self.config.meta.webhook_fields(conn.provider);
        match (conn.provider, &conn.page_id) {
            (Provider::Facebook, Some(page)) => {
                self.meta
                    .facebook_subscribe_page(
                        secrets.app_secret(Provider::Facebook),
                        page,
                        token,
                        fields,
                    )
                    .await
            }
            _ => self.meta.instagram_subscribe(token, fields).await,
        }
    }

    async fn finish(
        &self,
        conn: &Connection,
        run_id: &str,
        outcome: Settle,
        event: Option<Event>,
        s: Summary,
        now: OffsetDateTime,
    ) -> Summary {
        match self
            .store
            .settle(conn, run_id, outcome, event.as_ref(), now)
            .await
        {
            Ok(true) => s,
            Ok(false) => {
                // Changed under us (reconnected or deleted): its new state wins.
                tracing::info!(account_id = %conn.account_id, "connection changed during refresh; left as is");
                s
            }
            Err(e) => {
                tracing::error!(error = %e, "could not write a refresh outcome");
                Summary {
                    failed: s.failed + 1,
                    ..s
                }
            }
        }
    }

    async fn release(&self, conn: &Connection, run_id: &str, now: OffsetDateTime) {
        let outcome = Settle {
            due: due_at(conn.provider, now, self.config.window),
            ..Settle::default()
        };
        let _ = self.store.settle(conn, run_id, outcome, None, now).await;
    }

    fn needs_reauth(
        &self,
        conn: &Connection,
        outcome: &mut Settle,
        event: &mut Option<Event>,
        now: OffsetDateTime,
        why: &str,
    ) {
        tracing::info!(account_id = %conn.account_id, user = %tag(&conn.user_id), why, "connection needs the person again");
        outcome.status = Some(Status::NeedsReauth);
        outcome.due = None;
        let mut after = conn.clone();
        after.status = Status::NeedsReauth;
        *event = Some(self.event("connection.needs_reauth", &after, now));
    }

    fn event(&self, kind: &str, conn: &Connection, now: OffsetDateTime) -> Event {
        Event::lifecycle(kind, conn, now, self.config.event_retention)
    }

    /// `debug_token`: invalid, or data access ending within the window, is a
    /// dead token as far as the person is concerned.
    async fn check_facebook(
        &self,
        secrets: &AppSecrets,
        token: &shared::secrecy::SecretString,
        now: OffsetDateTime,
    ) -> Result<(), MetaError> {
        let info = self
            .meta
            .facebook_debug_token(secrets.app_secret(Provider::Facebook), token)
            .await?;
        if !info.is_valid {
            return Err(MetaError::TokenInvalid {
                code: 190,
                subcode: None,
                message: "debug_token: is_valid=false".into(),
            });
        }
        if refresh::data_access_ending(info.data_access_expires_at, now, self.config.window) {
            return Err(MetaError::TokenInvalid {
                code: 190,
                subcode: None,
                message: "debug_token: data access ends soon".into(),
            });
        }
        Ok(())
    }

    /// Deleted connections: unsubscribe and revoke at Meta (best effort), then
    /// destroy the token.
    async fn finish_deletions(&self, secrets: &AppSecrets, stop_at: Instant) {
        let jobs = match self.store.cleanup_jobs(100).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "could not list deleted connections");
                return;
            }
        };
        for job in jobs {
            if Instant::now() >= stop_at {
                return;
            }
            self.cleanup(secrets, &job).await;
            if let Err(e) = self.store.finish_cleanup(&job).await {
                tracing::error!(error = %e, "could not destroy a deleted connection's token");
            }
        }
    }

    async fn cleanup(&self, secrets: &AppSecrets, job: &CleanupJob) {
        let owner = TokenOwner {
            user_id: job.user_id.clone(),
            provider: job.provider,
            account_id: job.account_id.clone(),
        };
        let token = match self.vault.open(&job.token, &owner).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "deleted connection's token unreadable; nothing to unsubscribe");
                return;
            }
        };
        let fb_secret = secrets.app_secret(Provider::Facebook);
        let unsubscribed = match (job.provider, &job.page_id) {
            (Provider::Facebook, Some(page)) => {
                self.meta
                    .facebook_unsubscribe_page(fb_secret, page, &token)
                    .await
            }
            _ => self.meta.instagram_unsubscribe(&token).await,
        };
        if let Err(e) = unsubscribed {
            tracing::warn!(account_id = %job.account_id, error = %e, "unsubscribe at Meta failed (best effort)");
        }
        // Facebook lets the app drop the person's grant, but only once none of
        // their Pages is connected any more. Instagram Login has no revoke.
        if job.provider == Provider::Facebook && !job.meta_user_id.is_empty() {
            let remaining = self
                .store
                .by_meta_user(&job.meta_user_id)
                .await
                .map(|c| c.len())
                .unwrap_or(1);
            if remaining == 0 {
                if let Err(e) = self
                    .meta
                    .facebook_revoke(fb_secret, &job.meta_user_id)
                    .await
                {
                    tracing::warn!(error = %e, "revoke at Meta failed (best effort)");
                }
            }
        }
        tracing::info!(account_id = %job.account_id, provider = %job.provider, "deleted connection finished at Meta");
    }
}

/// The index value that makes a connection due at `act_at`: Instagram rows
/// are indexed by token expiry and queried up to `now + window`, so acting at
/// `t` means storing `t + window`; Facebook rows are queried up to `now`.
fn due_at(
    provider: Provider,
    act_at: OffsetDateTime,
    window: time::Duration,
) -> Option<(String, OffsetDateTime)> {
    let value = match provider {
        Provider::Instagram => act_at + window,
        Provider::Facebook => act_at,
    };
    Some((provider.as_str().to_string(), value))
}
