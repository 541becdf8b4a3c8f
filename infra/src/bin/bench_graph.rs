//! Graph proxy benchmark: one warm container (one `Graph`), emulated Meta
//! answering every call after a fixed 100 ms. Reports the proxy's overhead
//! (its latency minus Meta's, per request) at p50/p99 with a cached token and
//! with a cold one, the requests per second it sustains with 64 concurrent
//! callers, and KMS and DynamoDB calls per request.
//!
//! Run: `scripts/bench-graph [REQUESTS]` (default 2000 for the throughput run).

use shared::FromEnv;
use std::time::{Duration, Instant};

use graph::{Door, Graph, GraphConfig, ProxyRequest};
use infra::apigw::{ApiRequest, ResponseExt};
use infra::calls::Calls;
use infra::stack::{Stack, StackOptions};
use shared::graph::policy::GraphMethod;
use shared::vault::KmsDataKeys;
use shared::Clock;
use shared::Provider;
use url::Url;

const CONNECTIONS: usize = 8;
const META_DELAY: Duration = Duration::from_millis(100);

/// Connects `n` Instagram accounts for `bench-user` the way a person does.
async fn connect(stack: &Stack, clock: &Clock, n: usize) -> Vec<String> {
    let authorize = stack.authorize(clock.clone());
    let callback = stack.callback(clock.clone());
    let mut accounts = Vec::new();
    for i in 0..n {
        let resp = authorize
            .handle(
                ApiRequest::post("/connect/instagram")
                    .user("bench-user")
                    .json(&serde_json::json!({}))
                    .into_request(),
            )
            .await;
        let url = resp.body_json()["authorize_url"]
            .as_str()
            .unwrap()
            .to_string();
        let cookie = resp.set_cookies()[0].split(';').next().unwrap().to_string();
        let mut url = Url::parse(&url).unwrap();
        url.query_pairs_mut()
            .append_pair("as_username", &format!("bench.{i}"));
        let back = stack.meta.approve(url.as_str());
        let resp = callback
            .handle(
                ApiRequest::get(&format!("{}?{}", back.path(), back.query().unwrap()))
                    .cookie(&cookie)
                    .into_request(),
            )
            .await;
        let loc = resp.location();
        let account = loc
            .query_pairs()
            .find(|(k, _)| k == "account_id")
            .map(|(_, v)| v.into_owned())
            .expect("connected");
        accounts.push(account);
    }
    accounts
}

fn request(account: &str) -> ProxyRequest {
    ProxyRequest {
        door: Door::Http,
        user_id: "bench-user".into(),
        provider: Provider::Instagram,
        account_id: account.into(),
        method: GraphMethod::Get,
        path: "me/media".into(),
        query: vec![("fields".into(), "id,caption,media_url".into())],
        body: None,
        body_len: 0,
        idempotency_key: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// CPU time (user + system) this process has used.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields 14 and 15 (utime, stime) in clock ticks, after the `(comm)`.
    let after = stat.rsplit(')').next().unwrap_or_default();
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Overheads of requests: with the store round trips, and without.
struct Overheads {
    total: Vec<Duration>,
    own: Vec<Duration>,
}

impl Overheads {
    fn new() -> Self {
        Self {
            total: Vec::new(),
            own: Vec::new(),
        }
    }

    fn add(&mut self, trace: &graph::CallTrace) {
        let meta = trace.meta_latency.expect("Meta was called");
        let overhead = trace.latency.saturating_sub(meta);
        self.total.push(overhead);
        self.own.push(overhead.saturating_sub(trace.store_latency));
    }

    fn extend(&mut self, other: Overheads) {
        self.total.extend(other.total);
        self.own.extend(other.own);
    }

    fn sorted(mut self) -> Self {
        self.total.sort();
        self.own.sort();
        self
    }
}

/// Runs `n` sequential requests, advancing the clock by `advance` before
/// each (past the token cache's 5 minutes: every request is cold).
async fn sequential(
    graph: &Graph<KmsDataKeys>,
    clock: &Clock,
    accounts: &[String],
    n: usize,
    advance: time::Duration,
) -> Overheads {
    let mut overheads = Overheads::new();
    for i in 0..n {
        clock.advance(advance);
        let (answer, trace) = graph
            .proxy_traced(request(&accounts[i % accounts.len()]))
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        overheads.add(&trace);
    }
    overheads.sorted()
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let stack = Stack::start(StackOptions {
        prefix: format!("benchg{}", std::process::id()),
        ..StackOptions::for_tests()
    })
    .await;
    let clock = Clock::fixed(time::macros::datetime!(2026-11-21 12:00:00 UTC));
    let accounts = connect(&stack, &clock, CONNECTIONS).await;

    let calls = (Calls::default(), Calls::default());
    let graph = roomy_graph(&stack, &calls, &clock);
    stack.meta.set_delay(META_DELAY);

    bench_sequential(&graph, &clock, &accounts, &calls).await;
    bench_throughput(graph, &accounts, total, &calls).await;
    assert_eq!(stack.meta.calls("graph"), 250 + total);
}

/// The Graph proxy on the stack, its DynamoDB and KMS calls counted by
/// `calls`.
fn roomy_graph(
    stack: &Stack,
    (ddb_calls, kms_calls): &(Calls, Calls),
    clock: &Clock,
) -> Graph<KmsDataKeys> {
    let mut config = GraphConfig::from_env(stack.env_reader()).unwrap();
    // It measures the proxy, not its limits: buckets as large as the
    // configuration allows (taking from them still costs its UpdateItems).
    let roomy = shared::graph::buckets::BucketRule {
        rate: 10_000,
        burst: 100_000,
    };
    config.limits = shared::graph::buckets::CallerLimits {
        user: roomy,
        connection: roomy,
    };
    let keys = KmsDataKeys::new(kms_calls.kms(&stack.aws), &config.token_key_id);
    Graph::new(
        config,
        ddb_calls.dynamodb(&stack.aws),
        aws_sdk_secretsmanager::Client::new(&stack.aws),
        keys,
        clock.clone(),
    )
    .expect("an HTTPS client")
}

/// Cold and cached tokens, one request at a time.
async fn bench_sequential(
    graph: &Graph<KmsDataKeys>,
    clock: &Clock,
    accounts: &[String],
    (ddb_calls, kms_calls): &(Calls, Calls),
) {
    // Cold: the clock moves 6 minutes before each request, so every one
    // opens its token with KMS.
    let cold = sequential(graph, clock, accounts, 50, time::Duration::minutes(6)).await;
    let cold_calls = (ddb_calls.take(), kms_calls.take());
    // Warm: the tokens are cached.
    let warm = sequential(graph, clock, accounts, 200, time::Duration::ZERO).await;
    let warm_calls = (ddb_calls.take(), kms_calls.take());

    println!("| token | requests | overhead p50 | overhead p99 | without the store round trip: p50 | p99 | DynamoDB calls per request | KMS calls per request |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, o, (ddb, kms)) in [
        ("cold (KMS Decrypt)", &cold, cold_calls),
        ("cached", &warm, warm_calls),
    ] {
        let n = o.total.len();
        println!(
            "| {name} | {n} | {} | {} | {} | {} | {} | {} |",
            ms(percentile(&o.total, 0.5)),
            ms(percentile(&o.total, 0.99)),
            ms(percentile(&o.own, 0.5)),
            ms(percentile(&o.own, 0.99)),
            Calls::describe(&ddb, n),
            if kms.is_empty() {
                "0".to_string()
            } else {
                Calls::describe(&kms, n)
            },
        );
    }
}

/// Throughput: 64 callers at once over the connections, tokens warm.
async fn bench_throughput(
    graph: Graph<KmsDataKeys>,
    accounts: &[String],
    total: usize,
    (ddb_calls, kms_calls): &(Calls, Calls),
) {
    let callers = 64;
    let started = Instant::now();
    let cpu_before = cpu_time();
    let overheads = concurrent(graph, accounts, total, callers).await;
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let overheads = overheads.sorted();
    let (ddb, kms) = (ddb_calls.take(), kms_calls.take());
    println!();
    println!("| callers | requests | wall time | requests/s | ideal at 100 ms per Meta call | overhead p50 | overhead p99 | without the store: p50 | CPU per request (whole process, emulated Meta included) | DynamoDB calls per request | KMS Decrypts in all |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {callers} | {total} | {:.1} s | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        callers as f64 / META_DELAY.as_secs_f64(),
        ms(percentile(&overheads.total, 0.5)),
        ms(percentile(&overheads.total, 0.99)),
        ms(percentile(&overheads.own, 0.5)),
        ms(cpu / total as u32),
        Calls::describe(&ddb, total),
        kms.get("Decrypt").copied().unwrap_or(0),
    );
}

/// `total` requests by `callers` tasks at once; their overheads, unsorted.
async fn concurrent(
    graph: Graph<KmsDataKeys>,
    accounts: &[String],
    total: usize,
    callers: usize,
) -> Overheads {
    let graph = std::sync::Arc::new(graph);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (graph, next, accounts) = (graph.clone(), next.clone(), accounts.to_vec());
        tasks.spawn(async move {
            let mut overheads = Overheads::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    return overheads;
                }
                let (answer, trace) = graph
                    .proxy_traced(request(&accounts[i % accounts.len()]))
                    .await;
                assert_eq!(answer.status, 200, "{:?}", answer.body);
                overheads.add(&trace);
            }
        });
    }
    let mut overheads = Overheads::new();
    while let Some(r) = tasks.join_next().await {
        overheads.extend(r.unwrap());
    }
    overheads
}
