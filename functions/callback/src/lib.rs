//! `GET /oauth/{provider}/callback` and `POST /oauth/{provider}/complete`.
//!
//! Order matters: the state is consumed (atomically, once) and the binding
//! checked before the code is exchanged; ownership is checked before the
//! account is subscribed; the connection, its sealed token, the owner claim
//! and the `connection.connected` event are written in one transaction, so a
//! failure never leaves half a connection.

pub mod decide;

pub use decide::Reason;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use secrecy::SecretString;
use serde::Deserialize;
use shared::config::{self, MetaAppConfig, SiteConfig, StoreConfig};
use shared::connection::{Connection, Lifecycle};
use shared::logging::tag;
use shared::meta::{FacebookPage, LinkedInstagram, MetaClient, MetaError, WebhookTarget};
use shared::oauth_state::{self, AuthCode, Binding, Mode, OAuthState, StateToken};
use shared::secrets::{AppSecrets, SecretsCache};
use shared::store::{ConnectionStore, Event, SaveError, StateStore};
use shared::url::Url;
use shared::vault::{DataKeys, TokenOwner, TokenVault};
use shared::{http, secrecy, Clock, EnvReader, FromEnv, Provider};

#[derive(Clone, Debug)]
pub struct CallbackConfig {
    pub states_table: String,
    pub store: StoreConfig,
    pub token_key_id: String,
    pub meta_secret_id: String,
    pub meta: MetaAppConfig,
    pub site: SiteConfig,
}

impl FromEnv for CallbackConfig {
    fn read(env: &mut EnvReader) -> Self {
        Self {
            states_table: config::table(env, "STATES_TABLE"),
            store: StoreConfig::read(env),
            token_key_id: env.required("TOKEN_KEY_ID"),
            meta_secret_id: env.required("META_SECRET_ID"),
            meta: MetaAppConfig::read(env),
            site: SiteConfig::read(env),
        }
    }
}

pub struct Callback<K> {
    config: CallbackConfig,
    states: StateStore,
    connections: ConnectionStore,
    meta: MetaClient,
    vault: TokenVault<K>,
    secrets: SecretsCache,
    clock: Clock,
}

#[derive(Deserialize)]
struct CompleteRequest {
    code: String,
    state: String,
}

impl<K: DataKeys> Callback<K> {
    pub fn new(
        config: CallbackConfig,
        dynamodb: shared::aws_sdk_dynamodb::Client,
        secrets: shared::aws_sdk_secretsmanager::Client,
        keys: K,
        clock: Clock,
    ) -> Self {
        Self {
            states: StateStore::new(dynamodb.clone(), &config.states_table),
            connections: config.store.connections(&dynamodb),
            meta: MetaClient::new(config.meta.clone()),
            vault: TokenVault::new(keys),
            secrets: SecretsCache::new(secrets, &config.meta_secret_id),
            config,
            clock,
        }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        let provider = http::path_param(&req, "provider", 1)
            .as_deref()
            .and_then(Provider::parse)
            .filter(|p| self.config.meta.app_id(*p).is_some());
        let is_complete = req.method() == Method::POST || req.uri().path().ends_with("/complete");
        match (provider, is_complete) {
            (None, _) => http::error(
                StatusCode::NOT_FOUND,
                "unknown_provider",
                "This provider is not available.",
            ),
            (Some(p), false) => self.redirect_callback(&req, p).await,
            (Some(p), true) => self.complete(&req, p).await,
        }
    }

    /// `GET /oauth/{provider}/callback`: always a redirect, never an error page.
    async fn redirect_callback(&self, req: &Request, provider: Provider) -> Response<Body> {
        // Known once the state is consumed: only this flow's cookie is cleared.
        let mut flow_cookie = None;
        let (return_to, outcome) = match self.redirect_flow(req, provider, &mut flow_cookie).await {
            Ok((return_to, conns)) => (Some(return_to), Ok(conns)),
            Err((return_to, reason)) => (return_to, Err(reason)),
        };
        self.count(provider, outcome.as_ref().map(Vec::len).map_err(|r| *r));
        let base = return_to.unwrap_or_else(|| self.config.site.frontend_url.clone());
        let params = decide::redirect_params(provider, outcome.as_deref().map_err(|r| *r));
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut resp = http::redirect(&http::with_query(&base, &pairs));
        if let Some(name) = flow_cookie {
            http::add_set_cookie(
                &mut resp,
                &http::clear_cookie(&name, &oauth_state::binding_cookie_path(provider)),
            );
        }
        resp
    }

    /// The redirect flow; errors carry the state's `return_to` when the state
    /// was valid. Sets `flow_cookie` to the name of the flow's binding cookie.
    async fn redirect_flow(
        &self,
        req: &Request,
        provider: Provider,
        flow_cookie: &mut Option<String>,
    ) -> Result<(Url, Vec<Connection>), (Option<Url>, Reason)> {
        let state = http::query_param(req, "state").unwrap_or_default();
        let state = self
            .consume(StateToken::from_request(&state), provider, Mode::Redirect)
            .await
            .map_err(|r| (None, r))?;
        let return_to = state.return_to.clone();
        let fail = |r: Reason| (Some(return_to.clone()), r);
        *flow_cookie = state.binding_cookie_name();
        // Any value sent under this flow's cookie name may prove the binding:
        // a planted one can't match the hash, and mustn't hide the genuine one.
        let sent = flow_cookie
            .as_deref()
            .map(|name| http::cookies(req, name))
            .unwrap_or_default();
        if !sent
            .iter()
            .any(|c| state.is_bound_to(Binding::Cookie(Some(c))))
        {
            self.log_failure(provider, Reason::BrowserMismatch, &state.user_id);
            return Err(fail(Reason::BrowserMismatch));
        }
        if let Some(error) = http::query_param(req, "error") {
            let reason = decide::reason_for_meta_error(&error);
            tracing::info!(%provider, meta_error = %short(&error), "meta returned an error");
            self.log_failure(provider, reason, &state.user_id);
            return Err(fail(reason));
        }
        let Some(code) = http::query_param(req, "code").and_then(|c| AuthCode::from_request(&c))
        else {
            self.log_failure(provider, Reason::ExchangeFailed, &state.user_id);
            return Err(fail(Reason::ExchangeFailed));
        };
        match self.connect(&state, &code).await {
            Ok(conns) => Ok((return_to, conns)),
            Err(r) => {
                self.log_failure(provider, r, &state.user_id);
                Err(fail(r))
            }
        }
    }

    /// `POST /oauth/{provider}/complete`: the binding is the caller's JWT.
    async fn complete(&self, req: &Request, provider: Provider) -> Response<Body> {
        let Some(user_id) = http::user_id(req) else {
            return http::unauthenticated();
        };
        let Ok(body) = serde_json::from_slice::<CompleteRequest>(http::body_bytes(req)) else {
            return http::error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The body must be a JSON object with \"code\" and \"state\".",
            );
        };
        let result = async {
            let state = self
                .consume(
                    StateToken::from_request(&body.state),
                    provider,
                    Mode::Complete,
                )
                .await?;
            if !state.is_bound_to(Binding::User(&user_id)) {
                return Err(Reason::BrowserMismatch);
            }
            let code = AuthCode::from_request(&body.code).ok_or(Reason::ExchangeFailed)?;
            self.connect(&state, &code).await
        }
        .await;
        self.count(provider, result.as_ref().map(Vec::len).map_err(|r| *r));
        match result {
            Ok(conns) => http::json(
                StatusCode::OK,
                &serde_json::json!({
                    "connections": conns.iter().map(Connection::view).collect::<Vec<_>>()
                }),
            ),
            Err(reason) => {
                self.log_failure(provider, reason, &user_id);
                http::error(reason.status(), reason.as_str(), reason.message())
            }
        }
    }

    async fn consume(
        &self,
        state: Option<StateToken>,
        provider: Provider,
        mode: Mode,
    ) -> Result<OAuthState, Reason> {
        let Some(state) = state else {
            return Err(Reason::InvalidState);
        };
        match self
            .states
            .consume(&state.hash(), provider, mode, self.clock.now())
            .await
        {
            Ok(Some(s)) => Ok(s),
            Ok(None) => {
                tracing::info!(%provider, reason = "invalid_state", "callback refused");
                Err(Reason::InvalidState)
            }
            Err(e) => {
                tracing::error!(error = %e, %provider, "could not read the state");
                Err(Reason::ServerError)
            }
        }
    }

    /// The attempt's metrics, with the KMS requests it made.
    fn count(&self, provider: Provider, outcome: Result<usize, Reason>) {
        self.vault
            .take_usage()
            .add_to(decide::connect_metrics(provider, outcome))
            .emit();
    }

    fn log_failure(&self, provider: Provider, reason: Reason, user_id: &str) {
        tracing::info!(%provider, reason = reason.as_str(), user = %tag(user_id), "connection failed");
    }

    /// Exchanges the code and stores every account it grants.
    async fn connect(
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

/// Meta's `error` parameter, cut short and made printable for a log line.
fn short(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

impl<K: DataKeys> Callback<K> {
    /// Serves this handler on the Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`):
    /// what `main` does once it has built the handler, and what the tests run
    /// against a local Runtime API.
    pub async fn serve(&self) -> Result<(), lambda_http::Error> {
        http::serve(|req| self.handle(req)).await
    }
}
