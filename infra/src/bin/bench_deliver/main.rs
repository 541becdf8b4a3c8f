//! Outbound webhooks benchmark: one warm `deliver` container (one batch of
//! up to 10 SQS records at a time) against a local receiver answering in 50
//! ms. moto serves one request at a time, so the function's DynamoDB and SQS
//! calls go to an in-process stand-in (answering at once;
//! endpoints read from moto once, events seeded, writes acknowledged and
//! counted, messages held for their `DelaySeconds`) on threads of its own
//! (`bench-side`, with the receiver), so the function's CPU is counted apart.
//! Runs: EVENTS events at once (throughput); RATE events/s for SECONDS s to
//! 10 healthy endpoints; the same with 1 of the 10 never answering (15 s
//! timeout), CONTAINERS fast-lane batches at a time, each stopped after
//! LIMIT s. The slow lane (`SlowDeliveryQueue`) is served as its event
//! source mapping would: one record per invocation, up to
//! SLOW_CONCURRENCY at a time.
//! Run: `scripts/bench-deliver [EVENTS] [RATE] [SECONDS] [CONTAINERS] [LIMIT]`
//! (defaults 200, 10, 10, 1, 60).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use admin::{Admin, AdminConfig};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use deliver::{Deliver, DeliverConfig};
use infra::apigw::{ApiRequest, ResponseExt};
use infra::calls::Calls;
use infra::stack::{Stack, StackOptions};
use serde_json::{json, Value};
use shared::outbound::resolver::Lookup;
use shared::vault::KmsDataKeys;
use shared::{Clock, EnvReader, FromEnv};
use standin::{item_key, Queue, Store};

mod standin;

const RECEIVER_LATENCY: Duration = Duration::from_millis(50);
/// The fast lane's event source mapping's batch size.
const BATCH: usize = 10;
/// The slow lane's `MaximumConcurrency` (template.yaml).
const SLOW_CONCURRENCY: usize = 20;
/// The name of the threads that are not the function's.
const SIDE: &str = "bench-side";
const ADMIN_ARN: &str = "arn:aws:iam::123456789012:role/backend-admin";

/// Deliveries the receiver answered: when, `webhook-id`.
#[derive(Default)]
struct Received(Mutex<Vec<(Instant, String)>>);

async fn receive(seen: Arc<Received>, uri: Uri, headers: HeaderMap) -> Response {
    if uri.path() == "/slow" {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(RECEIVER_LATENCY).await;
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok());
    let id = id.unwrap_or_default().to_string();
    seen.0.lock().unwrap().push((Instant::now(), id));
    StatusCode::OK.into_response()
}

/// The receiver's and the stand-in's runtime, on threads of their own.
fn side_runtime() -> tokio::runtime::Handle {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    let rt = rt.worker_threads(2).thread_name(SIDE).enable_all().build();
    Box::leak(Box::new(rt.unwrap())).handle().clone()
}

/// Serves `app` on the side runtime; its port.
fn serve(side: &tokio::runtime::Handle, app: axum::Router) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    side.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(listener, app).await
    });
    port
}

/// CPU seconds of the function's threads and of the side threads.
fn cpu_seconds() -> (f64, f64) {
    let mut cpu = [0u64; 2];
    let tasks = std::fs::read_dir("/proc/self/task").unwrap().flatten();
    for stat in tasks.filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok()) {
        let Some((name, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ticks = rest.split_whitespace().skip(11).take(2);
        let ticks: u64 = ticks.filter_map(|f| f.parse::<u64>().ok()).sum();
        cpu[usize::from(name.contains(SIDE))] += ticks;
    }
    (cpu[0] as f64 / 100.0, cpu[1] as f64 / 100.0)
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(field));
    let kib = line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    kib.unwrap_or(0)
}

struct Bench {
    _stack: Stack,
    deliver: Arc<Deliver<KmsDataKeys>>,
    store: Arc<Store>,
    seen: Arc<Received>,
    events_table: String,
    /// The slow lane's queue ARN, as its records name it.
    slow_arn: String,
    calls: [Calls; 3],
}

/// The receiver and the stand-in, served on the side runtime.
fn side_servers() -> (Arc<Received>, u16, Arc<Store>, String) {
    let side = side_runtime();
    let seen = Arc::new(Received::default());
    let log = seen.clone();
    let rx = axum::Router::new().fallback(move |u: Uri, h: HeaderMap| receive(log.clone(), u, h));
    let rx_port = serve(&side, rx);
    let store = Arc::new(Store {
        queue: Queue::default(),
        slow: Queue::default(),
        slow_marks: Mutex::default(),
        items: Mutex::default(),
        reads: Mutex::default(),
        moto: infra::stack::emulator_endpoint(),
        http: reqwest::Client::new(),
    });
    let s = store.clone();
    let app = axum::Router::new().fallback(move |h: HeaderMap, b: Bytes| s.clone().serve(h, b));
    let url = format!("http://127.0.0.1:{}", serve(&side, app));
    (seen, rx_port, store, url)
}

/// Through `admin`, in moto: 9 endpoints taking `messages` and `comments`,
/// a 10th healthy one taking `messages` and one that never answers taking
/// `comments`.
async fn register_endpoints(stack: &Stack, config: AdminConfig, rx_port: u16) {
    let keys = KmsDataKeys::new(stack.kms.clone(), &config.outbound.endpoint_key_id);
    let sqs = aws_sdk_sqs::Client::new(&stack.aws);
    let admin = Admin::new(config, &stack.dynamodb, sqs, keys, Clock::system());
    let url = |path: &str| format!("http://127.0.0.1:{rx_port}{path}");
    let mut endpoints: Vec<Value> = (0..9)
        .map(|i| json!({"url": url(&format!("/ok/{i}")), "kinds": ["messages", "comments"]}))
        .collect();
    endpoints.push(json!({"url": url("/ok/9"), "kinds": ["messages"]}));
    endpoints.push(json!({"url": url("/slow"), "kinds": ["comments"]}));
    for body in endpoints {
        let req = ApiRequest::post("/admin/endpoints").json(&body);
        let resp = admin.handle(req.iam(ADMIN_ARN).into_request()).await;
        assert_eq!(resp.status().as_u16(), 201, "{}", resp.body_json());
    }
}

/// moto for the setup, the stand-in for the function's DynamoDB and SQS.
async fn setup() -> Bench {
    let (seen, rx_port, store, store_url) = side_servers();
    let prefix = format!("benchd{}", std::process::id());
    let opts = StackOptions {
        prefix: prefix.clone(),
        ..StackOptions::for_tests()
    };
    let mut stack = Stack::start(opts).await;
    let key = stack.kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_string();
    let queue = format!("https://sqs.us-east-1.amazonaws.com/123456789012/{prefix}");
    for (k, v) in [
        ("ENDPOINT_KEY_ID", key_id.clone()),
        ("DELIVERY_QUEUE_URL", format!("{queue}-deliveries")),
        ("DELIVERY_SLOW_QUEUE_URL", format!("{queue}-slow")),
        ("DELIVERY_DEAD_LETTER_QUEUE_URL", format!("{queue}-dead")),
        ("DELIVERY_ALLOW_LOOPBACK", "true".into()),
    ] {
        stack.env.insert(k.into(), v);
    }
    let env = || EnvReader::from_map(stack.env.clone());
    register_endpoints(&stack, AdminConfig::from_env(env()).unwrap(), rx_port).await;
    let config = DeliverConfig::from_env(env()).unwrap();
    let calls = [Calls::default(), Calls::default(), Calls::default()];
    let conf = aws_sdk_dynamodb::config::Builder::from(&stack.aws).endpoint_url(&store_url);
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(conf.interceptor(calls[0].clone()).build());
    let conf = aws_sdk_sqs::config::Builder::from(&stack.aws).endpoint_url(&store_url);
    let sqs = aws_sdk_sqs::Client::from_conf(conf.interceptor(calls[1].clone()).build());
    let keys = KmsDataKeys::new(calls[2].kms(&stack.aws), &key_id);
    let events_table = config.events_table.clone();
    let slow_arn = infra::outbound::queue_arn(&config.slow_queue_url);
    let clock = Clock::system();
    let deliver =
        Deliver::new(config, &dynamodb, sqs, keys, Lookup::System, clock).expect("an HTTPS client");
    Bench {
        _stack: stack,
        deliver: Arc::new(deliver),
        store,
        seen,
        events_table,
        slow_arn,
        calls,
    }
}

impl Bench {
    /// Stores the event (as the events table holds it) and puts what the
    /// bus's rule would on the queue.
    fn publish(&self, id: &str, kind: &str) {
        let s = |v: &str| json!({ "S": v });
        let image = json!({
            "event_id": s(id), "kind": s(kind), "provider": s("instagram"),
            "account_id": s("1784"), "user_id": s("user-1"),
            "occurred_at": s("2026-12-04T12:00:00.000Z"), "received_at": s("2026-12-04T12:00:00.004Z"),
            "payload": s(r#"{"sender":{"id":"9"},"message":{"text":"hello there"}}"#),
            "expires_at": {"N": "1900000000"},
        });
        let key = item_key(&self.events_table, &json!({ "event_id": s(id) }));
        self.store.items.lock().unwrap().insert(key, image.clone());
        let body = json!({"version": "0", "id": id, "source": "ig-connect", "detail-type": kind,
            "account": "123456789012", "time": "2026-12-04T12:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {"eventName": "INSERT", "eventSource": "aws:dynamodb",
                "dynamodb": {"NewImage": image}}});
        self.store.queue.push(body.to_string(), Duration::ZERO);
    }

    /// One fast-lane container: a batch at a time.
    async fn container(self: Arc<Self>, stop: Arc<AtomicBool>, batches: Arc<AtomicUsize>) {
        while !stop.load(Ordering::Relaxed) {
            let bodies = self.store.queue.take(BATCH);
            if bodies.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            self.invoke(&self.store.queue, None, bodies).await;
            batches.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The slow lane: one record per invocation, up to SLOW_CONCURRENCY.
    async fn slow_lane(self: Arc<Self>, stop: Arc<AtomicBool>) {
        let running = Arc::new(tokio::sync::Semaphore::new(SLOW_CONCURRENCY));
        while !stop.load(Ordering::Relaxed) {
            let permit = running.clone().acquire_owned().await.unwrap();
            let Some(body) = self.store.slow.take(1).pop() else {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                this.invoke(&this.store.slow, Some(&this.slow_arn), vec![body])
                    .await;
                drop(permit);
            });
        }
    }

    /// `deliver` on a batch from `queue`; failed records back in 30 s.
    async fn invoke(&self, queue: &Queue, arn: Option<&str>, bodies: Vec<String>) {
        let record = |(i, body): (usize, &String)| json!({"messageId": i.to_string(), "body": body, "eventSourceARN": arn});
        let records: Vec<Value> = bodies.iter().enumerate().map(record).collect();
        let answer = self.deliver.handle(json!({ "Records": records })).await;
        let failed = answer["batchItemFailures"].as_array().cloned();
        for f in failed.unwrap_or_default() {
            let i: usize = f["itemIdentifier"].as_str().unwrap().parse().unwrap();
            queue.push(bodies[i].clone(), Duration::from_secs(30));
        }
    }
}

/// One run: name, event kind, events (all at once when the rate is 0, else
/// that many per second), containers (batches at a time), limit.
#[derive(Clone, Copy)]
struct Plan(&'static str, &'static str, usize, f64, usize, Duration);

/// What one run measured.
struct Run {
    expected: usize,
    delivered: Vec<Duration>,
    span: f64,
    batches: usize,
    cpu: (f64, f64),
    rss: (u64, u64),
    calls: Vec<String>,
}

async fn run(b: &Arc<Bench>, plan: Plan) -> Run {
    let Plan(name, kind, events, rate, containers, limit) = plan;
    b.store.queue.0.lock().unwrap().clear();
    b.store.slow.0.lock().unwrap().clear();
    b.store.slow_marks.lock().unwrap().clear();
    b.seen.0.lock().unwrap().clear();
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicUsize::new(0));
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (rss_before, cpu_before) = (rss_kib("VmRSS:"), cpu_seconds());
    let start = Instant::now();
    let mut pollers: Vec<_> = (0..containers)
        .map(|_| tokio::spawn(b.clone().container(stop.clone(), batches.clone())))
        .collect();
    pollers.push(tokio::spawn(b.clone().slow_lane(stop.clone())));
    let mut sent = HashMap::new();
    for i in 0..events {
        if rate > 0.0 {
            let at = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(at.into()).await;
        }
        let id = format!("{name}.{i}");
        b.publish(&id, kind);
        sent.insert(id, Instant::now());
    }
    let expected = events * if kind == "messages" { 10 } else { 9 };
    while b.seen.0.lock().unwrap().len() < expected && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_after = cpu_seconds();
    stop.store(true, Ordering::Relaxed);
    pollers.iter().for_each(|p| p.abort());
    let seen = b.seen.0.lock().unwrap().clone();
    let last = seen.iter().map(|d| d.0).max().unwrap_or(start);
    let latency = |(at, id): &(Instant, String)| Some(*at - *sent.get(id)?);
    let n = seen.len();
    Run {
        expected,
        delivered: seen.iter().filter_map(latency).collect(),
        span: (last - start).as_secs_f64(),
        batches: batches.load(Ordering::Relaxed),
        cpu: (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1),
        rss: (rss_before, rss_kib("VmHWM:")),
        calls: b
            .calls
            .iter()
            .map(|c| Calls::describe(&c.take(), n))
            .collect(),
    }
}

/// The `p` percentile, counting what never arrived as slower than all.
fn percentile(sorted: &[Duration], expected: usize, p: f64, limit: Duration) -> String {
    let rank = ((expected as f64 * p).ceil() as usize).max(1);
    match sorted.get(rank - 1) {
        Some(d) => format!("{:.0} ms", d.as_secs_f64() * 1000.0),
        None => format!("> {:.0} s", limit.as_secs_f64()),
    }
}

impl Run {
    /// Its row of the table.
    fn print(&mut self, plan: Plan) {
        let Plan(name, _, _, _, containers, limit) = plan;
        self.delivered.sort();
        let n = self.delivered.len();
        let ceiling = containers as f64 * BATCH as f64 / RECEIVER_LATENCY.as_secs_f64();
        let rate = n as f64 / self.span;
        let p99 = percentile(&self.delivered, self.expected, 0.99, limit);
        let cpu = |s: f64| s * 1000.0 / n.max(1) as f64;
        println!(
            "| {name} | {containers} | {n} of {} | {} | {:.1} s | {rate:.1} | {ceiling:.0} | {:.2} | {} | {p99} | {:.2} ms (+ {:.2} ms receiver and stand-in) | {:.1} MiB (from {:.1} MiB) | {} | {} | {} |",
            self.expected, self.batches, self.span, rate / ceiling,
            percentile(&self.delivered, self.expected, 0.5, limit), cpu(self.cpu.0), cpu(self.cpu.1),
            self.rss.1 as f64 / 1024.0, self.rss.0 as f64 / 1024.0,
            self.calls[0], self.calls[1], self.calls[2],
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: f64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (events, rate, seconds) = (arg(1, 200.0) as usize, arg(2, 10.0), arg(3, 10.0));
    let (containers, limit) = (arg(4, 1.0) as usize, Duration::from_secs_f64(arg(5, 60.0)));
    let b = Arc::new(setup().await);
    // Warm: the endpoints read and their secrets opened once.
    let _ = run(&b, Plan("warm", "messages", 5, 0.0, 1, limit)).await;
    println!("| run | containers | healthy deliveries | batches | time to the last | deliveries/s | ceiling (containers × 10 / 50 ms) | ratio | event → delivery p50 | p99 | CPU per delivery (function) | peak RSS | DynamoDB calls per delivery | SQS calls per delivery | KMS calls per delivery |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let hour = Duration::from_secs(3600);
    let throughput = Plan("throughput", "messages", events, 0.0, 1, hour);
    run(&b, throughput).await.print(throughput);
    let paced = (rate * seconds) as usize;
    for (name, kind) in [("healthy", "messages"), ("one-timing-out", "comments")] {
        let p = Plan(name, kind, paced, rate, containers, limit);
        run(&b, p).await.print(p);
    }
}
