//! Connecting: the code exchanged, every account it grants checked free,
//! subscribed and stored with its sealed token (one transaction each).

use secrecy::SecretString;
use shared::connection::{Connection, Lifecycle};
use shared::logging::tag;
use shared::meta::{FacebookPage, LinkedInstagram, MetaError, WebhookTarget};
use shared::oauth_state::{AuthCode, OAuthState};
use shared::secrets::AppSecrets;
use shared::store::{Event, SaveError};
use shared::vault::{DataKeys, TokenOwner};
use shared::{secrecy, Provider};

use crate::{decide, Callback, Reason};

impl<K: DataKeys> Callback<K> {
    /// Exchanges the code and stores every account it grants.
    pub(crate) async fn connect(
        &self,
        state: &OAuthState,
        code: &AuthCode,
    ) -> Result<Vec<Connection>, Reason> {
        let code = code.secret();
        let secrets = self.secrets.get().await.map_err(|e| {
            tracing::error!(error = %e, "could not read the app secrets");
            Reason::ServerError
        })?;
        let conns = match state.provider {
            Provider::Instagram => self.connect_instagram(state, code, &secrets).await?,
            Provider::Facebook => self.connect_facebook(state, code, &secrets).await?,
        };
        for c in &conns {
            tracing::info!(
                provider = %c.provider,
                account_id = %c.account_id,
                user = %tag(&c.user_id),
                webhooks = c.webhooks_subscribed,
                "connected"
            );
        }
        Ok(conns)
    }

    async fn connect_instagram(
        &self,
        state: &OAuthState,
        code: &str,
        secrets: &AppSecrets,
    ) -> Result<Vec<Connection>, Reason> {
        let secret = secrets.app_secret(Provider::Instagram);
        let short = self
            .meta
            .exchange_instagram_code(secret, code, &state.redirect_uri)
            .await
            .map_err(exchange_failed("code exchange"))?;
        let long = self
            .meta
            .instagram_long_lived(secret, &short.access_token)
            .await
            .map_err(exchange_failed("long-lived exchange"))?;
        let profile = self
            .meta
            .instagram_profile(&long.access_token)
            .await
            .map_err(exchange_failed("profile"))?;
        self.ensure_free(&profile.user_id, &state.user_id).await?;
        let webhooks_subscribed = self
            .meta
            .instagram_subscribe(
                &long.access_token,
                self.config.meta.webhook_fields(Provider::Instagram),
            )
            .await
            .inspect_err(
                |e| tracing::warn!(error = %e, "webhook subscription failed; refresh will retry"),
            )
            .is_ok();
        let now = self.clock.now();
        let asked = self.config.meta.scopes(Provider::Instagram);
        let conn = Connection {
            webhooks_subscribed,
            scopes: decide::granted_scopes(&short.permissions, asked),
            token_expires_at: long.expires_at(now),
            meta_user_id: short.user_id.clone(),
            ..Connection::new(
                &state.user_id,
                Provider::Instagram,
                &profile.user_id,
                &profile.username,
                now,
            )
        };
        self.store(conn, &long.access_token).await.map(|c| vec![c])
    }

    async fn connect_facebook(
        &self,
        state: &OAuthState,
        code: &str,
        secrets: &AppSecrets,
    ) -> Result<Vec<Connection>, Reason> {
        let secret = secrets.app_secret(Provider::Facebook);
        let short = self
            .meta
            .exchange_facebook_code(
                secret,
                code,
                &state.redirect_uri,
                state.pkce_verifier.as_ref().map(|v| v.secret()),
            )
            .await
            .map_err(exchange_failed("code exchange"))?;
        let long = self
            .meta
            .facebook_long_lived(secret, &short)
            .await
            .map_err(exchange_failed("long-lived exchange"))?;
        let me = self
            .meta
            .facebook_me(secret, &long.access_token)
            .await
            .map_err(exchange_failed("user"))?;
        let pages = self
            .meta
            .facebook_pages(secret, &long.access_token)
            .await
            .map_err(exchange_failed("pages"))?;
        let linked: Vec<_> = pages
            .into_iter()
            .filter_map(|p| {
                let ig = p.instagram_business_account.clone()?;
                Some((p, ig))
            })
            .collect();
        if linked.is_empty() {
            return Err(Reason::NoInstagramAccount);
        }
        let mut connected = Vec::new();
        let mut taken = 0;
        for (page, ig) in linked {
            match self.connect_page(state, secrets, &me.id, &page, &ig).await {
                Ok(c) => connected.push(c),
                Err(Reason::AccountAlreadyLinked) => taken += 1,
                Err(r) => return Err(r),
            }
        }
        decide::pages_result(connected, taken)
    }

    /// One granted Page's Instagram account: subscribed through the Page and
    /// stored with the Page token.
    async fn connect_page(
        &self,
        state: &OAuthState,
        secrets: &AppSecrets,
        meta_user_id: &str,
        page: &FacebookPage,
        ig: &LinkedInstagram,
    ) -> Result<Connection, Reason> {
        self.ensure_free(&ig.id, &state.user_id).await?;
        let webhooks_subscribed = self
            .meta
            .subscribe_webhooks(
                WebhookTarget::Page(&page.id),
                secrets,
                &page.access_token,
                self.config.meta.webhook_fields(Provider::Facebook),
            )
            .await
            .inspect_err(
                |e| tracing::warn!(error = %e, "page subscription failed; refresh will retry"),
            )
            .is_ok();
        let now = self.clock.now();
        let conn = Connection {
            webhooks_subscribed,
            scopes: self.config.meta.scopes(Provider::Facebook).to_vec(),
            // Page tokens got with a long-lived user token don't expire.
            token_expires_at: None,
            meta_user_id: meta_user_id.to_string(),
            page_id: Some(page.id.clone()),
            page_name: Some(page.name.clone()),
            ..Connection::new(
                &state.user_id,
                Provider::Facebook,
                &ig.id,
                &ig.username,
                now,
            )
        };
        self.store(conn, &page.access_token).await
    }

    /// Fails early (before subscribing) when someone else owns the account.
    /// The transaction in `store` enforces the rule; this only saves work.
    async fn ensure_free(&self, account_id: &str, user_id: &str) -> Result<(), Reason> {
        match self.connections.owner_of(account_id).await {
            Ok(Some(owner)) if owner != user_id => Err(Reason::AccountAlreadyLinked),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "could not read the owner claim");
                Err(Reason::ServerError)
            }
        }
    }

    async fn store(&self, conn: Connection, token: &SecretString) -> Result<Connection, Reason> {
        let sealed = self
            .vault
            .seal(token, &TokenOwner::of(&conn))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not seal the token");
                Reason::ServerError
            })?;
        let now = self.clock.now();
        let event = Event::lifecycle(
            Lifecycle::Connected,
            &conn,
            now,
            self.config.store.event_retention,
        );
        match self
            .connections
            .save_connected(&conn, &sealed, &event, now)
            .await
        {
            Ok(()) => Ok(conn),
            Err(SaveError::AlreadyLinked) => Err(Reason::AccountAlreadyLinked),
            Err(SaveError::Store(e)) => {
                tracing::error!(error = %e, "could not store the connection");
                Err(Reason::ServerError)
            }
        }
    }
}

fn exchange_failed(step: &'static str) -> impl Fn(MetaError) -> Reason {
    move |e| {
        tracing::warn!(step, error = %e, "meta call failed");
        Reason::ExchangeFailed
    }
}
