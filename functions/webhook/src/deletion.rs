//! The data-deletion job: deletes the stored events and the Graph proxy's
//! stored answers (idempotency records) of the accounts a deletion request
//! named, then marks the request `complete`: only once nothing of theirs is
//! left.
//!
//! `POST /meta/data-deletion` revokes the person's connections (their tokens
//! are deleted at once), writes the record as `pending` and starts this job;
//! Meta gets its answer within the request whatever the amount of data. In
//! AWS the job is the `data-deletion` function, invoked asynchronously:
//! - resumable: every run starts from what is still stored, so a retry or a
//!   continuation simply carries on; a run stops before its deadline and
//!   invokes itself again for the rest;
//! - retried: a failed run is retried by Lambda (twice, with backoff); within
//!   a run, deletes DynamoDB leaves unprocessed are retried with a growing,
//!   jittered pause;
//! - dead-lettered: a run that still fails goes to the function's on-failure
//!   destination (a queue, with an alarm); re-invoking it with the queued
//!   payload resumes, and so does Meta sending the same request again.
//!
//! It holds no KMS permission: deleting tokens, events and stored answers
//! needs none.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::config::StoreConfig;
use shared::continuation::{Continuation, Deadline, Next};
use shared::event_kind::EventKind;
use shared::graph::erase::{Erased, StoredAnswers};
use shared::invoke::AsyncInvoke;
use shared::logging::tag;
use shared::store::{
    ConnectionStore, DeletionAccount, DeletionRecord, DeletionStatus, Event, EventStore, StoreError,
};
use shared::{Clock, EnvReader, FromEnv};

/// Event ids read per page of an account's events.
pub const PAGE: i32 = 1000;
/// Batches of 25 deletes in flight at once.
pub const DELETE_CONCURRENCY: usize = 8;
/// Time a run keeps for itself before its Lambda deadline.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(15);
/// Continuations of one job before it is given up (and dead-lettered):
/// far more than any account needs, but not endless.
pub const MAX_ROUNDS: u64 = 500;
/// The chain of runs (`shared::continuation`).
pub const CONTINUATION: Continuation = Continuation {
    max_rounds: MAX_ROUNDS,
};

#[derive(Clone, Debug)]
pub struct DeletionConfig {
    pub store: StoreConfig,
    /// `GRAPH_TABLE`: the proxy's table, whose stored answers of the
    /// accounts are deleted too.
    pub graph_table: String,
}

impl FromEnv for DeletionConfig {
    fn read(env: &mut EnvReader) -> Option<Self> {
        Some(Self {
            store: StoreConfig::read(env),
            graph_table: shared::config::table(env, "GRAPH_TABLE"),
        })
    }
}

/// What one run achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Everything is deleted and the record says `complete`. `events_deleted`
    /// counts what whole pages deleted (a page a failed run only partly
    /// deleted is not counted).
    Complete { events_deleted: u64 },
    /// The deadline came first; what is left stays for the next run.
    Unfinished { events_deleted: u64 },
    /// No such request (its record expired): nothing to do.
    NotFound,
}

pub struct DeletionJob {
    connections: ConnectionStore,
    events: EventStore,
    answers: StoredAnswers,
    retention: Duration,
    clock: Clock,
    backoff: Vec<Duration>,
}

/// The id of the `data_deletion.requested` event of `code` for an account:
/// the same for every attempt, so the product is told once, and the job
/// knows not to delete it.
pub fn notice_id(code: &str, account: &DeletionAccount) -> String {
    let parts = json!([
        "data_deletion",
        code,
        account.provider.as_str(),
        account.account_id
    ]);
    let digest = Sha256::digest(parts.to_string().as_bytes());
    format!("dd_{}", hex::encode(&digest[..16]))
}

/// The accounts a request's notices are about: one per account, whatever
/// the providers it was connected through.
pub fn noticed(accounts: &[DeletionAccount]) -> impl Iterator<Item = &DeletionAccount> {
    accounts.iter().enumerate().filter_map(|(i, a)| {
        let first = !accounts[..i].iter().any(|b| b.account_id == a.account_id);
        first.then_some(a)
    })
}

/// The `data_deletion.requested` event telling the product that it must
/// delete its copies of the account's data.
pub fn notice(
    code: &str,
    account: &DeletionAccount,
    now: shared::time::OffsetDateTime,
    retention: Duration,
) -> Event {
    Event {
        event_id: notice_id(code, account),
        kind: EventKind::DataDeletionRequested,
        provider: Some(account.provider),
        account_id: account.account_id.clone(),
        user_id: Some(account.user_id.clone()),
        occurred_at: now,
        received_at: now,
        payload: json!({
            "confirmation_code": code,
            "provider": account.provider.as_str(),
            "account_id": account.account_id,
        })
        .to_string(),
        expires_at: now + retention,
    }
}

impl DeletionJob {
    pub fn new(
        config: &DeletionConfig,
        dynamodb: shared::aws_sdk_dynamodb::Client,
        clock: Clock,
    ) -> Self {
        Self {
            connections: config.store.connections(&dynamodb),
            events: config.store.events(&dynamodb),
            answers: StoredAnswers::new(dynamodb.clone(), &config.graph_table),
            retention: config.store.event_retention,
            clock,
            backoff: shared::store::events::backoff(
                Duration::from_millis(50),
                Duration::from_secs(5),
                10,
            ),
        }
    }

    /// Works on deletion `code` until it is complete or `stop_at` says stop
    /// (it is asked before each page).
    pub async fn run(&self, code: &str, stop_at: &Deadline) -> Result<JobOutcome, StoreError> {
        let Some(record) = self.connections.get_deletion(code).await? else {
            return Ok(JobOutcome::NotFound);
        };
        if record.status == DeletionStatus::Complete {
            return Ok(JobOutcome::Complete {
                events_deleted: record.events_deleted,
            });
        }
        let mut deleted = record.events_deleted;
        for account in &record.accounts {
            let events = self.delete_events(&record, account, stop_at).await?;
            if let Some(n) = events {
                deleted += n;
            }
            let answers = match events {
                Some(_) => self.delete_answers(account, stop_at).await?,
                None => None,
            };
            if answers.is_none() {
                tracing::info!(deletion = %tag(code), "data deletion continues in the next run");
                return Ok(JobOutcome::Unfinished {
                    events_deleted: deleted,
                });
            }
        }
        // Written at the request already; again here in case that was an
        // older record without them (a conditional put: never twice).
        let now = self.clock.now();
        for account in noticed(&record.accounts) {
            self.events
                .put(&notice(code, account, now, self.retention))
                .await?;
        }
        self.connections.complete_deletion(code, now).await?;
        tracing::info!(deletion = %tag(code), events = deleted, accounts = record.accounts.len(), "data deletion complete");
        Ok(JobOutcome::Complete {
            events_deleted: deleted,
        })
    }

    /// Deletes the account's stored events, one page at a time, recording
    /// progress after each. `None`: `stop_at` came first.
    async fn delete_events(
        &self,
        record: &DeletionRecord,
        account: &DeletionAccount,
        stop_at: &Deadline,
    ) -> Result<Option<u64>, StoreError> {
        // The request's notices about this account stay.
        let keep: Vec<String> = noticed(&record.accounts)
            .filter(|a| a.account_id == account.account_id)
            .map(|a| notice_id(&record.code, a))
            .collect();
        let mut start = None;
        let mut deleted = 0u64;
        loop {
            if !stop_at.may_start() {
                return Ok(None);
            }
            let (mut ids, next) = self
                .events
                .account_event_ids(&account.account_id, start, PAGE)
                .await?;
            ids.retain(|id| id.as_s().map_or(true, |id| !keep.contains(id)));
            if !ids.is_empty() {
                let n = self
                    .events
                    .delete_ids(&ids, DELETE_CONCURRENCY, &self.backoff)
                    .await? as u64;
                self.connections.deletion_progress(&record.code, n).await?;
                deleted += n;
            }
            match next {
                Some(key) => start = Some(key),
                None => return Ok(Some(deleted)),
            }
        }
    }
}

impl DeletionJob {
    /// Deletes the proxy's stored answers of the account, one page at a
    /// time. `None`: `stop_at` came first (the next run starts over: what
    /// was deleted is no longer listed).
    async fn delete_answers(
        &self,
        account: &DeletionAccount,
        stop_at: &Deadline,
    ) -> Result<Option<usize>, StoreError> {
        let mut start = None;
        let mut deleted = 0;
        loop {
            if !stop_at.may_start() {
                return Ok(None);
            }
            let page = self
                .answers
                .erase_page(account.provider, &account.account_id, start)
                .await?;
            match page {
                Erased::More(n, next) => {
                    deleted += n;
                    start = Some(next);
                }
                Erased::Done(n) => {
                    deleted += n;
                    if deleted > 0 {
                        tracing::info!(
                            account = %tag(&account.account_id),
                            answers = deleted,
                            "stored proxy answers deleted"
                        );
                    }
                    return Ok(Some(deleted));
                }
            }
        }
    }
}

/// The payload that starts (or continues) the job for `code`.
pub fn job_payload(code: &str, round: u64) -> Value {
    json!({"data_deletion": {"code": code, "round": round}})
}

/// The code and round of a job payload; `None` if it is not one.
pub fn parse_job(payload: &Value) -> Option<(String, u64)> {
    let job = payload.get("data_deletion")?;
    let code = job.get("code")?.as_str()?;
    if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let round = job.get("round").and_then(Value::as_u64).unwrap_or(0);
    Some((code.to_string(), round))
}

/// Starts round `round` of the job for `code` asynchronously.
pub async fn invoke(job: &AsyncInvoke, code: &str, round: u64) -> Result<(), String> {
    job.send(&job_payload(code, round)).await
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("not a data-deletion job payload")]
    NotAJob,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not continue the job: {0}")]
    Continue(String),
    #[error("the job is still unfinished after {0} runs")]
    TooManyRounds(u64),
}

impl From<JobError> for lambda_http::lambda_runtime::Diagnostic {
    fn from(e: JobError) -> Self {
        let error_type = match e {
            JobError::NotAJob => "DataDeletion.NotAJob",
            JobError::Store(_) => "DataDeletion.StoreUnavailable",
            JobError::Continue(_) => "DataDeletion.ContinueFailed",
            JobError::TooManyRounds(_) => "DataDeletion.TooManyRounds",
        };
        Self {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

impl DeletionJob {
    /// The `data-deletion` function: one run per invocation. An error makes
    /// Lambda retry the invocation, then send it to the dead-letter queue.
    pub async fn serve(&self, lambda: &aws_sdk_lambda::Client) -> Result<(), lambda_http::Error> {
        use lambda_http::lambda_runtime::{run, service_fn, LambdaEvent};
        run(service_fn(move |event: LambdaEvent<Value>| async move {
            let (code, round) = parse_job(&event.payload).ok_or(JobError::NotAJob)?;
            let stop_at = Deadline::of_invocation(event.context.deadline(), DEADLINE_MARGIN);
            match self.run(&code, &stop_at).await.inspect_err(|e| {
                tracing::error!(error = %e, deletion = %tag(&code), round, "data deletion failed; Lambda retries it");
            })? {
                JobOutcome::Unfinished { events_deleted } => {
                    let itself = AsyncInvoke::new(lambda, &event.context.invoked_function_arn);
                    let next = CONTINUATION
                        .carry_on(Some(&itself), round, true, |n| job_payload(&code, n))
                        .await
                        .map_err(JobError::Continue)?;
                    match next {
                        Next::Invoked(_) => {
                            Ok(json!({"status": "continued", "events_deleted": events_deleted}))
                        }
                        _ => Err(JobError::TooManyRounds(round + 1)),
                    }
                }
                JobOutcome::Complete { events_deleted } => {
                    Ok(json!({"status": "complete", "events_deleted": events_deleted}))
                }
                JobOutcome::NotFound => Ok(json!({"status": "not_found"})),
            }
        }))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Provider;

    #[test]
    fn job_payloads_read_back_and_refuse_anything_else() {
        assert_eq!(
            parse_job(&job_payload("ABC123", 4)),
            Some(("ABC123".to_string(), 4))
        );
        assert_eq!(
            parse_job(&json!({"data_deletion": {"code": "ABC"}})),
            Some(("ABC".to_string(), 0))
        );
        for bad in [
            json!({}),
            json!({"data_deletion": {"code": ""}}),
            json!({"data_deletion": {"code": "../x"}}),
            json!({"data_deletion": {"code": "A".repeat(65)}}),
            json!({"version": "2.0", "routeKey": "POST /webhook"}),
        ] {
            assert_eq!(parse_job(&bad), None, "{bad}");
        }
    }

    #[test]
    fn notices_have_one_id_per_request_and_account() {
        let a = DeletionAccount {
            provider: Provider::Instagram,
            account_id: "178".into(),
            user_id: "u".into(),
        };
        let b = DeletionAccount {
            account_id: "179".into(),
            ..a.clone()
        };
        assert_eq!(notice_id("C1", &a), notice_id("C1", &a));
        assert_ne!(notice_id("C1", &a), notice_id("C2", &a));
        assert_ne!(notice_id("C1", &a), notice_id("C1", &b));
        assert!(notice_id("C1", &a).starts_with("dd_"));
    }

    #[test]
    fn one_notice_per_account_whatever_its_providers() {
        let ig = DeletionAccount {
            provider: Provider::Instagram,
            account_id: "178".into(),
            user_id: "u".into(),
        };
        let fb = DeletionAccount {
            provider: Provider::Facebook,
            ..ig.clone()
        };
        let other = DeletionAccount {
            account_id: "179".into(),
            ..fb.clone()
        };
        let accounts = [ig.clone(), fb, other.clone()];
        let got: Vec<&DeletionAccount> = noticed(&accounts).collect();
        assert_eq!(got, [&ig, &other]);
    }
}
