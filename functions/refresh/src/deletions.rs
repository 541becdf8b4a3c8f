//! Deleted connections: unsubscribe and revoke at Meta (best effort), then
//! destroy the last copy of the token.
//!
//! The account may have been connected again (by anyone) between the delete
//! and this job: then the webhook subscription at Meta is the newer
//! connection's, and so is the grant, and neither is touched. The old token
//! is destroyed either way.

use shared::continuation::Deadline;

use shared::meta::WebhookTarget;
use shared::secrets::AppSecrets;
use shared::store::CleanupJob;
use shared::vault::{DataKeys, TokenOwner};
use shared::Provider;

use crate::Inner;

impl<K: DataKeys> Inner<K> {
    /// Finishes the queued jobs it has time for. Returns how many jobs could
    /// not be read (each logged by a hash of its keys, and left queued).
    pub(crate) async fn finish_deletions(&self, secrets: &AppSecrets, stop_at: &Deadline) -> usize {
        let found = match self.store.cleanup_jobs(100).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "could not list deleted connections");
                return 0;
            }
        };
        for row in &found.unreadable {
            tracing::error!(row = %row, "deleted connection's cleanup job unreadable; skipped");
        }
        for job in found.jobs {
            if !stop_at.may_start() {
                break;
            }
            if !self.cleanup(secrets, &job).await {
                continue; // left for the next run
            }
            if let Err(e) = self.store.finish_cleanup(&job).await {
                tracing::error!(error = %e, "could not destroy a deleted connection's token");
            }
        }
        found.unreadable.len()
    }

    /// Finishes one job at Meta. `false`: it could not tell whether a newer
    /// connection uses the account; the job stays for the next run.
    #[tracing::instrument(name = "finish_deletion", skip_all, fields(provider = %job.provider, account_id = %job.account_id))]
    async fn cleanup(&self, secrets: &AppSecrets, job: &CleanupJob) -> bool {
        let in_use = self
            .store
            .subscription_in_use(job.provider, &job.account_id, job.page_id.as_deref())
            .await;
        match in_use {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(
                    "account connected again since the delete; its subscription and grant are the newer connection's"
                );
                return true;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not tell whether the account is connected again");
                return false;
            }
        }
        let owner = TokenOwner {
            user_id: job.user_id.clone(),
            provider: job.provider,
            account_id: job.account_id.clone(),
        };
        let token = match self.vault.open(&job.token, &owner).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "deleted connection's token unreadable; nothing to unsubscribe");
                return true;
            }
        };
        let target = WebhookTarget::of(job.provider, job.page_id.as_deref());
        if let Err(e) = self
            .meta
            .unsubscribe_webhooks(target, secrets, &token)
            .await
        {
            tracing::warn!(error = %e, "unsubscribe at Meta failed (best effort)");
        }
        // Where Meta lets the app drop the person's grant, only once none of
        // their connections is left.
        if job.provider.revokes_grants() && !job.meta_user_id.is_empty() {
            self.revoke_if_last(secrets, &job.meta_user_id).await;
        }
        tracing::info!("deleted connection finished at Meta");
        true
    }

    async fn revoke_if_last(&self, secrets: &AppSecrets, meta_user_id: &str) {
        let remaining = self
            .store
            .by_meta_user(meta_user_id)
            .await
            .map(|c| c.len())
            .unwrap_or(1);
        if remaining > 0 {
            return;
        }
        let secret = secrets.app_secret(Provider::Facebook);
        if let Err(e) = self.meta.facebook_revoke(secret, meta_user_id).await {
            tracing::warn!(error = %e, "revoke at Meta failed (best effort)");
        }
    }
}
