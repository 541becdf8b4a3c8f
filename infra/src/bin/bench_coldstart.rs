//! Cold-start benchmark: every function's release binary started fresh N
//! times behind the local Lambda Runtime API, as Lambda starts a new
//! execution environment. For each start: init (exec → the runtime's first
//! `/next`), the first invocation with a realistic event, a warm one, and the
//! process's peak RSS (`VmHWM`); p50 and p90 over the starts. Beside them, the
//! store and secret round trips the webhook's first invocation makes, timed
//! from a warm client, so "first invocation minus its round trips" is the
//! function's own cost.
//!
//! Run: `scripts/bench-coldstart [N]` (starts moto; release build).
//! `IGC_COLDSTART_ONLY=<binary>` keeps only that binary's subjects (and skips
//! the peer ratio): `scripts/trace-coldstart` uses it to trace one function.
//! `IGC_COLDSTART_NO_WARM=1` skips the warm invocation (profiles).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use infra::apigw::ApiRequest;
use infra::runtime_api::{Outcome, RuntimeApi};
use infra::stack::{Stack, StackOptions};
use serde_json::{json, Value};

/// One function as the benchmark starts it: its binary, extra environment
/// and the event of its first (and warm) invocation.
struct Subject {
    name: &'static str,
    /// A function binary's name, or `node` for the peer.
    binary: &'static str,
    env: Vec<(&'static str, String)>,
    event: Value,
}

struct Sample {
    init: Duration,
    first: Duration,
    warm: Duration,
    rss_kib: u64,
}

/// The webhook's realistic event: a signed one-item delivery.
fn webhook_event(stack: &Stack) -> Value {
    let meta = |path: &str| stack.meta_path(path);
    let body = json!({"object": "instagram", "entry": [{"id": "17841400000000001", "time": 1795260000456u64,
        "messaging": [{"sender": {"id": "9001"}, "recipient": {"id": "17841400000000001"},
                       "timestamp": 1795260000123u64, "message": {"mid": "m_cold", "text": "hi"}}]}]})
    .to_string();
    let secret = stack.meta.apps().instagram_app_secret;
    let signature = shared::webhook::signature_header(secret.as_bytes(), body.as_bytes());
    ApiRequest::post(&meta("/webhook"))
        .header("x-hub-signature-256", &signature)
        .header("content-type", "application/json")
        .body(body)
        .event()
}

fn subjects(stack: &Stack) -> Vec<Subject> {
    let webhook_event = webhook_event(stack);
    let mut all = vec![
        Subject {
            name: "webhook (signed one-item delivery)",
            binary: "webhook",
            env: vec![],
            event: webhook_event.clone(),
        },
        Subject {
            name: "peer: Node 20 + AWS SDK v3, the webhook's work",
            binary: "node",
            env: vec![],
            event: webhook_event,
        },
    ];
    all.extend(http_subjects());
    all.extend(invoked_subjects());
    all
}

/// The functions behind API Gateway, each with its cheapest real request.
fn http_subjects() -> Vec<Subject> {
    let http = |req: ApiRequest| req.event();
    vec![
        Subject {
            name: "authorize (POST /connect/instagram)",
            binary: "authorize",
            env: vec![],
            event: http(
                ApiRequest::post("/connect/instagram")
                    .user("user-1")
                    .json(&json!({})),
            ),
        },
        Subject {
            name: "callback (an unknown state)",
            binary: "callback",
            env: vec![],
            event: http(ApiRequest::get(
                "/oauth/instagram/callback?code=c&state=unknown-state",
            )),
        },
        Subject {
            name: "connections (GET /connections)",
            binary: "connections",
            env: vec![],
            event: http(ApiRequest::get("/connections").user("user-1")),
        },
        Subject {
            name: "graph, HTTP door (an unknown connection)",
            binary: "graph",
            env: vec![("GRAPH_DOOR", "http".into())],
            event: http(
                ApiRequest::get("/connections/instagram/1784140000000999/graph/me").user("user-1"),
            ),
        },
    ]
}

/// The functions invoked directly (by another function or the scheduler).
fn invoked_subjects() -> Vec<Subject> {
    vec![
        Subject {
            name: "graph, invoke door (an unknown connection)",
            binary: "graph",
            env: vec![("GRAPH_DOOR", "invoke".into())],
            event: json!({"provider": "instagram", "account_id": "1784140000000999",
                          "user_id": "user-1", "method": "GET", "path": "me"}),
        },
        Subject {
            name: "refresh (a scheduled run, nothing due)",
            binary: "refresh",
            env: vec![],
            event: json!({"source": "aws.scheduler"}),
        },
        Subject {
            name: "data-deletion (an unknown code)",
            binary: "data-deletion",
            env: vec![],
            event: json!({"data_deletion": {"code": "UNKNOWN0", "round": 0}}),
        },
    ]
}

fn spawn(stack: &Stack, subject: &Subject, api: &RuntimeApi) -> Child {
    let (binary, args) = match subject.binary {
        "node" => ("node".to_string(), vec![PEER.to_string()]),
        name => (format!("{}/{name}", bin_dir()), vec![]),
    };
    Command::new(&binary)
        .args(&args)
        .envs(stack.env.iter())
        .envs(subject.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", subject.binary)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"))
}

/// The Node peer (installed by `scripts/bench-coldstart`).
const PEER: &str = "benches/peers/webhook-node/index.mjs";

/// Where the functions' binaries are (`target/release` unless
/// `IGC_BIN_DIR` says otherwise, e.g. a debug build to try the harness).
fn bin_dir() -> String {
    std::env::var("IGC_BIN_DIR").unwrap_or_else(|_| "target/release".into())
}

/// Peak resident set of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn answered(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Response(v) => v
            .get("statusCode")
            .and_then(Value::as_u64)
            .is_none_or(|s| s < 500),
        Outcome::Error(_) => false,
    }
}

async fn one_start(stack: &Stack, subject: &Subject) -> Sample {
    let api = RuntimeApi::start().await;
    let started = Instant::now();
    let mut child = spawn(stack, subject, &api);
    api.wait_for_runtime().await;
    let init = started.elapsed();
    let t = Instant::now();
    let outcome = api.invoke(subject.event.clone()).await;
    let first = t.elapsed();
    assert!(answered(&outcome), "{}: {outcome:?}", subject.name);
    if matches!(subject.binary, "webhook" | "node") {
        // The same work on both sides: verified, looked up, stored.
        let status = match &outcome {
            Outcome::Response(v) => v["statusCode"].as_u64(),
            Outcome::Error(_) => None,
        };
        assert_eq!(status, Some(200), "{}: {outcome:?}", subject.name);
    }
    let t = Instant::now();
    // `scripts/profile-coldstart` profiles init and the first invocation only.
    if std::env::var_os("IGC_COLDSTART_NO_WARM").is_none() {
        api.invoke(subject.event.clone()).await;
    }
    let warm = t.elapsed();
    let rss_kib = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    Sample {
        init,
        first,
        warm,
        rss_kib,
    }
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The webhook's first invocation's round trips, each timed from a warm
/// client, as p50s over `n`: the secret (`GetSecretValue`), the owner lookup
/// (`BatchGetItem`, consistent, an owner claim and a Page alias) and the
/// conditional `PutItem` of a new event (a copy of one the webhook stored).
struct RoundTrips {
    secret: f64,
    owners: f64,
    put: f64,
    total: f64,
}

/// An event the webhook stored, to put copies of: the same attributes (and
/// index keys) as the webhook's own conditional put.
async fn stored_event(
    stack: &Stack,
    table: &str,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    let page = stack
        .dynamodb
        .scan()
        .table_name(table)
        .limit(1)
        .send()
        .await;
    let items = page
        .expect("scan the events table")
        .items
        .unwrap_or_default();
    items
        .into_iter()
        .next()
        .expect("the webhook stored an event")
}

async fn round_trips(stack: &Stack, n: usize) -> RoundTrips {
    use aws_sdk_dynamodb::types::{AttributeValue as S, KeysAndAttributes};
    let secrets = aws_sdk_secretsmanager::Client::new(&stack.aws);
    let table = stack.var("CONNECTIONS_TABLE").to_string();
    let events = stack.var("EVENTS_TABLE").to_string();
    let key = |pk: &str| {
        [("pk", pk), ("sk", "OWNER")]
            .map(|(k, v)| (k.to_string(), S::S(v.into())))
            .into()
    };
    let event = stored_event(stack, &events).await;
    let (mut secret, mut owners, mut put, mut total) = (vec![], vec![], vec![], vec![]);
    for i in 0..n + 1 {
        let t0 = Instant::now();
        let _ = secrets
            .get_secret_value()
            .secret_id(stack.var("META_SECRET_ID"))
            .send()
            .await;
        let t1 = Instant::now();
        let keys = KeysAndAttributes::builder()
            .keys(key("OWNER#x"))
            .keys(key("PAGE#x"))
            .consistent_read(true)
            .build()
            .expect("keys are set");
        let _ = stack
            .dynamodb
            .batch_get_item()
            .request_items(&table, keys)
            .send()
            .await;
        let t2 = Instant::now();
        let mut item = event.clone();
        item.insert("pk".into(), S::S(format!("BENCH#{i}")));
        let _ = stack
            .dynamodb
            .put_item()
            .table_name(&events)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        if i > 0 {
            secret.push(ms(t1 - t0));
            owners.push(ms(t2 - t1));
            put.push(ms(t2.elapsed()));
            total.push(ms(t0.elapsed()));
        }
    }
    RoundTrips {
        secret: pct(secret, 0.5),
        owners: pct(owners, 0.5),
        put: pct(put, 0.5),
        total: pct(total, 0.5),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);
    let stack = Stack::start(StackOptions::for_tests()).await;
    println!(
        "{n} fresh processes per function ({}), times in ms, RSS in MiB\n",
        bin_dir()
    );
    println!("| function | init p50 | init p90 | init + first p50 | init + first p90 | first p50 | warm p50 | peak RSS p50 |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut init_first = std::collections::HashMap::new();
    let only = std::env::var("IGC_COLDSTART_ONLY").ok();
    let chosen = subjects(&stack)
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|b| b == s.binary));
    for subject in chosen {
        let mut samples = Vec::new();
        for _ in 0..n {
            samples.push(one_start(&stack, &subject).await);
        }
        let col = |f: &dyn Fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<_>>();
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            subject.name,
            pct(col(&|s| ms(s.init)), 0.5),
            pct(col(&|s| ms(s.init)), 0.9),
            pct(col(&|s| ms(s.init + s.first)), 0.5),
            pct(col(&|s| ms(s.init + s.first)), 0.9),
            pct(col(&|s| ms(s.first)), 0.5),
            pct(col(&|s| ms(s.warm)), 0.5),
            pct(col(&|s| s.rss_kib as f64 / 1024.0), 0.5),
        );
        init_first.insert(subject.binary, pct(col(&|s| ms(s.init + s.first)), 0.5));
    }
    if only.is_some() {
        return;
    }
    let peer_ratio = init_first["node"] / init_first["webhook"];
    println!(
        "\nThe webhook's init + first invocation against the peer's, p50: {:.1}× faster",
        peer_ratio
    );
    let rt = round_trips(&stack, n).await;
    println!(
        "\nThe webhook's round trips from a warm client, p50: secret {:.1} ms + owner lookup {:.1} ms + conditional put {:.1} ms; the three in a row {:.1} ms",
        rt.secret, rt.owners, rt.put, rt.total
    );
}
