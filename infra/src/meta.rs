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

mod graph;
mod publishing;

#[derive(Clone, Debug)]
pub struct MetaApps {
    pub instagram_app_id: String,
    pub instagram_app_secret: String,
    pub facebook_app_id: String,
    pub facebook_app_secret: String,
}

impl Default for MetaApps {
    fn default() -> Self {
        Self {
            instagram_app_id: "990000000000001".into(),
            instagram_app_secret: "local-instagram-app-secret".into(),
            facebook_app_id: "880000000000001".into(),
            facebook_app_secret: "local-facebook-app-secret".into(),
        }
    }
}

/// The person approving at the Instagram consent page.
#[derive(Clone, Debug)]
pub struct IgPerson {
    /// App-scoped id (the exchange's `user_id`; deauthorize carries it).
    pub app_scoped_id: String,
    /// The professional account id (`/me` `user_id`; webhook `entry[].id`).
    pub account_id: String,
    pub username: String,
}

#[derive(Clone, Debug)]
pub struct FbPage {
    pub id: String,
    pub name: String,
    /// The linked Instagram professional account: (id, username).
    pub instagram: Option<(String, String)>,
}

/// The person approving at the Facebook consent page.
#[derive(Clone, Debug)]
pub struct FbPerson {
    pub id: String,
    pub name: String,
    pub pages: Vec<FbPage>,
}

impl Default for IgPerson {
    fn default() -> Self {
        Self {
            app_scoped_id: "26000000000000001".into(),
            account_id: "17841400000000001".into(),
            username: "acme.studio".into(),
        }
    }
}

impl FbPerson {
    /// `name` (app-scoped id `id`), administering `pages`.
    pub fn new(id: &str, name: &str, pages: Vec<FbPage>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            pages,
        }
    }
}

impl FbPerson {
    /// The default person, administering just `page`.
    pub fn with_page(page: FbPage) -> Self {
        Self {
            pages: vec![page],
            ..Self::default()
        }
    }
}

impl FbPage {
    /// A Page linked to the Instagram professional account `account_id`.
    pub fn linked(id: &str, name: &str, account_id: &str, username: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            instagram: Some((account_id.into(), username.into())),
        }
    }

    /// A Page with no Instagram account.
    pub fn unlinked(id: &str, name: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            instagram: None,
        }
    }
}

impl Default for FbPerson {
    fn default() -> Self {
        Self {
            id: "10160000000000001".into(),
            name: "Ada Example".into(),
            pages: vec![
                FbPage {
                    id: "110000000000001".into(),
                    name: "Acme Studio".into(),
                    instagram: Some(("17841400000000002".into(), "acme.shop".into())),
                },
                FbPage {
                    id: "110000000000002".into(),
                    name: "Acme Blog (no Instagram)".into(),
                    instagram: None,
                },
            ],
        }
    }
}

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

/// Holds an endpoint's calls until released, and tells how many arrived:
/// a test orders concurrent calls with it instead of with delays.
#[derive(Clone)]
pub struct Gate {
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Gate {
    fn new() -> Self {
        Self {
            arrived: Arc::new(tokio::sync::watch::channel(0).0),
            open: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Waits until `n` calls are held at the gate.
    pub async fn arrivals(&self, n: usize) {
        let mut rx = self.arrived.subscribe();
        let _ = rx.wait_for(|a| *a >= n).await;
    }

    /// Lets every held call (and every later one) through.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    async fn pass(&self) {
        self.arrived.send_modify(|a| *a += 1);
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
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

#[derive(serde::Deserialize, Clone, Debug)]
struct ConsentQuery {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    scope: String,
    /// "instagram" or "facebook" (set from the path, or the consent form).
    #[serde(default)]
    provider: String,
    /// On the Instagram consent page, the person may log in as another account.
    #[serde(default)]
    as_username: Option<String>,
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    code_challenge_method: Option<String>,
}

impl ConsentQuery {
    fn from_url(u: &str) -> Option<Self> {
        let url = Url::parse(u).ok()?;
        let provider = if url.path().contains("/www.instagram.com/") {
            "instagram"
        } else if url.path().contains("/dialog/oauth") {
            "facebook"
        } else {
            return None;
        };
        let mut q: Self = serde_urlencoded(url.query().unwrap_or_default())?;
        q.provider = provider.into();
        Some(q)
    }
}

fn pkce_s256(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

fn serde_urlencoded<T: serde::de::DeserializeOwned>(q: &str) -> Option<T> {
    let map: serde_json::Map<String, Value> = url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    serde_json::from_value(Value::Object(map)).ok()
}

/// The configured person, or (from the consent form) another account whose
/// ids derive from its username, so a demo can connect as many as it likes.
fn ig_person_for(i: &Inner, q: &ConsentQuery) -> IgPerson {
    match q.as_username.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() && name != i.ig_person.username => {
            let h = name
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
                % 1_000_000_000;
            IgPerson {
                app_scoped_id: format!("26000001{h:09}"),
                account_id: format!("17841401{h:09}"),
                username: name
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                    .take(30)
                    .collect(),
            }
        }
        _ => i.ig_person.clone(),
    }
}

fn decide(i: &mut Inner, q: &ConsentQuery, approve: bool) -> Result<Url, String> {
    let (expected, grant) = match q.provider.as_str() {
        "instagram" => (
            &i.apps.instagram_app_id,
            Grant::Instagram(ig_person_for(i, q)),
        ),
        "facebook" => (
            &i.apps.facebook_app_id,
            Grant::Facebook(i.fb_person.clone()),
        ),
        _ => return Err("unknown dialog".into()),
    };
    if &q.client_id != expected {
        return Err("Invalid app ID".into());
    }
    let mut redirect = Url::parse(&q.redirect_uri).map_err(|_| "Invalid redirect_uri")?;
    if q.code_challenge.is_some() && q.code_challenge_method.as_deref() != Some("S256") {
        return Err("code_challenge_method must be S256".into());
    }
    if approve {
        let code = secret(if q.provider == "instagram" {
            "AQ"
        } else {
            "AQF"
        });
        i.issued.push(code.clone());
        i.codes.insert(
            code.clone(),
            Code {
                grant,
                client_id: q.client_id.clone(),
                redirect_uri: q.redirect_uri.clone(),
                used: false,
                code_challenge: q.code_challenge.clone(),
            },
        );
        redirect
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &q.state);
        if q.provider == "instagram" {
            redirect.set_fragment(Some("_"));
        }
    } else {
        redirect
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_reason", "user_denied")
            .append_pair("error_description", "Permissions error")
            .append_pair("state", &q.state);
    }
    Ok(redirect)
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

// ---- consent ----

async fn consent_instagram(Query(mut q): Query<ConsentQuery>, State(s): State<Shared>) -> Response {
    q.provider = "instagram".into();
    consent_page(q, &s)
}

async fn consent_facebook(
    Path(_v): Path<String>,
    Query(mut q): Query<ConsentQuery>,
    State(s): State<Shared>,
) -> Response {
    q.provider = "facebook".into();
    consent_page(q, &s)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn consent_page(q: ConsentQuery, s: &Shared) -> Response {
    let i = s.lock().unwrap();
    let (expected, who, brand) = match q.provider.as_str() {
        "instagram" => (
            &i.apps.instagram_app_id,
            format!("@{}", i.ig_person.username),
            "Instagram",
        ),
        _ => (
            &i.apps.facebook_app_id,
            format!(
                "{} ({} Pages: {})",
                i.fb_person.name,
                i.fb_person.pages.len(),
                i.fb_person
                    .pages
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "Facebook",
        ),
    };
    if &q.client_id != expected {
        return (
            StatusCode::BAD_REQUEST,
            Html("<h1>Invalid app ID</h1>".to_string()),
        )
            .into_response();
    }
    let hidden = |name: &str, value: &str| {
        format!(
            r#"<input type="hidden" name="{name}" value="{}">"#,
            esc(value)
        )
    };
    let fields = [
        hidden("provider", &q.provider),
        hidden("client_id", &q.client_id),
        hidden("redirect_uri", &q.redirect_uri),
        hidden("state", &q.state),
        hidden("scope", &q.scope),
        q.code_challenge
            .as_deref()
            .map(|c| hidden("code_challenge", c))
            .unwrap_or_default(),
        q.code_challenge_method
            .as_deref()
            .map(|m| hidden("code_challenge_method", m))
            .unwrap_or_default(),
    ]
    .join("");
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{brand} (emulated)</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto}}button{{font-size:1rem;padding:.5rem 1rem;margin-right:.5rem}}</style></head>
<body><h1>{brand} — emulated consent</h1>
<form method="post" action="/consent">{fields}
<p>Logged in as <b>{who}</b>.</p>{switch}
<p>The app <code>{app}</code> asks for: <code>{scope}</code></p>
<button name="decision" value="approve" id="approve">Allow</button>
<button name="decision" value="deny" id="deny">Cancel</button></form>
<p><small>This page stands in for Meta on the local stack. Nothing leaves this machine.</small></p>
</body></html>"#,
        app = esc(&q.client_id),
        scope = esc(&q.scope),
        who = esc(&who),
        switch = if q.provider == "instagram" {
            format!(
                r#"<p><label>Or log in as @<input name="as_username" id="as_username" value="{}"></label></p>"#,
                esc(&i.ig_person.username)
            )
        } else {
            String::new()
        },
    ))
    .into_response()
}

#[derive(serde::Deserialize)]
struct Decision {
    #[serde(flatten)]
    q: ConsentQuery,
    decision: String,
}

async fn consent_decision(State(s): State<Shared>, Form(d): Form<Decision>) -> Response {
    let result = decide(&mut s.lock().unwrap(), &d.q, d.decision == "approve");
    match result {
        Ok(url) => Redirect::to(url.as_str()).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

// ---- helpers ----

fn graph_error(status: u16, code: i64, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "emulated"}})),
    )
        .into_response()
}

/// Counts the call, waits the configured delay, and returns a forced failure if set.
async fn enter(s: &Shared, endpoint: &str) -> Option<Response> {
    let (delay, failure, gate) = {
        let mut i = s.lock().unwrap();
        *i.calls.entry(endpoint.into()).or_default() += 1;
        (
            i.delay,
            i.failures.get(endpoint).cloned(),
            i.gates.get(endpoint).cloned(),
        )
    };
    if let Some(gate) = gate {
        gate.pass().await;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    failure.map(|(status, body)| {
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body,
        )
            .into_response()
    })
}

fn issue(i: &mut Inner, prefix: &str, kind: Kind, grant: Grant) -> String {
    let t = secret(prefix);
    i.issued.push(t.clone());
    i.tokens.insert(
        t.clone(),
        Token {
            kind,
            grant,
            valid: true,
        },
    );
    t
}

fn bearer_or_query(headers: &HeaderMap, q: &HashMap<String, String>) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| q.get("access_token").cloned())
}

fn token_of(i: &Inner, token: Option<&String>, kinds: &[&str]) -> Result<Token, Response> {
    let t = token
        .and_then(|t| i.tokens.get(t))
        .filter(|t| t.valid)
        .ok_or_else(|| {
            graph_error(
                400,
                190,
                "Invalid OAuth access token - Cannot parse access token",
            )
        })?;
    let name = match &t.kind {
        Kind::IgShort => "ig_short",
        Kind::IgLong => "ig_long",
        Kind::FbShort => "fb_short",
        Kind::FbLong => "fb_long",
        Kind::Page(_) => "page",
    };
    if kinds.contains(&name) {
        Ok(t.clone())
    } else {
        Err(graph_error(
            400,
            190,
            "Invalid OAuth access token for this endpoint",
        ))
    }
}

/// The app has "Require App Secret" on: every call with a user or Page
/// token carries the token's `appsecret_proof`.
fn check_proof(i: &Inner, q: &HashMap<String, String>) -> Result<(), Response> {
    let Some(token) = q.get("access_token") else {
        return Ok(());
    };
    let Some(proof) = q.get("appsecret_proof") else {
        return Err(graph_error(
            400,
            100,
            "API calls from the server require an appsecret_proof argument",
        ));
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(i.apps.facebook_app_secret.as_bytes())
        .expect("any key");
    mac.update(token.as_bytes());
    if hex::encode(mac.finalize().into_bytes()) == *proof {
        Ok(())
    } else {
        Err(graph_error(
            400,
            100,
            "Invalid appsecret_proof provided in the API argument",
        ))
    }
}

fn ig_oauth_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error_type": "OAuthException", "code": 400, "error_message": message})),
    )
        .into_response()
}

// ---- Instagram Login ----

async fn ig_code_exchange(
    State(s): State<Shared>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_code_exchange").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    if get("client_id") != i.apps.instagram_app_id
        || get("client_secret") != i.apps.instagram_app_secret
    {
        return ig_oauth_error("Invalid platform app");
    }
    if get("grant_type") != "authorization_code" {
        return ig_oauth_error("Unsupported grant_type");
    }
    let code = get("code");
    let grant = match i.codes.get_mut(&code) {
        Some(c) if !c.used && c.client_id == get("client_id") => {
            c.used = true;
            if c.redirect_uri != get("redirect_uri") {
                return ig_oauth_error("Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request");
            }
            c.grant.clone()
        }
        _ => return ig_oauth_error("Matching code was not found or was already used"),
    };
    let Grant::Instagram(person) = &grant else {
        return ig_oauth_error("Matching code was not found or was already used");
    };
    let person = person.clone();
    let token = issue(&mut i, "IGQshort", Kind::IgShort, grant);
    // Ids as numbers, like Meta's examples (they exceed 2^53: keep them exact).
    let user_id: Value = serde_json::from_str(&person.app_scoped_id)
        .unwrap_or(Value::String(person.app_scoped_id.clone()));
    let body = if i.flat_ig_exchange {
        json!({"access_token": token, "user_id": person.app_scoped_id, "permissions": ["instagram_business_basic", "instagram_business_manage_messages", "instagram_business_manage_comments"]})
    } else {
        json!({"data": [{"access_token": token, "user_id": user_id, "permissions": "instagram_business_basic,instagram_business_manage_messages,instagram_business_manage_comments"}]})
    };
    Json(body).into_response()
}

async fn ig_long_lived(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_long_lived").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    if q.get("grant_type").map(String::as_str) != Some("ig_exchange_token")
        || q.get("client_secret") != Some(&i.apps.instagram_app_secret)
    {
        return graph_error(400, 100, "Invalid parameters");
    }
    let t = match token_of(&i, q.get("access_token"), &["ig_short"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let long = issue(&mut i, "IGQlong", Kind::IgLong, t.grant);
    let expires_in = i.ig_lifetime.unwrap_or(5_183_944);
    Json(json!({"access_token": long, "token_type": "bearer", "expires_in": expires_in}))
        .into_response()
}

async fn ig_refresh(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(r) = enter(&s, "ig_refresh").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let t = match token_of(&i, q.get("access_token"), &["ig_long"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let long = issue(&mut i, "IGQlong", Kind::IgLong, t.grant);
    Json(json!({"access_token": long, "token_type": "bearer", "expires_in": 5_184_000}))
        .into_response()
}

async fn ig_me(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_me").await {
        return r;
    }
    let i = s.lock().unwrap();
    let t = match token_of(
        &i,
        bearer_or_query(&headers, &q).as_ref(),
        &["ig_long", "ig_short"],
    ) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Grant::Instagram(p) = t.grant else {
        return graph_error(400, 190, "Invalid OAuth access token");
    };
    Json(json!({"id": p.app_scoped_id, "user_id": p.account_id, "username": p.username, "name": "Acme", "account_type": "BUSINESS"})).into_response()
}

async fn ig_subscribe(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_subscribe").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let t = match token_of(&i, bearer_or_query(&headers, &q).as_ref(), &["ig_long"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Grant::Instagram(p) = t.grant else {
        return graph_error(400, 190, "Invalid OAuth access token");
    };
    let fields = q.get("subscribed_fields").cloned().unwrap_or_default();
    if fields.is_empty() {
        return graph_error(400, 100, "subscribed_fields is required");
    }
    i.subscriptions.insert(p.account_id, fields);
    Json(json!({"success": true})).into_response()
}

async fn ig_unsubscribe(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_unsubscribe").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let t = match token_of(&i, bearer_or_query(&headers, &q).as_ref(), &["ig_long"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if let Grant::Instagram(p) = t.grant {
        i.subscriptions.remove(&p.account_id);
    }
    Json(json!({"success": true})).into_response()
}

// ---- Facebook Login for Business ----

async fn fb_access_token(
    Path(_v): Path<String>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let exchange = q.get("grant_type").map(String::as_str) == Some("fb_exchange_token");
    let endpoint = if exchange {
        "fb_long_lived"
    } else {
        "fb_code_exchange"
    };
    if let Some(r) = enter(&s, endpoint).await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("client_id") != i.apps.facebook_app_id
        || get("client_secret") != i.apps.facebook_app_secret
    {
        return graph_error(400, 1, "Error validating client secret.");
    }
    if exchange {
        let t = match token_of(&i, q.get("fb_exchange_token"), &["fb_short"]) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let long = issue(&mut i, "EAAlong", Kind::FbLong, t.grant);
        return Json(
            json!({"access_token": long, "token_type": "bearer", "expires_in": 5_183_944}),
        )
        .into_response();
    }
    let code = get("code");
    let grant = match i.codes.get_mut(&code) {
        Some(c) if !c.used && c.client_id == get("client_id") => {
            c.used = true;
            if c.redirect_uri != get("redirect_uri") {
                return graph_error(400, 100, "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request");
            }
            // PKCE (RFC 7636 4.6): a code issued with a challenge needs the
            // verifier that hashes to it; one issued without takes none.
            let verifier = q.get("code_verifier");
            let proven = match (&c.code_challenge, verifier) {
                (Some(challenge), Some(v)) => *challenge == pkce_s256(v),
                (None, None) => true,
                _ => false,
            };
            if !proven {
                return graph_error(400, 100, "Invalid code verifier.");
            }
            c.grant.clone()
        }
        _ => return graph_error(400, 100, "This authorization code has been used."),
    };
    if let Some(v) = q.get("code_verifier") {
        i.pkce_verifiers.push(v.clone());
    }
    if !matches!(grant, Grant::Facebook(_)) {
        return graph_error(400, 100, "Invalid verification code format.");
    }
    let short = issue(&mut i, "EAAshort", Kind::FbShort, grant);
    Json(json!({"access_token": short, "token_type": "bearer", "expires_in": 5_400}))
        .into_response()
}

async fn fb_me(
    Path(_v): Path<String>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_me").await {
        return r;
    }
    let i = s.lock().unwrap();
    if let Err(r) = check_proof(&i, &q) {
        return r;
    }
    let t = match token_of(&i, q.get("access_token"), &["fb_long", "fb_short"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Grant::Facebook(p) = t.grant else {
        return graph_error(400, 190, "Invalid OAuth access token");
    };
    Json(json!({"id": p.id, "name": p.name})).into_response()
}

async fn fb_accounts(
    Path(_v): Path<String>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_accounts").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    if let Err(r) = check_proof(&i, &q) {
        return r;
    }
    let t = match token_of(&i, q.get("access_token"), &["fb_long"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Grant::Facebook(p) = t.grant.clone() else {
        return graph_error(400, 190, "Invalid OAuth access token");
    };
    let start: usize = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25)
        .min(i.page_size)
        .max(1);
    let end = (start + limit).min(p.pages.len());
    let mut data = Vec::new();
    for page in &p.pages[start.min(end)..end] {
        let token = issue(
            &mut i,
            "EAApage",
            Kind::Page(page.id.clone()),
            t.grant.clone(),
        );
        let mut v =
            json!({"id": page.id, "name": page.name, "access_token": token, "category": "Brand"});
        if let Some((id, username)) = &page.instagram {
            v["instagram_business_account"] = json!({"id": id, "username": username});
        }
        data.push(v);
    }
    let mut body = json!({"data": data, "paging": {"cursors": {"before": start.to_string(), "after": end.to_string()}}});
    if end < p.pages.len() {
        body["paging"]["next"] = json!("https://graph.facebook.com/next-page-placeholder");
    }
    Json(body).into_response()
}

async fn fb_subscribe(
    Path((_v, page)): Path<(String, String)>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_subscribe").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    if let Err(r) = check_proof(&i, &q) {
        return r;
    }
    let t = match token_of(&i, q.get("access_token"), &["page"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if t.kind != Kind::Page(page.clone()) {
        return graph_error(400, 200, "Permissions error: the token is not this Page's");
    }
    let fields = q.get("subscribed_fields").cloned().unwrap_or_default();
    if fields.split(',').all(|f| f.trim().is_empty()) {
        return graph_error(
            400,
            100,
            "(#100) The parameter subscribed_fields is required",
        );
    }
    i.subscriptions.insert(page, fields);
    Json(json!({"success": true})).into_response()
}

/// The Page token of `page`, and only that Page's (Meta refuses another
/// Page's token with a permissions error).
fn page_token_of(i: &Inner, q: &HashMap<String, String>, page: &str) -> Result<(), Response> {
    check_proof(i, q)?;
    let t = token_of(i, q.get("access_token"), &["page"])?;
    if t.kind != Kind::Page(page.to_string()) {
        return Err(graph_error(
            400,
            200,
            "Permissions error: the token is not this Page's",
        ));
    }
    Ok(())
}

async fn fb_unsubscribe(
    Path((_v, page)): Path<(String, String)>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_unsubscribe").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    if let Err(r) = page_token_of(&i, &q, &page) {
        return r;
    }
    i.subscriptions.remove(&page);
    Json(json!({"success": true})).into_response()
}

async fn fb_debug_token(
    Path(_v): Path<String>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_debug_token").await {
        return r;
    }
    let i = s.lock().unwrap();
    let app_token = format!("{}|{}", i.apps.facebook_app_id, i.apps.facebook_app_secret);
    if q.get("access_token") != Some(&app_token) {
        return graph_error(
            400,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    let input = q.get("input_token").and_then(|t| i.tokens.get(t));
    let valid = input.is_some_and(|t| t.valid);
    // Meta says what kind of token it is: a Page's, a user's, or (unknown
    // or another app's) nothing of the sort.
    let kind = match input.map(|t| &t.kind) {
        Some(Kind::Page(_)) => "PAGE",
        Some(Kind::FbShort | Kind::FbLong) => "USER",
        _ => "UNKNOWN",
    };
    let mut data = json!({"app_id": i.apps.facebook_app_id, "type": kind, "is_valid": valid, "expires_at": 0,
                          "scopes": ["instagram_basic", "pages_show_list"]});
    if let Some(at) = i.data_access_expires_at {
        data["data_access_expires_at"] = json!(at);
    }
    Json(json!({"data": data})).into_response()
}

async fn fb_revoke(
    Path((_v, user)): Path<(String, String)>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_revoke").await {
        return r;
    }
    let mut i = s.lock().unwrap();
    let app_token = format!("{}|{}", i.apps.facebook_app_id, i.apps.facebook_app_secret);
    if q.get("access_token") != Some(&app_token) {
        return graph_error(400, 190, "Invalid OAuth access token");
    }
    i.revoked.push(user);
    Json(json!({"success": true})).into_response()
}

async fn ig_subscriptions(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "ig_subscriptions").await {
        return r;
    }
    let i = s.lock().unwrap();
    let t = match token_of(&i, bearer_or_query(&headers, &q).as_ref(), &["ig_long"]) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Grant::Instagram(p) = t.grant else {
        return graph_error(400, 190, "Invalid OAuth access token");
    };
    let data: Vec<Value> = i
        .subscriptions
        .get(&p.account_id)
        .map(|f| vec![json!({"subscribed_fields": f.split(',').collect::<Vec<_>>()})])
        .unwrap_or_default();
    Json(json!({"data": data})).into_response()
}

async fn fb_subscriptions(
    Path((_v, page)): Path<(String, String)>,
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = enter(&s, "fb_subscriptions").await {
        return r;
    }
    let i = s.lock().unwrap();
    if let Err(r) = page_token_of(&i, &q, &page) {
        return r;
    }
    let data: Vec<Value> = i
        .subscriptions
        .get(&page)
        .map(|f| vec![json!({"id": i.apps.facebook_app_id, "name": "ig-connect", "subscribed_fields": f.split(',').collect::<Vec<_>>()})])
        .unwrap_or_default();
    Json(json!({"data": data})).into_response()
}
