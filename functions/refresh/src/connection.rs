//! One connection, as steps: lease, plan, open the token, ask Meta, decide,
//! subscribe its webhooks again if they are missing, write the outcome.
//! Every look at an active connection verifies its webhook subscription
//! (`GET subscribed_apps`), whatever its token needs: the schedule
//! (`refresh::Due::next`) brings each one back at least daily for that.
//! The decisions are `shared::refresh::{plan, decide}`; this file only asks
//! and writes.

use shared::connection::Connection;
use shared::logging::tag;
use shared::meta::{MetaError, WebhookTarget};
use shared::refresh::{self, Answer, Failures, Findings, Plan, RefreshOutcome, Tally};
use shared::secrecy::SecretString;
use shared::secrets::AppSecrets;
use shared::store::connections::Lease;
use shared::store::{ConnectionKey, Event};
use shared::time::OffsetDateTime;
use shared::vault::{DataKeys, SealedToken, TokenOwner};
use shared::Provider;

use crate::{Inner, Summary, LEASE_FOR};

impl<K: DataKeys> Inner<K> {
    /// Leases one connection, then [`Inner::work_on`] it. A row that does
    /// not parse is counted and logged by a hash of its keys (never its
    /// content), every run until it is repaired.
    pub(crate) async fn refresh_connection(
        &self,
        key: &ConnectionKey,
        run_id: &str,
        secrets: &AppSecrets,
    ) -> Summary {
        let now = self.clock.now();
        match self.store.take_lease(key, run_id, now, LEASE_FOR).await {
            Ok(Lease::Taken(leased)) => {
                let (conn, sealed) = *leased;
                self.work_on(conn, sealed, run_id, secrets, now).await
            }
            Ok(Lease::Busy) => Summary::default(), // another run holds it, or it is gone
            Ok(Lease::Unreadable { attribute }) => {
                tracing::error!(row = %key.tag(), attribute, "connection row unreadable; skipped");
                Summary {
                    rows_skipped: 1,
                    ..Summary::default()
                }
            }
            Err(e) => {
                tracing::error!(row = %key.tag(), error = %e, "could not lease a connection");
                Summary {
                    failed: 1,
                    ..Summary::default()
                }
            }
        }
    }

    /// Decides what a leased connection needs, does it, and writes the
    /// outcome over the version leased. Every log line inside carries the
    /// connection's provider and account (never its token).
    #[tracing::instrument(name = "refresh_connection", skip_all, fields(provider = %conn.provider, account_id = %conn.account_id))]
    async fn work_on(
        &self,
        conn: Connection,
        sealed: Option<SealedToken>,
        run_id: &str,
        secrets: &AppSecrets,
        now: OffsetDateTime,
    ) -> Summary {
        let plan = refresh::plan(&conn, now, self.config.window);
        let Ok(token) = self.open_token(plan, &conn, sealed.as_ref()).await else {
            self.release(&conn, run_id, now).await;
            return Summary {
                examined: 1,
                failed: 1,
                ..Summary::default()
            };
        };
        let (found, new_token) = self
            .ask_meta(plan, &conn, token.as_ref(), secrets, now)
            .await;
        let mut outcome = refresh::decide(&conn, plan, found, now, self.config.rules());
        if let (true, Some(token)) = (outcome.resubscribe, &token) {
            let ok = self.resubscribe(&conn, secrets, token).await;
            outcome.subscribed(ok, &conn, now, self.config.window);
        }
        log_outcome(&conn, &outcome);
        let mut summary = Summary::of(&outcome);
        if !self
            .write(&conn, run_id, &outcome, new_token.as_ref(), now)
            .await
        {
            summary.failed += 1;
        }
        summary
    }

    /// The current token, unless the plan needs none. `Err`: stored but
    /// unreadable.
    async fn open_token(
        &self,
        plan: Plan,
        conn: &Connection,
        sealed: Option<&SealedToken>,
    ) -> Result<Option<SecretString>, ()> {
        let needed = !matches!(plan, Plan::Retire | Plan::Expired);
        let Some(sealed) = sealed.filter(|_| needed) else {
            return Ok(None);
        };
        match self.vault.open(sealed, &TokenOwner::of(conn)).await {
            Ok(token) => Ok(Some(token)),
            Err(e) => {
                tracing::error!(error = %e, "could not open a token");
                Err(())
            }
        }
    }

    /// Asks Meta what the plan needs (a refreshed token, or whether the Page
    /// token still works) and, beside that, whether the account's webhooks
    /// are still subscribed: both use the current token, which stays valid
    /// through a refresh. A refreshed token comes back sealed. When the token
    /// needs nothing yet, only the subscription is checked; a dead token it
    /// finds is Meta's answer then.
    async fn ask_meta(
        &self,
        plan: Plan,
        conn: &Connection,
        token: Option<&SecretString>,
        secrets: &AppSecrets,
        now: OffsetDateTime,
    ) -> (Findings, Option<SealedToken>) {
        let mut found = Findings {
            has_token: token.is_some(),
            ..Findings::default()
        };
        match (plan, token) {
            (Plan::Refresh | Plan::Check, Some(_)) => {}
            (Plan::Refresh | Plan::Check, None) => {
                found.answer = Some(Answer::NoToken);
                return (found, None);
            }
            (Plan::NotBefore(_), Some(token)) if conn.webhooks_subscribed => {
                match self.check_subscription(conn, secrets, token).await {
                    Ok(subscribed) => found.still_subscribed = Some(subscribed),
                    Err(TokenDead) => found.answer = Some(Answer::Dead),
                }
                return (found, None);
            }
            _ => return (found, None),
        }
        let Some(token) = token else {
            return (found, None);
        };
        let token_call = async {
            match plan {
                Plan::Refresh => self.refresh_token(conn, token, now).await,
                _ => (self.check_page_token(secrets, token, now).await, None),
            }
        };
        let subscription_check = async {
            match conn.webhooks_subscribed {
                // A dead token is the token call's to report.
                true => Some(
                    self.check_subscription(conn, secrets, token)
                        .await
                        .unwrap_or(true),
                ),
                false => None,
            }
        };
        let ((answer, sealed), still_subscribed) = tokio::join!(token_call, subscription_check);
        found.answer = Some(answer);
        found.still_subscribed = still_subscribed;
        (found, sealed)
    }

    async fn refresh_token(
        &self,
        conn: &Connection,
        token: &SecretString,
        now: OffsetDateTime,
    ) -> (Answer, Option<SealedToken>) {
        let new = match self.meta.instagram_refresh(token).await {
            Ok(new) => new,
            Err(e) => return (failed_call(e), None),
        };
        match self
            .vault
            .seal(&new.access_token, &TokenOwner::of(conn))
            .await
        {
            Ok(sealed) => {
                let expires_at = new.expires_at(now);
                (Answer::Refreshed { expires_at }, Some(sealed))
            }
            Err(e) => {
                tracing::error!(error = %e, "could not seal a refreshed token");
                (Answer::NotSealed, None)
            }
        }
    }

    /// `debug_token`, read by `refresh::page_token_answer`.
    async fn check_page_token(
        &self,
        secrets: &AppSecrets,
        token: &SecretString,
        now: OffsetDateTime,
    ) -> Answer {
        let secret = secrets.app_secret(Provider::Facebook);
        match self.meta.facebook_debug_token(secret, token).await {
            Ok(info) => {
                let window = self.config.window;
                let answer = refresh::page_token_answer(
                    info.is_valid,
                    info.data_access_expires_at,
                    now,
                    window,
                );
                if answer == Answer::Dead {
                    tracing::info!(meta_error_code = 190, "meta says the token is dead");
                }
                answer
            }
            Err(e) => failed_call(e),
        }
    }

    /// Whether Meta still delivers this account's webhooks to us. A failed
    /// check counts as subscribed: only a clear "no" triggers a subscribe.
    async fn check_subscription(
        &self,
        conn: &Connection,
        secrets: &AppSecrets,
        token: &SecretString,
    ) -> Result<bool, TokenDead> {
        match self
            .meta
            .webhooks_subscribed(webhook_target(conn), secrets, token)
            .await
        {
            Ok(subscribed) => Ok(subscribed),
            Err(MetaError::TokenInvalid { code, subcode, .. }) => {
                tracing::info!(
                    meta_error_code = code,
                    ?subcode,
                    "meta says the token is dead"
                );
                Err(TokenDead)
            }
            Err(e) => {
                tracing::warn!(error = %e, "subscription check failed");
                Ok(true)
            }
        }
    }

    async fn resubscribe(
        &self,
        conn: &Connection,
        secrets: &AppSecrets,
        token: &SecretString,
    ) -> bool {
        let fields = self.config.meta.webhook_fields(conn.provider);
        self.meta
            .subscribe_webhooks(webhook_target(conn), secrets, token, fields)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "re-subscription failed"))
            .is_ok()
    }

    /// Writes the outcome with its event. `false` when the write failed.
    async fn write(
        &self,
        conn: &Connection,
        run_id: &str,
        outcome: &RefreshOutcome,
        new_token: Option<&SealedToken>,
        now: OffsetDateTime,
    ) -> bool {
        let retention = self.config.store.event_retention;
        let after = outcome.applied_to(conn);
        let events: Vec<Event> = outcome
            .events()
            .map(|kind| Event::lifecycle(kind, &after, now, retention))
            .collect();
        match self
            .store
            .settle(conn, run_id, outcome, new_token, &events, now)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                // Changed under us (reconnected or deleted): its new state wins.
                tracing::info!("connection changed during refresh; left as is");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "could not write a refresh outcome");
                false
            }
        }
    }

    /// Gives the lease back, leaving the connection due for the next run.
    async fn release(&self, conn: &Connection, run_id: &str, now: OffsetDateTime) {
        let outcome = RefreshOutcome::retry(conn, now, self.config.window, Tally::Failed);
        let _ = self
            .store
            .settle(conn, run_id, &outcome, None, &[], now)
            .await;
    }
}

/// The subscription check met a token Meta says is dead.
struct TokenDead;

fn webhook_target(conn: &Connection) -> WebhookTarget<'_> {
    WebhookTarget::of(conn.provider, conn.page_id.as_deref())
}

/// A failed token call: dead token, or a passing failure.
fn failed_call(e: MetaError) -> Answer {
    match e {
        MetaError::TokenInvalid {
            code: meta_error_code,
            subcode,
            ..
        } => {
            tracing::info!(meta_error_code, ?subcode, "meta says the token is dead");
            Answer::Dead
        }
        e => {
            tracing::warn!(error = %e, "refresh failed");
            Answer::Failed
        }
    }
}

fn log_outcome(conn: &Connection, outcome: &RefreshOutcome) {
    if outcome.webhooks_restored {
        tracing::info!("webhook subscription restored");
    }
    if let Some(why) = outcome.reauth_reason {
        tracing::info!(user = %tag(&conn.user_id), why, "connection needs the person again");
    }
    if let Some(Failures {
        days,
        last_at: Some(_),
    }) = outcome.failures
    {
        tracing::warn!(failure_days = days, "refresh failure counted");
    }
}
