//! Meta's OAuth and Graph endpoints for both providers.
//!
//! Never logs a URL: tokens travel in query strings on some endpoints.
//! Retries (with jittered backoff) only calls that are safe to repeat, and
//! only for throttling and transient failures; never the code exchange,
//! because a code is single use.

mod error;
pub mod proxy;
mod types;
mod webhooks;

pub use error::{classify, MetaError};
pub use types::*;
pub use webhooks::WebhookTarget;

use std::future::Future;
use std::time::Duration;

use rand::RngExt;
use reqwest::{Client, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

pub use crate::tls::ClientError;

use crate::config::MetaAppConfig;
use crate::provider::Provider;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(8);
const ATTEMPTS: u32 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(150);
/// Bounds a runaway `/me/accounts` paging loop.
const MAX_PAGES: usize = 50;

#[derive(Clone)]
pub struct MetaClient {
    http: Client,
    app: MetaAppConfig,
}

impl MetaClient {
    pub fn new(app: MetaAppConfig) -> Result<Self, ClientError> {
        Self::with_timeout(app, TOTAL_TIMEOUT)
    }

    /// A client that waits at most `timeout` for a whole answer.
    pub fn with_timeout(app: MetaAppConfig, timeout: Duration) -> Result<Self, ClientError> {
        let http = crate::tls::https_client(
            Client::builder()
                .connect_timeout(CONNECT_TIMEOUT.min(timeout))
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("ig-connect/", env!("CARGO_PKG_VERSION"))),
        )?;
        Ok(Self { http, app })
    }

    pub fn app(&self) -> &MetaAppConfig {
        &self.app
    }

    fn v(&self) -> &str {
        &self.app.graph_api_version
    }

    /// The Meta dialog URL that starts the flow.
    /// Meta's consent dialog. `pkce_challenge` (S256) is sent where given.
    pub fn authorize_url(
        &self,
        provider: Provider,
        state: &str,
        redirect_uri: &str,
        pkce_challenge: Option<&str>,
    ) -> Result<Url, url::ParseError> {
        let app_id = self.app.app_id(provider).unwrap_or_default();
        let scope = self.app.scopes(provider).join(",");
        let urls = &self.app.urls;
        let mut url = match provider {
            Provider::Instagram => Url::parse(&format!("{}/oauth/authorize", urls.instagram)),
            Provider::Facebook => {
                Url::parse(&format!("{}/{}/dialog/oauth", urls.facebook, self.v()))
            }
        }?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", app_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("response_type", "code")
                .append_pair("scope", &scope)
                .append_pair("state", state);
            if provider.takes_login_config() && !self.app.facebook_login_config_id.is_empty() {
                q.append_pair("config_id", &self.app.facebook_login_config_id);
            }
            if let Some(challenge) = pkce_challenge {
                q.append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok(url)
    }

    // ---- Instagram Login ----

    /// Code for a short-lived token. Not retried: the code is single use.
    pub async fn exchange_instagram_code(
        &self,
        app_secret: &SecretString,
        code: &str,
        redirect_uri: &str,
    ) -> Result<InstagramShortToken, MetaError> {
        let url = format!("{}/oauth/access_token", self.app.urls.instagram_api);
        let form = [
            ("client_id", self.app.instagram_app_id.as_str()),
            ("client_secret", app_secret.expose_secret()),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri),
            ("code", code),
        ];
        let raw: InstagramExchangeResponse = self.call(self.http.post(url).form(&form)).await?;
        raw.into_token()
            .ok_or_else(|| decode_error("code exchange answered without a token"))
    }

    /// Short-lived for long-lived (about 60 days).
    pub async fn instagram_long_lived(
        &self,
        app_secret: &SecretString,
        short: &SecretString,
    ) -> Result<LongLivedToken, MetaError> {
        let url = format!("{}/access_token", self.app.urls.instagram_graph);
        self.retrying(|| {
            self.call::<TokenResponse>(self.http.get(&url).query(&[
                ("grant_type", "ig_exchange_token"),
                ("client_secret", app_secret.expose_secret()),
                ("access_token", short.expose_secret()),
            ]))
        })
        .await
        .map(TokenResponse::into_long_lived)
    }

    /// A fresh long-lived token for one at least 24 hours old and not expired.
    pub async fn instagram_refresh(
        &self,
        long: &SecretString,
    ) -> Result<LongLivedToken, MetaError> {
        let url = format!("{}/refresh_access_token", self.app.urls.instagram_graph);
        self.retrying(|| {
            self.call::<TokenResponse>(self.http.get(&url).query(&[
                ("grant_type", "ig_refresh_token"),
                ("access_token", long.expose_secret()),
            ]))
        })
        .await
        .map(TokenResponse::into_long_lived)
    }

    pub async fn instagram_profile(
        &self,
        token: &SecretString,
    ) -> Result<InstagramProfile, MetaError> {
        let url = format!("{}/{}/me", self.app.urls.instagram_graph, self.v());
        self.retrying(|| {
            self.call(
                self.http
                    .get(&url)
                    .query(&[(
                        "fields",
                        "user_id,username,name,account_type,profile_picture_url",
                    )])
                    .bearer_auth(token.expose_secret()),
            )
        })
        .await
    }

    // ---- Facebook Login for Business ----

    fn graph(&self, path: &str) -> String {
        format!("{}/{}/{}", self.app.urls.graph, self.v(), path)
    }

    /// Code for a short-lived user token. Not retried: the code is single use.
    pub async fn exchange_facebook_code(
        &self,
        app_secret: &SecretString,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: Option<&str>,
    ) -> Result<SecretString, MetaError> {
        let mut query = vec![
            ("client_id", self.app.facebook_app_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("client_secret", app_secret.expose_secret()),
            ("code", code),
        ];
        if let Some(verifier) = pkce_verifier {
            query.push(("code_verifier", verifier));
        }
        let resp: TokenResponse = self
            .call(
                self.http
                    .get(self.graph("oauth/access_token"))
                    .query(&query),
            )
            .await?;
        Ok(resp.access_token)
    }

    pub async fn facebook_long_lived(
        &self,
        app_secret: &SecretString,
        short: &SecretString,
    ) -> Result<LongLivedToken, MetaError> {
        let url = self.graph("oauth/access_token");
        self.retrying(|| {
            self.call::<TokenResponse>(self.http.get(&url).query(&[
                ("grant_type", "fb_exchange_token"),
                ("client_id", self.app.facebook_app_id.as_str()),
                ("client_secret", app_secret.expose_secret()),
                ("fb_exchange_token", short.expose_secret()),
            ]))
        })
        .await
        .map(TokenResponse::into_long_lived)
    }

    /// The app-scoped id of the person (what deauthorize callbacks carry).
    pub async fn facebook_me(
        &self,
        app_secret: &SecretString,
        token: &SecretString,
    ) -> Result<FacebookUser, MetaError> {
        let url = self.graph("me");
        self.retrying(|| {
            self.call(
                self.http
                    .get(&url)
                    .query(&[("fields", "id,name")])
                    .query(&self.token_query(app_secret, token)),
            )
        })
        .await
    }

    /// Every Page the person granted, following `paging.next`.
    pub async fn facebook_pages(
        &self,
        app_secret: &SecretString,
        token: &SecretString,
    ) -> Result<Vec<FacebookPage>, MetaError> {
        let first = self.graph("me/accounts");
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let batch: PagesResponse = self
                .retrying(|| {
                    let mut req = self
                        .http
                        .get(&first)
                        .query(&[
                            (
                                "fields",
                                "id,name,access_token,instagram_business_account{id,username}",
                            ),
                            ("limit", "100"),
                        ])
                        .query(&self.token_query(app_secret, token));
                    if let Some(cursor) = &after {
                        req = req.query(&[("after", cursor.as_str())]);
                    }
                    self.call(req)
                })
                .await?;
            let more = batch.data.len();
            pages.extend(batch.data);
            // Cursor paging rather than `paging.next`: that URL embeds the
            // token and points wherever Meta says; ours stays on our host.
            match batch.paging.and_then(|p| p.next.and(p.cursors?.after)) {
                Some(cursor) if more > 0 => after = Some(cursor),
                _ => return Ok(pages),
            }
        }
        Ok(pages)
    }

    /// Token health (`debug_token`, with the app token).
    pub async fn facebook_debug_token(
        &self,
        app_secret: &SecretString,
        token: &SecretString,
    ) -> Result<DebugToken, MetaError> {
        let url = self.graph("debug_token");
        let app_token = format!(
            "{}|{}",
            self.app.facebook_app_id,
            app_secret.expose_secret()
        );
        let resp: DebugTokenResponse = self
            .retrying(|| {
                self.call(self.http.get(&url).query(&[
                    ("input_token", token.expose_secret()),
                    ("access_token", app_token.as_str()),
                ]))
            })
            .await?;
        Ok(resp.data)
    }

    /// Removes the app's grant for a person (`DELETE /{user}/permissions`
    /// with the app token, which needs no user token).
    pub async fn facebook_revoke(
        &self,
        app_secret: &SecretString,
        meta_user_id: &str,
    ) -> Result<(), MetaError> {
        let url = self.graph(&format!("{meta_user_id}/permissions"));
        let app_token = format!(
            "{}|{}",
            self.app.facebook_app_id,
            app_secret.expose_secret()
        );
        let ok: SuccessResponse = self
            .retrying(|| {
                self.call(
                    self.http
                        .delete(&url)
                        .query(&[("access_token", app_token.as_str())]),
                )
            })
            .await?;
        ok.check()
    }

    /// `access_token` plus `appsecret_proof`, which graph.facebook.com checks
    /// when the app requires it and accepts always.
    fn token_query(
        &self,
        app_secret: &SecretString,
        token: &SecretString,
    ) -> [(String, String); 2] {
        [
            ("access_token".into(), token.expose_secret().to_string()),
            ("appsecret_proof".into(), appsecret_proof(app_secret, token)),
        ]
    }

    // ---- plumbing ----

    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, MetaError> {
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(transport_error)?;
        if !(200..300).contains(&status) {
            return Err(classify(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| decode_error(&format!("unexpected answer: {e}")))
    }

    async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T, MetaError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, MetaError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if e.is_retryable() && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    // Full jitter: anywhere up to base * 2^attempt.
                    let cap = BACKOFF_BASE.as_millis() as u64 * (1 << attempt);
                    let wait = rand::rng().random_range(0..=cap);
                    tracing::warn!(error = %e, attempt, wait_ms = wait, "meta call failed, retrying");
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                other => return other,
            }
        }
    }
}

/// HMAC-SHA256 of the token keyed with the app secret, hex.
pub fn appsecret_proof(app_secret: &SecretString, token: &SecretString) -> String {
    let key = app_secret.expose_secret().as_bytes();
    hex::encode(crate::mac::hmac_sha256(
        key,
        &[token.expose_secret().as_bytes()],
    ))
}

fn transport_error(e: reqwest::Error) -> MetaError {
    // `without_url`: the URL may carry a token or secret.
    MetaError::Transient {
        message: e.without_url().to_string(),
    }
}

fn decode_error(message: &str) -> MetaError {
    MetaError::Rejected {
        status: 200,
        code: None,
        message: message.to_string(),
    }
}
