//! Webhook subscriptions: an Instagram Login account subscribes itself, a
//! Facebook connection through its Page. [`WebhookTarget`] makes that choice
//! once; the rest of the service says what, not where.

use secrecy::{ExposeSecret, SecretString};

use super::{MetaClient, MetaError, SubscribedApps, SuccessResponse};
use crate::provider::Provider;
use crate::secrets::AppSecrets;

/// Where a connection's webhooks are subscribed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookTarget<'a> {
    /// The Instagram account itself (`/me/subscribed_apps`, Instagram Login).
    Account,
    /// The Facebook Page linked to the account (`/{page}/subscribed_apps`).
    Page(&'a str),
}

impl<'a> WebhookTarget<'a> {
    pub fn of(provider: Provider, page_id: Option<&'a str>) -> Self {
        match (provider, page_id) {
            (Provider::Facebook, Some(page)) => Self::Page(page),
            _ => Self::Account,
        }
    }
}

impl MetaClient {
    /// Subscribes the target to this app's webhooks (idempotent at Meta).
    pub async fn subscribe_webhooks(
        &self,
        target: WebhookTarget<'_>,
        secrets: &AppSecrets,
        token: &SecretString,
        fields: &[String],
    ) -> Result<(), MetaError> {
        match target {
            WebhookTarget::Page(page) => {
                let secret = secrets.app_secret(Provider::Facebook);
                self.facebook_subscribe_page(secret, page, token, fields)
                    .await
            }
            WebhookTarget::Account => self.instagram_subscribe(token, fields).await,
        }
    }

    /// Whether Meta still delivers the target's webhooks to this app.
    pub async fn webhooks_subscribed(
        &self,
        target: WebhookTarget<'_>,
        secrets: &AppSecrets,
        token: &SecretString,
    ) -> Result<bool, MetaError> {
        match target {
            WebhookTarget::Page(page) => {
                let secret = secrets.app_secret(Provider::Facebook);
                self.facebook_page_is_subscribed(secret, page, token).await
            }
            WebhookTarget::Account => self.instagram_is_subscribed(token).await,
        }
    }

    pub async fn unsubscribe_webhooks(
        &self,
        target: WebhookTarget<'_>,
        secrets: &AppSecrets,
        token: &SecretString,
    ) -> Result<(), MetaError> {
        match target {
            WebhookTarget::Page(page) => {
                let secret = secrets.app_secret(Provider::Facebook);
                self.facebook_unsubscribe_page(secret, page, token).await
            }
            WebhookTarget::Account => self.instagram_unsubscribe(token).await,
        }
    }

    /// Subscribes the account to this app's webhooks (idempotent at Meta).
    pub async fn instagram_subscribe(
        &self,
        token: &SecretString,
        fields: &[String],
    ) -> Result<(), MetaError> {
        let url = format!(
            "{}/{}/me/subscribed_apps",
            self.app.urls.instagram_graph,
            self.v()
        );
        let fields = fields.join(",");
        let ok: SuccessResponse = self
            .retrying(|| {
                self.call(
                    self.http
                        .post(&url)
                        .query(&[("subscribed_fields", fields.as_str())])
                        .bearer_auth(token.expose_secret()),
                )
            })
            .await?;
        ok.check()
    }

    /// Whether this app is subscribed to the account's webhooks (Meta drops
    /// the subscription after about an hour of failed deliveries).
    pub async fn instagram_is_subscribed(&self, token: &SecretString) -> Result<bool, MetaError> {
        let url = format!(
            "{}/{}/me/subscribed_apps",
            self.app.urls.instagram_graph,
            self.v()
        );
        let apps: SubscribedApps = self
            .retrying(|| self.call(self.http.get(&url).bearer_auth(token.expose_secret())))
            .await?;
        // Asked with this app's token: any entry is this app's subscription.
        Ok(apps
            .data
            .iter()
            .any(|a| a.id.is_none() || a.id.as_deref() == Some(&self.app.instagram_app_id)))
    }

    pub async fn instagram_unsubscribe(&self, token: &SecretString) -> Result<(), MetaError> {
        let url = format!(
            "{}/{}/me/subscribed_apps",
            self.app.urls.instagram_graph,
            self.v()
        );
        let ok: SuccessResponse = self
            .retrying(|| self.call(self.http.delete(&url).bearer_auth(token.expose_secret())))
            .await?;
        ok.check()
    }

    pub async fn facebook_subscribe_page(
        &self,
        app_secret: &SecretString,
        page_id: &str,
        page_token: &SecretString,
        fields: &[String],
    ) -> Result<(), MetaError> {
        let url = self.graph(&format!("{page_id}/subscribed_apps"));
        let fields = fields.join(",");
        let ok: SuccessResponse = self
            .retrying(|| {
                self.call(
                    self.http
                        .post(&url)
                        .query(&[("subscribed_fields", fields.as_str())])
                        .query(&self.token_query(app_secret, page_token)),
                )
            })
            .await?;
        ok.check()
    }

    /// Whether this app is among the apps subscribed to the Page.
    pub async fn facebook_page_is_subscribed(
        &self,
        app_secret: &SecretString,
        page_id: &str,
        page_token: &SecretString,
    ) -> Result<bool, MetaError> {
        let url = self.graph(&format!("{page_id}/subscribed_apps"));
        let apps: SubscribedApps = self
            .retrying(|| {
                self.call(
                    self.http
                        .get(&url)
                        .query(&self.token_query(app_secret, page_token)),
                )
            })
            .await?;
        Ok(apps
            .data
            .iter()
            .any(|a| a.id.as_deref() == Some(&self.app.facebook_app_id)))
    }

    pub async fn facebook_unsubscribe_page(
        &self,
        app_secret: &SecretString,
        page_id: &str,
        page_token: &SecretString,
    ) -> Result<(), MetaError> {
        let url = self.graph(&format!("{page_id}/subscribed_apps"));
        let ok: SuccessResponse = self
            .retrying(|| {
                self.call(
                    self.http
                        .delete(&url)
                        .query(&self.token_query(app_secret, page_token)),
                )
            })
            .await?;
        ok.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_connections_subscribe_through_their_page() {
        let of = WebhookTarget::of;
        assert_eq!(
            of(Provider::Facebook, Some("p1")),
            WebhookTarget::Page("p1")
        );
        assert_eq!(of(Provider::Instagram, None), WebhookTarget::Account);
        // Instagram Login has no Page; a Facebook row without one uses the account.
        assert_eq!(of(Provider::Instagram, Some("p1")), WebhookTarget::Account);
        assert_eq!(of(Provider::Facebook, None), WebhookTarget::Account);
    }
}
