//! Webhook benchmark: the handler's own time for 1, 100 and 1000-update
//! deliveries, verification and parsing apart from storage, and the DynamoDB
//! calls per delivery (counted by an SDK interceptor).
//!
//! Run: `scripts/bench-webhook` (starts moto; release build).

use shared::FromEnv;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use infra::apigw::ApiRequest;
use infra::calls::Calls;
use infra::stack::{Stack, StackOptions};
use serde_json::{json, Value};
use shared::Clock;

fn delivery(account: &str, n: usize, salt: &str) -> Vec<u8> {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({"sender": {"id": "9001"}, "recipient": {"id": account}, "timestamp": 1795260000123u64 + i as u64,
                   "message": {"mid": format!("m_{salt}_{i:05}"), "text": "Hello! Do you ship to Zürich? \u{1F60A}"}})
        })
        .collect();
    json!({"object": "instagram", "entry": [{"id": account, "time": 1795260000456u64, "messaging": items}]})
        .to_string()
        .into_bytes()
}

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    bench_verify_and_parse();

    // The whole handler against moto (a Python emulator on loopback: its
    // latency is not DynamoDB's; the call counts are what transfers).
    let stack = Stack::start(StackOptions {
        prefix: format!("bench{}", std::process::id()),
        ..StackOptions::for_tests()
    })
    .await;
    let calls = Calls::default();
    let handler = webhook_handler(&stack, &calls);
    let ig_secret = stack.meta.apps().instagram_app_secret;
    warm_up(&handler, &ig_secret).await;
    calls.take();
    bench_handler(&handler, &calls, &ig_secret).await;
}

fn bench_verify_and_parse() {
    let secret = b"bench-instagram-secret";
    let other = b"bench-facebook-secret";
    println!("## Verification and parsing (no I/O)\n");
    println!(
        "| updates | body | verify (median / p99) | parse + events (median / p99) | total median |"
    );
    println!("|---|---|---|---|---|");
    for (n, iters) in [(1usize, 20_000usize), (100, 2_000), (1000, 200)] {
        let body = delivery("17841400000000001", n, "cpu");
        let header = shared::webhook::signature_header(secret, &body);
        let (mut verify_t, mut parse_t) = (Vec::new(), Vec::new());
        let owners = std::collections::HashMap::new();
        let now = time::OffsetDateTime::now_utc();
        for _ in 0..iters {
            let t = Instant::now();
            let sig = shared::webhook::parse_signature(&[header.as_str()]).unwrap();
            // Worst case: the first secret tried is the wrong one.
            assert!(shared::webhook::verify(&body, &sig, &[other, secret]));
            verify_t.push(t.elapsed());
            let t = Instant::now();
            let updates = shared::webhook::parse_notification(&body).unwrap();
            let events = webhook::to_events(&updates, &owners, now, Duration::from_secs(86400));
            assert_eq!(events.len(), n);
            parse_t.push(t.elapsed());
        }
        let total = pct(&mut verify_t.clone(), 0.5) + pct(&mut parse_t.clone(), 0.5);
        println!(
            "| {n} | {} KiB | {} / {} | {} / {} | {} |",
            body.len() / 1024,
            us(pct(&mut verify_t, 0.5)),
            us(pct(&mut verify_t, 0.99)),
            us(pct(&mut parse_t, 0.5)),
            us(pct(&mut parse_t, 0.99)),
            us(total)
        );
    }
}

/// The webhook function on the stack, its DynamoDB calls counted by `calls`.
fn webhook_handler(stack: &Stack, calls: &Calls) -> webhook::Webhook {
    let dynamodb = calls.dynamodb(&stack.aws);
    let config = webhook::WebhookConfig::from_env(stack.env_reader()).unwrap();
    webhook::Webhook::new(
        config,
        dynamodb,
        aws_sdk_secretsmanager::Client::new(&stack.aws),
        Clock::system(),
    )
}

/// Warm the secret cache and the connection pool.
async fn warm_up(handler: &webhook::Webhook, ig_secret: &str) {
    let warm = delivery("17841400000000001", 1, "warm");
    handler
        .handle(
            ApiRequest::post("/webhook")
                .header(
                    "x-hub-signature-256",
                    &shared::webhook::signature_header(ig_secret.as_bytes(), &warm),
                )
                .body(warm)
                .into_request(),
        )
        .await;
}

async fn bench_handler(handler: &webhook::Webhook, calls: &Calls, ig_secret: &str) {
    println!("\n## Whole handler against moto (storage round trips included)\n");
    println!("| updates | new or repeat | handler median | p90 | DynamoDB calls per delivery |");
    println!("|---|---|---|---|---|");
    for (n, iters) in [(1usize, 30usize), (100, 10), (1000, 5)] {
        for repeat in [false, true] {
            handler_row(handler, calls, ig_secret, (n, iters), repeat).await;
        }
    }
}

/// One row: `iters` deliveries of `n` updates, new ones or one repeated.
async fn handler_row(
    handler: &webhook::Webhook,
    calls: &Calls,
    ig_secret: &str,
    (n, iters): (usize, usize),
    repeat: bool,
) {
    let mut times = Vec::new();
    let mut per_delivery = BTreeMap::new();
    for i in 0..iters {
        let salt = if repeat {
            format!("r{n}")
        } else {
            format!("n{n}_{i}")
        };
        let body = delivery("17841400000000001", n, &salt);
        if repeat && i == 0 {
            // Store it once first; then measure only repeats.
            let req = ApiRequest::post("/webhook")
                .header(
                    "x-hub-signature-256",
                    &shared::webhook::signature_header(ig_secret.as_bytes(), &body),
                )
                .body(body.clone())
                .into_request();
            assert_eq!(handler.handle(req).await.status(), 200);
            calls.take();
        }
        let req = ApiRequest::post("/webhook")
            .header(
                "x-hub-signature-256",
                &shared::webhook::signature_header(ig_secret.as_bytes(), &body),
            )
            .body(body)
            .into_request();
        let t = Instant::now();
        let resp = handler.handle(req).await;
        times.push(t.elapsed());
        assert_eq!(resp.status(), 200);
        per_delivery = calls.take();
    }
    let calls_text = Calls::describe(&per_delivery, 1);
    println!(
        "| {n} | {} | {} | {} | {calls_text} |",
        if repeat { "repeat" } else { "new" },
        ms(pct(&mut times, 0.5)),
        ms(pct(&mut times, 0.9)),
    );
}
