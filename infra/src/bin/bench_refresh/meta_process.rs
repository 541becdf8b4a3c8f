//! The emulated Meta in a process of its own, so the harness's peak RSS is
//! the refresher's (and the small harness's), not the emulator's tables of
//! tokens.
//!
//! The benchmark runs itself again with `BENCH_REFRESH_ROLE=meta`: that
//! child starts the emulator and a control listener on loopback, prints one
//! JSON line on stdout (the `META_*_URL` variables and the control URL) and
//! serves until its stdin closes (the parent is gone) or it is killed. The
//! parent seeds tokens, sets the delay and reads the call counts over HTTP
//! through [`MetaControl`], and kills the child by its pid when done.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post, put};
use axum::Router;
use infra::meta::{MetaApps, MetaEmulator};
use serde_json::json;

const ROLE_VAR: &str = "BENCH_REFRESH_ROLE";
const ROLE: &str = "meta";

/// Whether this process is the emulated Meta's (see [`serve`]).
pub fn is_meta_role() -> bool {
    std::env::var(ROLE_VAR).as_deref() == Ok(ROLE)
}

/// The child's work: the emulator (the apps [`infra::stack::Stack`] gives
/// Secrets Manager) and its control listener, until stdin closes.
pub async fn serve() {
    let meta = MetaEmulator::start(MetaApps::default(), 0).await;
    let env: HashMap<_, _> = meta.env().into_iter().collect();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the control listener on loopback");
    let control = format!("http://{}", listener.local_addr().expect("local addr"));
    let app = control_routes(meta);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("{}", json!({"env": env, "control": control}));
    // Until the parent goes: its end of our stdin closes then.
    let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut tokio::io::sink()).await;
}

#[derive(serde::Deserialize)]
struct Fields {
    fields: String,
}

type Meta = State<MetaEmulator>;

async fn mint(State(m): Meta, Path((account, username)): Path<(String, String)>) -> String {
    m.mint_instagram_token(&account, &username)
}

async fn subscribe(State(m): Meta, Path(id): Path<String>, Query(q): Query<Fields>) {
    m.set_subscription(&id, &q.fields)
}

async fn delay(State(m): Meta, Path(ms): Path<u64>) {
    m.set_delay(Duration::from_millis(ms))
}

async fn calls(State(m): Meta, Path(endpoint): Path<String>) -> String {
    m.calls(&endpoint).to_string()
}

fn control_routes(meta: MetaEmulator) -> Router {
    Router::new()
        .route("/mint/{account}/{username}", post(mint))
        .route("/subscription/{id}", put(subscribe))
        .route("/delay/{ms}", put(delay))
        .route("/calls/{endpoint}", get(calls))
        .with_state(meta)
}

/// The parent's side of the child's control listener (cheap to clone).
#[derive(Clone)]
pub struct MetaControl {
    http: reqwest::Client,
    url: String,
}

impl MetaControl {
    async fn send(&self, req: reqwest::RequestBuilder) -> String {
        let res = req
            .send()
            .await
            .expect("the emulated Meta's process answers");
        let status = res.status();
        let body = res.text().await.expect("its answer");
        assert!(status.is_success(), "control call: {status} {body}");
        body
    }

    /// [`MetaEmulator::mint_instagram_token`], in the child.
    pub async fn mint_instagram_token(&self, account_id: &str, username: &str) -> String {
        let url = format!("{}/mint/{account_id}/{username}", self.url);
        self.send(self.http.post(url)).await
    }

    /// [`MetaEmulator::set_subscription`], in the child.
    pub async fn set_subscription(&self, id: &str, fields: &str) {
        let url = format!("{}/subscription/{id}", self.url);
        self.send(self.http.put(url).query(&[("fields", fields)]))
            .await;
    }

    /// [`MetaEmulator::set_delay`], in the child.
    pub async fn set_delay(&self, d: Duration) {
        let url = format!("{}/delay/{}", self.url, d.as_millis());
        self.send(self.http.put(url)).await;
    }

    /// [`MetaEmulator::calls`], in the child.
    pub async fn calls(&self, endpoint: &str) -> usize {
        let url = format!("{}/calls/{endpoint}", self.url);
        let n = self.send(self.http.get(url)).await;
        n.parse().expect("a count")
    }
}

/// The running child; dropping it (also while unwinding from a panic) kills
/// it by its pid.
pub struct MetaProcess {
    child: Child,
    /// The `META_*_URL` variables that point the service at the child.
    pub env: Vec<(String, String)>,
    pub control: MetaControl,
}

#[derive(serde::Deserialize)]
struct Announce {
    env: HashMap<String, String>,
    control: String,
}

impl MetaProcess {
    /// Runs this benchmark's executable again in the emulated Meta's role.
    pub fn spawn() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("the benchmark's path"))
            .env(ROLE_VAR, ROLE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the emulated Meta's process");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("its stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("its announcement");
        let announce: Announce = serde_json::from_str(&line).expect("a JSON announcement");
        Self {
            child,
            env: announce.env.into_iter().collect(),
            control: MetaControl {
                http: reqwest::Client::new(),
                url: announce.control,
            },
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for MetaProcess {
    fn drop(&mut self) {
        // `Child::kill` is SIGKILL to this child's pid, nothing broader.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
