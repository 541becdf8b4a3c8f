//! The scheduled refresh (EventBridge, daily by default).
//!
//! Finds what is due through the `by_due` index (never a scan), takes a lease
//! per connection (a conditional write) and works on the row as that write
//! returned it, calls Meta with bounded concurrency, and writes the outcome
//! only over the version it leased. It stops starting work before the Lambda
//! deadline; whatever is left stays due for the next run. It also finishes
//! deleted connections: unsubscribes and revokes them at Meta, then destroys
//! the last copy of their token.
//!
//! What to do with a connection and what follows from Meta's answer are
//! decided in `shared::refresh` (`plan`, `decide`, `Due`); this crate asks
//! Meta and writes the result (`connection.rs`, `deletions.rs`).

mod connection;
mod deletions;

use std::sync::Arc;
use std::time::Duration;

use lambda_http::lambda_runtime::Diagnostic;
use rand::Rng;
use serde::Serialize;
use shared::config::{MetaAppConfig, StoreConfig};
use shared::continuation::{Continuation, Deadline};
use shared::invoke::AsyncInvoke;
use shared::meta::{ClientError, MetaClient};
use shared::metrics::Metrics;
use shared::refresh::{due_until, RefreshOutcome, Rules, Tally};
use shared::secrets::{AppSecrets, SecretsCache, SecretsError};
use shared::store::connections::DueKeys;
use shared::store::{ConnectionKey, ConnectionStore, StoreError};
use shared::vault::{DataKeys, KmsDataKeys, TokenVault};
use shared::{time, Clock, EnvReader, FromEnv, Provider};

#[derive(Clone, Debug)]
pub struct RefreshConfig {
    pub store: StoreConfig,
    pub token_key_id: String,
    pub meta_secret_id: String,
    pub meta: MetaAppConfig,
    pub window: time::Duration,
    pub concurrency: usize,
    pub max_failure_days: u32,
}

impl FromEnv for RefreshConfig {
    fn read(env: &mut EnvReader) -> Option<Self> {
        Some(Self {
            store: StoreConfig::read(env),
            token_key_id: env.required("TOKEN_KEY_ID"),
            meta_secret_id: env.required("META_SECRET_ID"),
            meta: MetaAppConfig::read(env),
            window: time::Duration::days(env.number_or("REFRESH_WINDOW_DAYS", 7, 1, 50) as i64),
            concurrency: env.number_or("REFRESH_CONCURRENCY", 64, 1, 256) as usize,
            max_failure_days: env.number_or("REFRESH_MAX_FAILURE_DAYS", 3, 1, 30) as u32,
        })
    }
}

impl RefreshConfig {
    fn rules(&self) -> Rules {
        Rules {
            window: self.window,
            max_failure_days: self.max_failure_days,
        }
    }
}

/// What a run did: returned to EventBridge, logged, and counted as metrics.
#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub examined: usize,
    pub refreshed: usize,
    pub skipped: usize,
    pub failed: usize,
    pub needs_reauth: usize,
    pub resubscribed: usize,
    /// Connections whose missing webhook subscription (dropped by Meta, or
    /// never taken) was subscribed again, each with a
    /// `connection.webhooks_restored` event.
    pub webhooks_restored: usize,
    /// Rows the run could not read (a connection or a cleanup job that does
    /// not parse): left as they are, logged by key hash, counted every run
    /// until someone repairs them.
    pub rows_skipped: usize,
    /// Due connections this run had no time for (or did not load, past
    /// [`MAX_PER_RUN`]): a continuation takes them (see [`next_round`]).
    pub left_for_next_run: usize,
}

impl Summary {
    fn add(&mut self, o: &Summary) {
        self.examined += o.examined;
        self.refreshed += o.refreshed;
        self.skipped += o.skipped;
        self.failed += o.failed;
        self.needs_reauth += o.needs_reauth;
        self.resubscribed += o.resubscribed;
        self.webhooks_restored += o.webhooks_restored;
        self.rows_skipped += o.rows_skipped;
    }

    /// The run's figures as CloudWatch metrics (EMF, namespace `IgConnect`,
    /// dimension `function=refresh`): one log line, no API call.
    pub fn metrics(&self) -> Metrics {
        Metrics::new("refresh")
            .count("Examined", self.examined as u64)
            .count("Refreshed", self.refreshed as u64)
            .count("Skipped", self.skipped as u64)
            .count("Failed", self.failed as u64)
            .count("Resubscribed", self.resubscribed as u64)
            .count("NeedsReauth", self.needs_reauth as u64)
            .count("WebhooksRestored", self.webhooks_restored as u64)
            .count("RowsSkipped", self.rows_skipped as u64)
    }

    /// One examined connection and what was decided for it.
    fn of(outcome: &RefreshOutcome) -> Self {
        let mut s = Summary {
            examined: 1,
            resubscribed: usize::from(
                outcome.resubscribe && outcome.webhooks_subscribed == Some(true),
            ),
            webhooks_restored: usize::from(outcome.webhooks_restored),
            ..Summary::default()
        };
        match outcome.tally {
            Tally::Refreshed => s.refreshed += 1,
            Tally::Skipped => s.skipped += 1,
            Tally::Failed => s.failed += 1,
            Tally::NeedsReauth => s.needs_reauth += 1,
        }
        s
    }
}

/// Stop starting new work when less than this is left before the deadline:
/// one connection takes at most a few Meta calls of 8 s each.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);
/// A lease outlives any single connection's work.
const LEASE_FOR: time::Duration = time::Duration::minutes(5);
/// Upper bound of keys one run loads from the index.
pub const MAX_PER_RUN: usize = 100_000;
/// Invocations one run may chain for what it had no time for (see
/// [`next_round`]): 48 runs of 300 s at `REFRESH_CONCURRENCY` 64 examine
/// several million connections, and a fault that makes runs end early
/// cannot make them chain without end.
pub const MAX_ROUNDS: u64 = 48;
/// The chain of runs (`shared::continuation`).
pub const CONTINUATION: Continuation = Continuation {
    max_rounds: MAX_ROUNDS,
};

/// The round of a run: 0 for the schedule (or any other caller), `n` for the
/// `n`th continuation.
pub fn round_of(payload: &serde_json::Value) -> u64 {
    payload
        .get("refresh_continuation")
        .and_then(|c| c.get("round"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// The payload of the `round`th continuation.
pub fn continuation_payload(round: u64) -> serde_json::Value {
    serde_json::json!({"refresh_continuation": {"round": round}})
}

/// Whether a run of `round` that ended as `summary` says is followed by
/// another invocation at once, and its round. Only for work left undone:
/// a run that got through everything due (even with failures, which wait for
/// their retry time) ends the chain, and so does [`MAX_ROUNDS`].
pub fn next_round(round: u64, summary: &Summary) -> Option<u64> {
    CONTINUATION.next_round(round, summary.left_for_next_run > 0)
}

pub struct Refresher<K = KmsDataKeys> {
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

/// Why a run could not start. Either way nothing was written: the next run
/// (or the scheduler's retry) finds everything still due.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("refresh run failed: {0}")]
    Secrets(#[from] SecretsError),
    #[error("refresh run failed: {0}")]
    Store(#[from] StoreError),
}

impl From<RunError> for Diagnostic {
    fn from(e: RunError) -> Self {
        let error_type = match e {
            RunError::Secrets(_) => "Refresh.SecretsUnavailable",
            RunError::Store(_) => "Refresh.StoreUnavailable",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

impl<K: DataKeys + 'static> Refresher<K> {
    pub fn new(
        config: RefreshConfig,
        dynamodb: shared::aws_sdk_dynamodb::Client,
        secrets: shared::aws_sdk_secretsmanager::Client,
        keys: K,
        clock: Clock,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            inner: Arc::new(Inner {
                store: config.store.connections(&dynamodb),
                meta: MetaClient::new(config.meta.clone())?,
                vault: TokenVault::new(keys),
                secrets: SecretsCache::new(secrets, &config.meta_secret_id),
                config,
                clock,
            }),
        })
    }

    /// Serves runs on the Lambda Runtime API: each invocation (the schedule,
    /// the connections function after a delete, or a continuation) is one
    /// run that stops before the invocation's deadline. A run that had no
    /// time for everything due invokes the function again for the rest
    /// ([`next_round`]), so one daily schedule covers any number of
    /// connections; if that invocation fails, the next scheduled run carries
    /// on. `lambda: None` (tests) leaves the rest to the next run.
    pub async fn serve(
        &self,
        lambda: Option<&aws_sdk_lambda::Client>,
    ) -> Result<(), lambda_http::Error> {
        use lambda_http::lambda_runtime::{run, service_fn, LambdaEvent};
        run(service_fn(
            move |event: LambdaEvent<serde_json::Value>| async move {
                let round = round_of(&event.payload);
                let deadline = Deadline::of_invocation(event.context.deadline(), DEADLINE_MARGIN);
                let summary = self.run(deadline).await?;
                self.inner.vault.emit_with_usage(summary.metrics());
                let itself =
                    lambda.map(|l| AsyncInvoke::new(l, &event.context.invoked_function_arn));
                let left = summary.left_for_next_run;
                let carry_on = CONTINUATION.carry_on_scheduled(
                    "refresh",
                    itself.as_ref(),
                    round,
                    left,
                    continuation_payload,
                );
                carry_on.await;
                Ok::<_, RunError>(summary)
            },
        ))
        .await
    }

    /// One run, starting no new work once `deadline` says stop (in AWS:
    /// [`DEADLINE_MARGIN`] before the invocation's deadline).
    pub async fn run(&self, deadline: Deadline) -> Result<Summary, RunError> {
        let secrets = self.inner.secrets.get().await?;
        let run_id = format!("run-{:016x}", rand::rng().next_u64());
        let stop_at = &deadline;

        let unreadable_jobs = self.inner.finish_deletions(&secrets, stop_at).await;
        let due = self.inner.due_keys().await?;
        let unreadable_keys = due.unreadable.len();
        let capped = due.capped;
        let (mut summary, left) = self
            .work_through(due.keys, &run_id, &secrets, stop_at)
            .await;
        summary.rows_skipped += unreadable_jobs + unreadable_keys;
        // Past the index page a run loads, at least one more is due.
        summary.left_for_next_run = if capped { left.max(1) } else { left };
        tracing::info!(
            examined = summary.examined,
            refreshed = summary.refreshed,
            skipped = summary.skipped,
            failed = summary.failed,
            needs_reauth = summary.needs_reauth,
            resubscribed = summary.resubscribed,
            webhooks_restored = summary.webhooks_restored,
            rows_skipped = summary.rows_skipped,
            left_for_next_run = left,
            stopped_early = left > 0,
            "refresh run done"
        );
        Ok(summary)
    }

    /// Refreshes the connections of `keys`, `concurrency` at a time, while
    /// `stop_at` allows. Returns what was done and how many keys were left.
    async fn work_through(
        &self,
        keys: Vec<ConnectionKey>,
        run_id: &str,
        secrets: &Arc<AppSecrets>,
        stop_at: &Deadline,
    ) -> (Summary, usize) {
        let mut summary = Summary::default();
        let mut pending = keys.into_iter();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < self.inner.config.concurrency
                && pending.len() > 0
                && stop_at.may_start()
            {
                let Some(key) = pending.next() else { break };
                let (inner, secrets, run_id) =
                    (self.inner.clone(), secrets.clone(), run_id.to_string());
                running
                    .spawn(async move { inner.refresh_connection(&key, &run_id, &secrets).await });
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
        (summary, pending.len())
    }
}

impl<K> Inner<K> {
    /// Every connection due now, Instagram first. Index entries that are not
    /// a connection's keys are logged by a hash of their keys and counted.
    async fn due_keys(&self) -> Result<DueKeys, StoreError> {
        let now = self.clock.now();
        let mut all = DueKeys::default();
        for &bucket in Provider::ALL {
            let until = due_until(bucket, now, self.config.window);
            let due = self.store.due(bucket, until, MAX_PER_RUN).await?;
            all.keys.extend(due.keys);
            all.unreadable.extend(due.unreadable);
            all.capped |= due.capped;
        }
        for row in &all.unreadable {
            tracing::error!(row = %row, "due entry is not a connection's keys; skipped");
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(left: usize) -> Summary {
        Summary {
            examined: 10,
            refreshed: 4,
            left_for_next_run: left,
            ..Summary::default()
        }
    }

    #[test]
    fn a_run_with_work_left_continues_and_a_finished_one_does_not() {
        assert_eq!(next_round(0, &ended(1)), Some(1));
        assert_eq!(next_round(7, &ended(5_000)), Some(8));
        // Everything due was examined (failures wait for their retry time).
        let failed = Summary {
            failed: 10,
            ..ended(0)
        };
        assert_eq!(next_round(0, &failed), None);
        assert_eq!(next_round(3, &ended(0)), None);
    }

    #[test]
    fn a_chain_of_continuations_ends() {
        assert_eq!(next_round(MAX_ROUNDS - 2, &ended(1)), Some(MAX_ROUNDS - 1));
        assert_eq!(next_round(MAX_ROUNDS - 1, &ended(1)), None);
        assert_eq!(next_round(u64::MAX - 1, &ended(1)), None);
    }

    #[test]
    fn continuation_payloads_carry_their_round_and_anything_else_is_round_zero() {
        assert_eq!(round_of(&continuation_payload(5)), 5);
        // EventBridge Scheduler's input, a connections-function invocation,
        // or junk: a fresh run.
        for other in [
            serde_json::json!({}),
            serde_json::json!({"source": "aws.scheduler"}),
            serde_json::json!({"refresh_continuation": {"round": "7"}}),
            serde_json::json!("refresh"),
        ] {
            assert_eq!(round_of(&other), 0, "{other}");
        }
    }
}
