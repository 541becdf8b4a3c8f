//! An emulated Meta on loopback: consent pages, the OAuth endpoints and the
//! Graph endpoints this service calls, for both providers. Hosts are path
//! prefixes (`/graph.facebook.com/...`), so one listener stands in for all.
//!
//! It checks what Meta checks (app id and secret, the exact redirect URI,
//! single-use codes, `appsecret_proof`) and records every code and token it
//! issues, so tests can assert that none of them leaks.

// Handlers return early with a ready response; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{KeyInit, Mac};
use rand::Rng;
use serde_json::{json, Value};
use url::Url;

mod auth;
mod consent;
mod graph;
mod oauth;
mod people;
mod publishing;
mod subscriptions;

pub use auth::Gate;
use auth::*;
use consent::*;
use oauth::*;
pub use people::{FbPage, FbPerson, IgPerson, MetaApps};
use subscriptions::*;

#[derive(Clone, Debug)]
enum Grant {
    Instagram(IgPerson),
    Facebook(FbPerson),
}

struct Code {
    grant: Grant,
    client_id: String,
    redirect_uri: String,
    used: bool,
    /// The PKCE `code_challenge` (S256) of the dialog that issued the code.
    code_challenge: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    IgShort,
    IgLong,
    FbShort,
    FbLong,
    Page(String),
}

#[derive(Clone)]
struct Token {
    kind: Kind,
    grant: Grant,
    valid: bool,
}

#[derive(Default)]
struct Inner {
    apps: MetaApps,
    ig_person: IgPerson,
    fb_person: FbPerson,
    codes: HashMap<String, Code>,
    tokens: HashMap<String, Token>,
    issued: Vec<String>,
    calls: HashMap<String, usize>,
    failures: HashMap<String, (u16, String)>,
    flat_ig_exchange: bool,
    delay: Duration,
    page_size: usize,
    subscriptions: HashMap<String, String>,
    data_access_expires_at: Option<i64>,
    revoked: Vec<String>,
    ig_lifetime: Option<u64>,
    /// Every PKCE verifier received on a code exchange.
    pkce_verifiers: Vec<String>,
    /// The Graph calls products make (the proxy's side).
    graph: graph::GraphState,
    /// Endpoints whose calls wait at the door until released.
    gates: HashMap<String, Gate>,
}

type Shared = Arc<Mutex<Inner>>;

/// A running emulated Meta. Dropping it does not stop the listener; it
/// lives as long as the runtime that started it.
#[derive(Clone)]
pub struct MetaEmulator {
    addr: SocketAddr,
    inner: Shared,
}

/// Graph API version the emulator serves (any `vNN.N` path works).
fn secret(prefix: &str) -> String {
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

impl MetaEmulator {
    /// Starts on `127.0.0.1:port` (0: any free port).
    pub async fn start(apps: MetaApps, port: u16) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            apps,
            page_size: 2,
            ..Inner::default()
        }));
        let app = router(inner.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the emulated Meta on loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("emulated Meta serves");
        });
        Self { addr, inner }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `META_*_URL` variables that point the service here.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let b = self.base_url();
        vec![
            ("META_FACEBOOK_URL", format!("{b}/www.facebook.com")),
            ("META_GRAPH_URL", format!("{b}/graph.facebook.com")),
            ("META_INSTAGRAM_URL", format!("{b}/www.instagram.com")),
            ("META_INSTAGRAM_API_URL", format!("{b}/api.instagram.com")),
            (
                "META_INSTAGRAM_GRAPH_URL",
                format!("{b}/graph.instagram.com"),
            ),
        ]
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }

    pub fn apps(&self) -> MetaApps {
        self.with(|i| i.apps.clone())
    }

    /// Who approves at the next Instagram consent.
    pub fn set_instagram_person(&self, p: IgPerson) {
        self.with(|i| i.ig_person = p);
    }

    /// Who approves at the next Facebook consent.
    pub fn set_facebook_person(&self, p: FbPerson) {
        self.with(|i| i.fb_person = p);
    }

    /// The person clicks Approve on `authorize_url`: where Meta sends the browser.
    pub fn approve(&self, authorize_url: &str) -> Url {
        let q = ConsentQuery::from_url(authorize_url).expect("an authorize URL");
        self.with(|i| decide(i, &q, true))
            .expect("a valid authorize request")
    }

    /// The person clicks Cancel.
    pub fn deny(&self, authorize_url: &str) -> Url {
        let q = ConsentQuery::from_url(authorize_url).expect("an authorize URL");
        self.with(|i| decide(i, &q, false))
            .expect("a valid authorize request")
    }

    /// How often an endpoint was called (names: see [`Self::fail`]).
    pub fn calls(&self, endpoint: &str) -> usize {
        self.with(|i| i.calls.get(endpoint).copied().unwrap_or(0))
    }

    /// Makes `endpoint` answer `status` with `body` until cleared. Endpoints:
    /// `ig_code_exchange`, `ig_long_lived`, `ig_refresh`, `ig_me`,
    /// `ig_subscribe`, `fb_code_exchange`, `fb_long_lived`, `fb_me`,
    /// `fb_accounts`, `fb_subscribe`.
    pub fn fail(&self, endpoint: &str, status: u16, body: &str) {
        self.with(|i| i.failures.insert(endpoint.into(), (status, body.into())));
    }

    pub fn clear_failures(&self) {
        self.with(|i| i.failures.clear());
    }

    /// Answer the Instagram code exchange flat (`{"access_token",...}`)
    /// instead of wrapped in `data` (Meta's pages show both).
    pub fn use_flat_instagram_exchange(&self, flat: bool) {
        self.with(|i| i.flat_ig_exchange = flat);
    }

    /// Delays every answer (to widen race windows).
    /// Holds every call to `endpoint` (e.g. `graph`) at the door until the
    /// returned gate is released.
    pub fn hold(&self, endpoint: &str) -> Gate {
        let gate = Gate::new();
        self.with(|i| i.gates.insert(endpoint.to_string(), gate.clone()));
        gate
    }

    pub fn set_delay(&self, d: Duration) {
        self.with(|i| i.delay = d);
    }

    /// Every code and token issued so far.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.with(|i| i.issued.clone())
    }

    /// Meta throttles an account (Instagram account id, or Page id for
    /// `facebook`): Graph calls answer error `code` with
    /// `estimated_time_to_regain_access` = `regain_minutes` until cleared.
    pub fn throttle(&self, id: &str, code: i64, regain_minutes: i64) {
        self.with(|i| i.graph.throttled.insert(id.into(), (code, regain_minutes)));
    }

    pub fn clear_throttles(&self) {
        self.with(|i| i.graph.throttled.clear());
    }

    /// Every `media_publish` that published: (account id, container id).
    pub fn published_posts(&self) -> Vec<(String, String)> {
        self.with(|i| i.graph.publishing.published.clone())
    }

    /// The daily publishing limit (`config.quota_total`) of every account.
    pub fn set_publishing_quota(&self, total: u32) {
        self.with(|i| i.graph.publishing.quota_total = total);
    }

    /// Posts an account published in the rolling 24 hours (`quota_usage`).
    pub fn set_quota_usage(&self, account_id: &str, usage: u32) {
        self.with(|i| i.graph.publishing.usage.insert(account_id.into(), usage));
    }

    /// How many status polls a new video container takes to finish.
    pub fn set_video_polls(&self, polls: u32) {
        self.with(|i| i.graph.publishing.video_polls = polls);
    }

    /// New containers end `ERROR` with `status` (`None`: they finish).
    pub fn fail_containers(&self, status: Option<&str>) {
        self.with(|i| i.graph.publishing.fail_containers = status.map(str::to_string));
    }

    /// New containers end `EXPIRED`.
    pub fn expire_containers(&self, expire: bool) {
        self.with(|i| i.graph.publishing.expire_containers = expire);
    }

    /// `media_publish` publishes, then holds its answer until the returned
    /// gate is released (a publish whose answer times out).
    pub fn stall_after_publish(&self) -> Gate {
        let gate = Gate::new();
        self.with(|i| i.graph.publishing.stall_after_publish = Some(gate.clone()));
        gate
    }

    /// Every message sent through the Graph hosts: (sender id, request body).
    pub fn sent_messages(&self) -> Vec<(String, Value)> {
        self.with(|i| i.graph.sent.clone())
    }

    /// The `x-app-usage` `call_count` (percent) every Graph answer reports.
    pub fn set_app_usage(&self, call_count: u32) {
        self.with(|i| i.graph.app_call_count = call_count);
    }

    /// Graph answers carry `access_token` fields, as a misbehaving Meta might.
    /// How many media every account has (`GET .../media` pages through
    /// them, 25 a page unless `limit` says otherwise).
    pub fn set_media_count(&self, count: usize) {
        self.with(|i| i.graph.media_count = count);
    }

    pub fn leak_tokens_in_answers(&self, leak: bool) {
        self.with(|i| i.graph.leak_tokens = leak);
    }

    /// Every PKCE code verifier received on a Facebook code exchange.
    pub fn pkce_verifiers(&self) -> Vec<String> {
        self.with(|i| i.pkce_verifiers.clone())
    }

    /// Meta drops the app's subscription (as after an hour of failed deliveries).
    pub fn drop_subscription(&self, id: &str) {
        self.with(|i| i.subscriptions.remove(id));
    }

    /// The app is subscribed to `id`'s webhooks (`fields`, comma-separated),
    /// as after a connect: for seeding many connections at once.
    pub fn set_subscription(&self, id: &str, fields: &str) {
        self.with(|i| i.subscriptions.insert(id.to_string(), fields.to_string()));
    }

    /// The webhook fields an account (Instagram) or Page (Facebook) is subscribed to.
    pub fn subscription(&self, id: &str) -> Option<String> {
        self.with(|i| i.subscriptions.get(id).cloned())
    }

    /// Meta invalidates every token of an account (password change, app
    /// removed): calls with them answer error 190.
    pub fn invalidate_account(&self, account_id: &str) {
        let tokens = self.tokens_for_account(account_id);
        self.with(|i| {
            for t in tokens {
                if let Some(tok) = i.tokens.get_mut(&t) {
                    tok.valid = false;
                }
            }
        });
    }

    /// `debug_token` reports this data-access expiry (epoch seconds) for Page tokens.
    pub fn set_data_access_expires_at(&self, at: Option<i64>) {
        self.with(|i| i.data_access_expires_at = at);
    }

    /// A long-lived Instagram token for an account, as if it had connected
    /// (for seeding benchmarks without running every OAuth flow).
    pub fn mint_instagram_token(&self, account_id: &str, username: &str) -> String {
        let person = IgPerson {
            app_scoped_id: format!("26{account_id}"),
            account_id: account_id.to_string(),
            username: username.to_string(),
        };
        self.with(|i| issue(i, "IGQlong", Kind::IgLong, Grant::Instagram(person)))
    }

    /// `expires_in` of the long-lived Instagram tokens issued from now on.
    pub fn set_instagram_token_lifetime(&self, secs: u64) {
        self.with(|i| i.ig_lifetime = Some(secs));
    }

    /// Whether the person's grant was revoked with `DELETE /{user}/permissions`.
    pub fn revoked(&self, meta_user_id: &str) -> bool {
        self.with(|i| i.revoked.iter().any(|r| r == meta_user_id))
    }

    /// The long-lived/page tokens issued for an account id, newest last.
    pub fn tokens_for_account(&self, account_id: &str) -> Vec<String> {
        self.with(|i| {
            i.issued
                .iter()
                .filter(|t| {
                    i.tokens
                        .get(*t)
                        .is_some_and(|tok| match (&tok.kind, &tok.grant) {
                            (Kind::IgLong, Grant::Instagram(p)) => p.account_id == account_id,
                            (Kind::Page(page), Grant::Facebook(p)) => p.pages.iter().any(|pg| {
                                &pg.id == page
                                    && pg
                                        .instagram
                                        .as_ref()
                                        .is_some_and(|(id, _)| id == account_id)
                            }),
                            _ => false,
                        })
                })
                .cloned()
                .collect()
        })
    }
}

fn router(inner: Shared) -> Router {
    Router::new()
        .route("/www.instagram.com/oauth/authorize", get(consent_instagram))
        .route("/www.facebook.com/{v}/dialog/oauth", get(consent_facebook))
        .route("/consent", post(consent_decision))
        .route(
            "/api.instagram.com/oauth/access_token",
            post(ig_code_exchange),
        )
        .route("/graph.instagram.com/access_token", get(ig_long_lived))
        .route("/graph.instagram.com/refresh_access_token", get(ig_refresh))
        .route("/graph.instagram.com/{v}/me", get(ig_me))
        .route(
            "/graph.instagram.com/{v}/me/subscribed_apps",
            post(ig_subscribe)
                .delete(ig_unsubscribe)
                .get(ig_subscriptions),
        )
        .route(
            "/graph.facebook.com/{v}/oauth/access_token",
            get(fb_access_token),
        )
        .route("/graph.facebook.com/{v}/me", get(fb_me))
        .route("/graph.facebook.com/{v}/me/accounts", get(fb_accounts))
        .route(
            "/graph.facebook.com/{v}/{page}/subscribed_apps",
            post(fb_subscribe)
                .delete(fb_unsubscribe)
                .get(fb_subscriptions),
        )
        .route("/graph.facebook.com/{v}/debug_token", get(fb_debug_token))
        .route(
            "/graph.facebook.com/{v}/{user}/permissions",
            axum::routing::delete(fb_revoke),
        )
        .fallback(graph::fallback)
        .with_state(inner)
}
