//! The integration-test harness: the real handlers, driven by API Gateway
//! payload 2.0 events, against moto and the emulated Meta.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use authorize::Authorize;
use aws_sdk_dynamodb::types::AttributeValue;
use callback::Callback;
use infra::apigw::{ApiRequest, ResponseExt};
use infra::stack::{Stack, StackOptions};
use lambda_http::{Body, Response};
use serde_json::Value;
use shared::vault::KmsDataKeys;
use shared::Clock;
use url::Url;

pub use infra::meta::{FbPage, FbPerson, IgPerson};

/// Every log line any handler wrote in this test process.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

std::thread_local! {
    /// The lines written on this thread since its [`Harness`] started: a
    /// `#[tokio::test]` runs its handlers on its own thread, so these are the
    /// test's own, whatever other tests log at the same time.
    static THIS_TEST: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // IGC_ECHO_LOGS=1 shows the handlers' log lines while debugging a test.
        if std::env::var_os("IGC_ECHO_LOGS").is_some() {
            eprint!("{}", String::from_utf8_lossy(buf));
        }
        self.0.lock().unwrap().extend_from_slice(buf);
        THIS_TEST.with_borrow_mut(|lines| {
            if let Some(lines) = lines {
                lines.extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        // The functions' own subscriber, as an operator with RUST_LOG=trace
        // would have it: every leak check below holds at the most verbose level.
        shared::logging::install_filtered(
            move || writer.clone(),
            false,
            tracing_subscriber::EnvFilter::new("trace"),
        );
        buf
    })
    .clone()
}

/// This test's log lines (since its [`Harness`] started), or, on a thread
/// without one, every line of the process.
pub fn logs() -> String {
    THIS_TEST
        .with_borrow(|lines| {
            lines
                .as_deref()
                .map(|l| String::from_utf8_lossy(l).into_owned())
        })
        .unwrap_or_else(all_logs)
}

/// Every log line any handler wrote in this test process (for checks that
/// nothing anywhere leaked).
pub fn all_logs() -> String {
    String::from_utf8_lossy(&capture_logs().lock().unwrap()).into_owned()
}

/// Where every test's clock starts: a fixed instant, so no test depends on
/// the time of day (a test that moves the clock by days and hours reasons
/// about UTC day boundaries from here). 12:00 UTC: the furthest from midnight.
pub const TEST_EPOCH: time::OffsetDateTime = time::macros::datetime!(2026-11-21 12:00:00 UTC);

pub struct Harness {
    pub stack: Stack,
    pub clock: Clock,
    pub authorize: Authorize,
    pub callback: Callback<KmsDataKeys>,
    pub webhook: webhook::Webhook,
    pub refresher: refresh::Refresher<KmsDataKeys>,
    pub connections: connections::Connections,
    /// Every response body and header the handlers produced.
    pub seen: Mutex<Vec<String>>,
    /// Every state value handed out.
    pub states: Mutex<Vec<String>>,
}

/// What `POST /connect` gave the browser.
pub struct Started {
    pub response: Response<Body>,
    pub authorize_url: String,
    pub state: String,
    /// `oauth_binding_<flow id>=<value>`, as the browser sends it back.
    pub cookie: Option<String>,
}

impl Harness {
    pub async fn new() -> Self {
        Self::with(StackOptions::for_tests()).await
    }

    pub async fn with(opts: StackOptions) -> Self {
        capture_logs();
        THIS_TEST.set(Some(Vec::new()));
        let stack = Stack::start(opts).await;
        let clock = Clock::fixed(TEST_EPOCH);
        Self {
            authorize: stack.authorize(clock.clone()),
            callback: stack.callback(clock.clone()),
            webhook: stack.webhook(clock.clone()),
            refresher: stack.refresher(clock.clone()),
            connections: stack.connections(clock.clone()),
            stack,
            clock,
            seen: Mutex::new(Vec::new()),
            states: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, resp: &Response<Body>) {
        let mut text = resp.body_text();
        for (k, v) in resp.headers() {
            text.push_str(&format!("\n{k}: {}", v.to_str().unwrap_or_default()));
        }
        self.seen.lock().unwrap().push(text);
    }

    async fn recorded(
        &self,
        answer: impl std::future::Future<Output = Response<Body>>,
    ) -> Response<Body> {
        let resp = answer.await;
        self.record(&resp);
        resp
    }

    pub async fn call_authorize(&self, req: ApiRequest) -> Response<Body> {
        self.recorded(self.authorize.handle(req.into_request()))
            .await
    }

    pub async fn call_callback(&self, req: ApiRequest) -> Response<Body> {
        self.recorded(self.callback.handle(req.into_request()))
            .await
    }

    pub async fn call_webhook(&self, req: ApiRequest) -> Response<Body> {
        self.recorded(self.webhook.handle(req.into_request())).await
    }

    pub async fn call_connections(&self, req: ApiRequest) -> Response<Body> {
        self.recorded(self.connections.handle(req.into_request()))
            .await
    }

    /// One scheduled refresh run with a generous deadline.
    pub async fn refresh(&self) -> refresh::Summary {
        self.refresher
            .run(shared::continuation::Deadline::distant())
            .await
            .expect("refresh run")
    }

    /// Connects Instagram account `username` (ids derived from it) for `user`.
    pub async fn connect_instagram_as(&self, user: &str, username: &str) -> String {
        let started = self.start("instagram", user, serde_json::json!({})).await;
        let mut url = Url::parse(&started.authorize_url).unwrap();
        url.query_pairs_mut().append_pair("as_username", username);
        let back = self.stack.meta.approve(url.as_str());
        let resp = self.follow(&back, started.cookie.as_deref()).await;
        let loc = resp.location();
        assert_eq!(param(&loc, "status").as_deref(), Some("connected"), "{loc}");
        param(&loc, "account_id").unwrap()
    }

    /// Connects through Facebook Login for `user`, `person` approving.
    pub async fn connect_facebook_as(&self, user: &str, person: FbPerson) {
        self.stack.meta.set_facebook_person(person);
        let loc = self.connect("facebook", user).await.location();
        assert_eq!(param(&loc, "status").as_deref(), Some("connected"), "{loc}");
    }

    /// `POST /webhook` with `body`, signed as Meta signs it with `secret`.
    pub fn signed_notification(body: &[u8], secret: &str) -> ApiRequest {
        ApiRequest::post("/webhook")
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                &shared::webhook::signature_header(secret.as_bytes(), body),
            )
            .body(body.to_vec())
    }

    /// `POST /connect/{provider}` as `user` with `body`.
    pub async fn start(&self, provider: &str, user: &str, body: Value) -> Started {
        let response = self
            .call_authorize(
                ApiRequest::post(&format!("/connect/{provider}"))
                    .user(user)
                    .json(&body),
            )
            .await;
        assert_eq!(response.status(), 200, "{}", response.body_text());
        let authorize_url = response.body_json()["authorize_url"]
            .as_str()
            .expect("authorize_url")
            .to_string();
        let state = Url::parse(&authorize_url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .expect("state in the URL");
        self.states.lock().unwrap().push(state.clone());
        let cookie = response
            .set_cookies()
            .first()
            .map(|c| c.split(';').next().unwrap().to_string());
        Started {
            response,
            authorize_url,
            state,
            cookie,
        }
    }

    /// The browser follows Meta's redirect to `GET /oauth/{provider}/callback`.
    pub async fn follow(&self, meta_redirect: &Url, cookie: Option<&str>) -> Response<Body> {
        self.follow_with_jar(meta_redirect, cookie.as_slice()).await
    }

    /// The same, sending every cookie of the browser's jar (`name=value` each).
    pub async fn follow_with_jar(&self, meta_redirect: &Url, jar: &[&str]) -> Response<Body> {
        let path = meta_redirect.path();
        let query = meta_redirect.query().unwrap_or_default();
        let mut req = ApiRequest::get(&format!("{path}?{query}"));
        for c in jar {
            req = req.cookie(c);
        }
        self.call_callback(req).await
    }

    /// A whole redirect-mode connection: start, approve at Meta, come back.
    pub async fn connect(&self, provider: &str, user: &str) -> Response<Body> {
        let started = self.start(provider, user, serde_json::json!({})).await;
        let back = self.stack.meta.approve(&started.authorize_url);
        self.follow(&back, started.cookie.as_deref()).await
    }

    pub async fn scan(&self, table_var: &str) -> Vec<HashMap<String, AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .stack
                .dynamodb
                .scan()
                .table_name(self.stack.var(table_var))
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(out.items().iter().cloned());
            start = out.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// Connection items (not owner claims, nor the tombstones of deleted
    /// connections) of a user.
    pub async fn connections_of(&self, user: &str) -> Vec<HashMap<String, AttributeValue>> {
        self.scan("CONNECTIONS_TABLE")
            .await
            .into_iter()
            .filter(|i| s(i, "pk") == format!("USER#{user}") && s(i, "sk").starts_with("CONN#"))
            .collect()
    }

    pub async fn events(&self, kind: &str) -> Vec<HashMap<String, AttributeValue>> {
        self.scan("EVENTS_TABLE")
            .await
            .into_iter()
            .filter(|i| s(i, "kind") == kind)
            .collect()
    }

    /// Asserts that no code, token, state or app secret appears in any stored
    /// item, any response, or any log line.
    pub async fn assert_no_secret_leaked(&self) {
        let mut secrets = self.stack.meta.issued_secrets();
        secrets.extend(self.states.lock().unwrap().iter().cloned());
        // PKCE verifiers live in the states table until the state is used,
        // by design; everywhere else they are secrets like the rest.
        let verifiers = self.stack.meta.pkce_verifiers();
        let apps = self.stack.meta.apps();
        secrets.push(apps.facebook_app_secret);
        secrets.push(apps.instagram_app_secret);
        assert!(secrets.len() > 2, "the test issued nothing to look for");
        let mut stored = String::new();
        for table in [
            "STATES_TABLE",
            "CONNECTIONS_TABLE",
            "EVENTS_TABLE",
            "GRAPH_TABLE",
        ] {
            for item in self.scan(table).await {
                stored.push_str(&format!("{item:?}\n"));
            }
        }
        let seen = self.seen.lock().unwrap().join("\n");
        assert!(
            logs().contains("authorization started"),
            "the log capture sees this test's handlers' lines"
        );
        // Every line of the process: a leak is a leak whoever logged it.
        let logs = all_logs();
        for secret in &secrets {
            assert!(
                !stored.contains(secret.as_str()),
                "a secret is stored in plaintext"
            );
            assert!(
                !seen.contains(secret.as_str()) || is_state_in_authorize_url(&seen, secret),
                "a secret is in a response"
            );
            assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
        }
        let outside_states: String = stored
            .lines()
            .filter(|l| !l.contains("\"state_hash\""))
            .collect();
        for v in &verifiers {
            assert!(
                !outside_states.contains(v.as_str()),
                "a PKCE verifier is stored"
            );
            assert!(
                !seen.contains(v.as_str()),
                "a PKCE verifier is in a response"
            );
            assert!(
                !logs.contains(v.as_str()),
                "a PKCE verifier is in the logs: {}",
                logs.lines()
                    .find(|l| l.contains(v.as_str()))
                    .unwrap_or_default()
            );
        }
    }
}

/// The state is in the authorize URL by design (and nowhere else).
fn is_state_in_authorize_url(seen: &str, secret: &str) -> bool {
    seen.lines()
        .filter(|l| l.contains(secret))
        .all(|l| l.contains("authorize_url") && l.contains(&format!("state={secret}")))
}

pub fn s(item: &HashMap<String, AttributeValue>, key: &str) -> String {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

pub fn query(url: &Url) -> Vec<(String, String)> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
