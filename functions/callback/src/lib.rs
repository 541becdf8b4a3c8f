//! `GET /oauth/{provider}/callback` and `POST /oauth/{provider}/complete`.
//!
//! Order matters: the state is consumed (atomically, once) and the binding
//! checked before the code is exchanged; ownership is checked before the
//! account is subscribed; the connection, its sealed token, the owner claim
//! and the `connection.connected` event are written in one transaction, so a
//! failure never leaves half a connection.

mod connect;
pub mod decide;

pub use decide::Reason;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use shared::config::{self, MetaAppConfig, SiteConfig, StoreConfig};
use shared::connection::Connection;
use shared::logging::tag;
use shared::meta::{ClientError, MetaClient};
use shared::oauth_state::{self, AuthCode, Binding, Mode, OAuthState, StateToken};
use shared::secrets::SecretsCache;
use shared::store::{ConnectionStore, StateStore};
use shared::url::Url;
use shared::vault::{DataKeys, TokenVault};
use shared::{http, Clock, EnvReader, FromEnv, Provider};

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
    fn read(env: &mut EnvReader) -> Option<Self> {
        // Every variable read (each problem recorded) before any `?`.
        let states_table = config::table(env, "STATES_TABLE");
        let store = StoreConfig::read(env);
        let token_key_id = env.required("TOKEN_KEY_ID");
        let meta_secret_id = env.required("META_SECRET_ID");
        let meta = MetaAppConfig::read(env);
        let site = SiteConfig::read(env);
        Some(Self {
            states_table,
            store,
            token_key_id,
            meta_secret_id,
            meta,
            site: site?,
        })
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
    ) -> Result<Self, ClientError> {
        Ok(Self {
            states: StateStore::new(dynamodb.clone(), &config.states_table),
            connections: config.store.connections(&dynamodb),
            meta: MetaClient::new(config.meta.clone())?,
            vault: TokenVault::new(keys),
            secrets: SecretsCache::new(secrets, &config.meta_secret_id),
            config,
            clock,
        })
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
            let clear = http::clear_cookie(&name, &oauth_state::binding_cookie_path(provider));
            if let Err(e) = http::add_set_cookie(&mut resp, &clear) {
                // It expires with the state anyway (its Max-Age).
                tracing::warn!(error = %e, %provider, "the flow's cookie could not be cleared");
            }
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
            .emit_with_usage(decide::connect_metrics(provider, outcome));
    }

    fn log_failure(&self, provider: Provider, reason: Reason, user_id: &str) {
        tracing::info!(%provider, reason = reason.as_str(), user = %tag(user_id), "connection failed");
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
