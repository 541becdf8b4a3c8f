//! `POST /meta/data-deletion` (Meta) and `GET /meta/data-deletion/{code}`
//! (the person, on the public API): the request's record, the accounts it
//! covers, the job's start, and the status page.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use rand::RngExt;
use serde_json::json;
use shared::clock::rfc3339;
use shared::http;
use shared::logging::tag;
use shared::store::{
    DeletionAccount, DeletionPerson, DeletionRecord, DeletionStatus, DELETIONS_PER_PERSON,
};
use shared::time::OffsetDateTime;
use shared::webhook::SignedRequest;

use crate::deletion;
use crate::{accounts, unavailable, Launch, MetaStore, Revoked, Unavailable, Webhook};

impl<S: MetaStore> Webhook<S> {
    /// `POST /meta/data-deletion`: the person's connections granted before
    /// the request are revoked (tokens deleted) at once, the product is told
    /// (`data_deletion.requested`), and the job deleting their stored events
    /// is started; Meta gets the status URL and the confirmation code at once,
    /// whatever the amount of data. The same request again gets the same code
    /// (and restarts its job if it is not done); at most
    /// [`DELETIONS_PER_PERSON`] records exist per person, further requests
    /// reuse the latest.
    pub(crate) async fn data_deletion(&self, req: &Request) -> Response<Body> {
        let request = match self.signed_request(req).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let record = match self.deletion_for(&request).await {
            Ok(record) => record,
            Err(e) => return e.response("data_deletion"),
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
    async fn deletion_for(&self, request: &SignedRequest) -> Result<DeletionRecord, Unavailable> {
        let meta_user = request.user_id.as_str();
        let person = self.store.deletion_person(meta_user).await?;
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
    ) -> Result<Option<DeletionRecord>, Unavailable> {
        let Some(p) = person
            .filter(|p| request.issued_at.is_some() && p.latest_issued_at == request.issued_at)
        else {
            return Ok(None);
        };
        let record = self.store.deletion(&p.latest_code).await?;
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
    ) -> Result<DeletionRecord, Unavailable> {
        let meta_user = request.user_id.as_str();
        let revoked = self
            .revoke_granted_before(meta_user, self.issued_at(request))
            .await?;
        let accounts = self.covered_accounts(meta_user, &revoked).await?;
        let now = self.clock.now();
        let record = self.deletion_record(person, accounts, now).await?;
        // Tell the product first: it must delete its own copies.
        for account in deletion::noticed(&record.accounts) {
            let notice = deletion::notice(
                &record.code,
                account,
                now,
                self.config.store.event_retention,
            );
            self.store.put_event(&notice).await?;
        }
        let count = match person {
            Some(p) if p.count >= DELETIONS_PER_PERSON => p.count,
            Some(p) => p.count + 1,
            None => 1,
        };
        let started = self
            .store
            .start_deletion(meta_user, request.issued_at, &record, person, count)
            .await?;
        if !started {
            return Err(Unavailable::Busy);
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
            if let Some(latest) = self.store.deletion(&code).await? {
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
    ) -> Result<Vec<DeletionAccount>, Unavailable> {
        let deleted = self
            .store
            .deleted_accounts(meta_user, self.clock.now())
            .await?;
        let mut gone = Vec::new();
        for account in deleted {
            let owner = self.store.owner_of(&account.account_id).await?;
            gone.push(accounts::Gone { account, owner });
        }
        Ok(accounts::covered(deletion_accounts(revoked), gone))
    }

    /// Starts the job for `code`.
    async fn launch(&self, code: &str) -> Result<(), Unavailable> {
        match &self.launch {
            Launch::Lambda(job) => deletion::invoke(job, code, 0)
                .await
                .map_err(Unavailable::Invoke),
            Launch::InProcess => {
                let (job, code) = (self.job.clone(), code.to_string());
                tokio::spawn(async move {
                    let stop_at = shared::continuation::Deadline::distant();
                    if let Err(e) = job.run(&code, &stop_at).await {
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
    pub(crate) async fn deletion_status(&self, code: &str) -> Response<Body> {
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
        match self.store.deletion(code).await {
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

/// 20 alphanumeric characters (about 119 bits).
fn confirmation_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
