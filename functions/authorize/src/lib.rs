//! `POST /connect/{provider}`: starts the OAuth flow.
//!
//! Stores a one-time state (its hash, with the user, provider, mode, redirect
//! URI, return URL and binding hash) and answers with Meta's dialog URL. In
//! `redirect` mode it also sets the browser-binding cookie, whose value is
//! unrelated to the state and stored only as a hash.

use std::time::Duration;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use shared::config::{self, MetaAppConfig, SiteConfig};
use shared::http;
use shared::meta::{ClientError, MetaClient};
use shared::oauth_state::{self, Mode, OAuthState, PkceVerifier, StateToken};
use shared::store::StateStore;
use shared::{Clock, EnvReader, FromEnv, Provider};

#[derive(Clone, Debug)]
pub struct AuthorizeConfig {
    pub states_table: String,
    pub meta: MetaAppConfig,
    pub site: SiteConfig,
    pub state_ttl: Duration,
}

impl FromEnv for AuthorizeConfig {
    fn read(env: &mut EnvReader) -> Option<Self> {
        // Every variable read (each problem recorded) before any `?`.
        let states_table = config::table(env, "STATES_TABLE");
        let meta = MetaAppConfig::read(env);
        let site = SiteConfig::read(env);
        let state_ttl = config::state_ttl(env);
        Some(Self {
            states_table,
            meta,
            site: site?,
            state_ttl,
        })
    }
}

pub struct Authorize {
    config: AuthorizeConfig,
    states: StateStore,
    meta: MetaClient,
    clock: Clock,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConnectRequest {
    return_to: Option<String>,
    mode: Option<String>,
}

impl Authorize {
    pub fn new(
        config: AuthorizeConfig,
        dynamodb: shared::aws_sdk_dynamodb::Client,
        clock: Clock,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            states: StateStore::new(dynamodb, &config.states_table),
            meta: MetaClient::new(config.meta.clone())?,
            config,
            clock,
        })
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        let Some(provider) = http::path_param(&req, "provider", 1)
            .as_deref()
            .and_then(Provider::parse)
            .filter(|p| self.config.meta.app_id(*p).is_some())
        else {
            return http::error(
                StatusCode::NOT_FOUND,
                "unknown_provider",
                "This provider is not available.",
            );
        };
        let Some(user_id) = http::user_id(&req) else {
            return http::unauthenticated();
        };
        match read_request(&self.config, http::body_bytes(&req), provider) {
            Ok(start) => self.start(provider, &user_id, start).await,
            Err(BadRequest(code, message)) => http::error(StatusCode::BAD_REQUEST, code, message),
        }
    }

    /// Stores a new state for the flow and answers with Meta's dialog URL
    /// (and, in redirect mode, the flow's binding cookie).
    async fn start(&self, provider: Provider, user_id: &str, start: Start) -> Response<Body> {
        let flow = self.new_flow(provider, user_id, start);
        let answer = match self.answer(&flow) {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(error = %e, %provider, "could not write the answer");
                return cannot_start();
            }
        };
        if let Err(e) = self.states.put(&flow.record).await {
            tracing::error!(error = %e, %provider, "could not store the state");
            return cannot_start();
        }
        tracing::info!(
            %provider,
            mode = flow.record.mode.as_str(),
            user = %shared::logging::tag(user_id),
            "authorization started"
        );
        answer
    }

    /// A new state, its binding secret (redirect mode) and its record.
    fn new_flow(&self, provider: Provider, user_id: &str, start: Start) -> Flow {
        let state = StateToken::generate();
        let binding = (start.mode == Mode::Redirect).then(oauth_state::new_secret);
        let now = self.clock.now();
        let record = OAuthState {
            state_hash: state.hash(),
            user_id: user_id.to_string(),
            provider,
            mode: start.mode,
            redirect_uri: start.redirect_uri,
            return_to: start.return_to.clone(),
            binding_hash: binding.as_deref().map(oauth_state::hash),
            pkce_verifier: provider.uses_pkce().then(PkceVerifier::new),
            created_at: now,
            expires_at: now + self.config.state_ttl,
        };
        Flow {
            state,
            binding,
            record,
        }
    }

    /// The `200`: Meta's dialog URL, and the binding cookie if any.
    fn answer(&self, flow: &Flow) -> Result<Response<Body>, CannotAnswer> {
        let record = &flow.record;
        let challenge = record.pkce_verifier.as_ref().map(PkceVerifier::challenge);
        let authorize_url = self.meta.authorize_url(
            record.provider,
            flow.state.secret(),
            &record.redirect_uri,
            challenge.as_deref(),
        )?;
        let mut resp = http::json(
            StatusCode::OK,
            &serde_json::json!({
                "authorize_url": authorize_url.as_str(),
                "state_expires_at": shared::clock::rfc3339(record.expires_at),
            }),
        );
        if let (Some(binding), Some(name)) = (&flow.binding, record.binding_cookie_name()) {
            let path = oauth_state::binding_cookie_path(record.provider);
            let ttl = self.config.state_ttl.as_secs();
            http::add_set_cookie(&mut resp, &http::set_cookie(&name, binding, &path, ttl))?;
        }
        Ok(resp)
    }
}

/// A flow about to start.
struct Flow {
    state: StateToken,
    binding: Option<String>,
    record: OAuthState,
}

/// Why the answer to a start could not be written (never, once the
/// configuration is checked: base URLs parse, cookie names are ASCII).
#[derive(Debug, thiserror::Error)]
enum CannotAnswer {
    #[error("Meta's dialog URL: {0}")]
    Url(#[from] shared::url::ParseError),
    #[error("the binding cookie: {0}")]
    Cookie(#[from] lambda_http::http::header::InvalidHeaderValue),
}

fn cannot_start() -> Response<Body> {
    http::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "The connection could not be started. Try again.",
    )
}

/// Checks the body against this service's settings (no I/O): the mode,
/// the `redirect_uri` it implies, and the `return_to` allowed.
fn read_request(
    config: &AuthorizeConfig,
    body: &[u8],
    provider: Provider,
) -> Result<Start, BadRequest> {
    let bad_request = BadRequest;
    let request: ConnectRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ConnectRequest::default()
    } else {
        serde_json::from_slice(body).map_err(|_| {
            bad_request(
                "invalid_request",
                "The body must be a JSON object with optional \"return_to\" and \"mode\".",
            )
        })?
    };
    let mode = match request.mode.as_deref() {
        None => Mode::Redirect,
        Some(m) => Mode::parse(m).ok_or_else(|| {
            bad_request(
                "invalid_request",
                "\"mode\" must be \"redirect\" or \"complete\".",
            )
        })?,
    };
    let site = &config.site;
    let redirect_uri = match mode {
        Mode::Redirect => site.callback_uri(provider),
        Mode::Complete => site.complete_redirect_uri.clone().ok_or_else(|| {
            bad_request(
                "complete_mode_disabled",
                "This service has no COMPLETE_REDIRECT_URI: use the redirect mode.",
            )
        })?,
    };
    let return_to = shared::return_to::resolve(
        request.return_to.as_deref(),
        &site.frontend_url,
        &site.allowed_return_origins,
    )
    .map_err(|why| bad_request("invalid_return_to", why.0))?;
    Ok(Start {
        mode,
        redirect_uri,
        return_to,
    })
}

/// A `400`: its error code and message.
#[derive(Debug, PartialEq)]
struct BadRequest(&'static str, &'static str);

/// What a valid `POST /connect` asks for.
#[derive(Debug)]
struct Start {
    mode: Mode,
    redirect_uri: String,
    return_to: shared::url::Url,
}

impl Authorize {
    /// Serves this handler on the Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`):
    /// what `main` does once it has built the handler, and what the tests run
    /// against a local Runtime API.
    pub async fn serve(&self) -> Result<(), lambda_http::Error> {
        http::serve(|req| self.handle(req)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(complete: Option<&str>) -> AuthorizeConfig {
        let mut vars: HashMap<String, String> = [
            ("STATES_TABLE", "states"),
            ("INSTAGRAM_APP_ID", "1"),
            ("FACEBOOK_APP_ID", "2"),
            ("PUBLIC_BASE_URL", "https://api.example.com"),
            ("FRONTEND_URL", "https://app.example.com/home"),
            ("ALLOWED_RETURN_ORIGINS", "https://app.example.com"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(c) = complete {
            vars.insert("COMPLETE_REDIRECT_URI".into(), c.into());
        }
        AuthorizeConfig::from_env(EnvReader::from_map(vars)).expect("a valid configuration")
    }

    #[test]
    fn a_missing_frontend_url_is_named_with_every_other_problem() {
        let vars = [
            ("INSTAGRAM_APP_ID", "1"),
            ("PUBLIC_BASE_URL", "https://api.example.com"),
            ("STATE_TTL_SECONDS", "ten"),
        ];
        let vars = vars.map(|(k, v)| (k.to_string(), v.to_string()));
        let err = AuthorizeConfig::from_env(EnvReader::from_map(vars.into()))
            .map(drop)
            .expect_err("refused")
            .to_string();
        for name in ["STATES_TABLE", "FRONTEND_URL", "STATE_TTL_SECONDS"] {
            assert!(err.contains(name), "{name} not in {err}");
        }
    }

    fn read(config: &AuthorizeConfig, body: &str) -> Result<Start, BadRequest> {
        read_request(config, body.as_bytes(), Provider::Instagram)
    }

    #[test]
    fn an_empty_body_is_the_redirect_mode_back_to_the_frontend() {
        for body in ["", "  \n", "{}"] {
            let start = read(&config(None), body).unwrap();
            assert_eq!(start.mode, Mode::Redirect);
            assert_eq!(
                start.redirect_uri,
                "https://api.example.com/oauth/instagram/callback"
            );
            assert_eq!(start.return_to.as_str(), "https://app.example.com/home");
        }
    }

    #[test]
    fn return_to_is_resolved_or_refused() {
        let c = config(None);
        let start = read(&c, r#"{"return_to": "/done?x=1"}"#).unwrap();
        assert_eq!(start.return_to.as_str(), "https://app.example.com/done?x=1");
        for bad in [
            "//evil.com",
            "https://evil.com/",
            "/\\evil.com",
            "javascript:alert(1)",
        ] {
            let body = serde_json::json!({ "return_to": bad }).to_string();
            assert_eq!(read(&c, &body).unwrap_err().0, "invalid_return_to", "{bad}");
        }
    }

    #[test]
    fn the_complete_mode_needs_its_page() {
        let body = r#"{"mode": "complete"}"#;
        assert_eq!(
            read(&config(None), body).unwrap_err().0,
            "complete_mode_disabled"
        );
        let start = read(&config(Some("https://app.example.com/finish")), body).unwrap();
        assert_eq!(start.mode, Mode::Complete);
        assert_eq!(start.redirect_uri, "https://app.example.com/finish");
    }

    #[test]
    fn anything_else_is_an_invalid_request() {
        let c = config(None);
        for body in [
            "not json",
            "[]",
            r#"{"mode": "popup"}"#,
            r#"{"return_to": "/x", "extra": 1}"#,
            r#"{"return_to": 5}"#,
        ] {
            assert_eq!(read(&c, body).unwrap_err().0, "invalid_request", "{body}");
        }
    }

    #[test]
    fn each_provider_has_its_own_callback() {
        let start = read_request(&config(None), b"", Provider::Facebook).unwrap();
        assert_eq!(
            start.redirect_uri,
            "https://api.example.com/oauth/facebook/callback"
        );
    }
}
