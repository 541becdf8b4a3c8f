//! Deleted connections: unsubscribe and revoke at Meta (best effort), then
//! destroy the last copy of the token.

use std::time::Instant;

use shared::meta::WebhookTarget;
use shared::secrets::AppSecrets;
use shared::store::CleanupJob;
use shared::vault::{DataKeys, TokenOwner};
use shared::Provider;

use crate::Inner;

impl<K: DataKeys> Inner<K> {
    pub(crate) async fn finish_deletions(&self, secrets: &AppSecrets, stop_at: Instant) {
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

    #[tracing::instrument(name = "finish_deletion", skip_all, fields(provider = %job.provider, account_id = %job.account_id))]
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
        let target = WebhookTarget::of(job.provider, job.page_id.as_deref());
        if let Err(e) = self
            .meta
            .unsubscribe_webhooks(target, secrets, &token)
            .await
        {
            tracing::warn!(error = %e, "unsubscribe at Meta failed (best effort)");
        }
        // Facebook lets the app drop the person's grant, but only once none of
        // their Pages is connected any more. Instagram Login has no revoke.
        if job.provider == Provider::Facebook && !job.meta_user_id.is_empty() {
            self.revoke_if_last(secrets, &job.meta_user_id).await;
        }
        tracing::info!("deleted connection finished at Meta");
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
