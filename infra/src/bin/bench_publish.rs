//! Publishing benchmark: N image posts due in the same minute across A
//! Instagram accounts, emulated Meta answering every call after 100 ms, the
//! every-minute run and its continuations (each round a Lambda invocation of
//! the template's 120 s, stopping `DEADLINE_MARGIN` before it). Reports the
//! time to publish all, the rounds the run took, Meta, DynamoDB and KMS calls
//! per post, the peak memory of the run, and how close it came to the
//! ceiling of `PUBLISH_CONCURRENCY` / Meta's latency.
//!
//! Run: `scripts/bench-publish [POSTS] [ACCOUNTS] [CONCURRENCY]` (defaults:
//! 10000, 1000, 16).

use std::time::{Duration as StdDuration, Instant};

use infra::calls::Calls;
use infra::stack::{Stack, StackOptions};
use publish::{Door, PublishConfig, Publisher, RunSummary};
use secrecy::SecretString;
use serde_json::json;
use shared::connection::Connection;
use shared::continuation::Deadline;
use shared::store::{ConnectionStore, Event};
use shared::vault::{KmsDataKeys, TokenOwner, TokenVault};
use shared::{Clock, FromEnv, Provider};
use time::Duration;

/// The template's `Timeout` of PublishFunction: one round's length.
const INVOCATION: StdDuration = StdDuration::from_secs(120);
const META_LATENCY: StdDuration = StdDuration::from_millis(100);

fn rss_peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn reset_rss_peak() {
    // Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn account_id(i: usize) -> String {
    format!("1784150{i:010}")
}

/// `accounts` connected accounts, each with a sealed token.
async fn seed_accounts(stack: &Stack, accounts: usize, clock: &Clock) {
    let store = ConnectionStore::new(
        stack.dynamodb.clone(),
        stack.var("CONNECTIONS_TABLE"),
        stack.var("EVENTS_TABLE"),
    );
    let vault = TokenVault::new(KmsDataKeys::new(
        stack.kms.clone(),
        stack.var("TOKEN_KEY_ID"),
    ));
    let now = clock.now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..accounts {
        let (store, vault, meta) = (store.clone(), vault.clone(), stack.meta.clone());
        tasks.spawn(async move {
            let account = account_id(i);
            let token = SecretString::from(meta.mint_instagram_token(&account, &format!("pub{i}")));
            let conn = Connection {
                webhooks_subscribed: true,
                scopes: vec!["instagram_business_content_publish".into()],
                token_expires_at: Some(now + Duration::days(50)),
                token_issued_at: now - Duration::days(10),
                meta_user_id: format!("26{account}"),
                ..Connection::new(
                    &format!("bench-user-{i}"),
                    Provider::Instagram,
                    &account,
                    &format!("pub{i}"),
                    now - Duration::days(10),
                )
            };
            let owner = TokenOwner {
                user_id: conn.user_id.clone(),
                provider: conn.provider,
                account_id: account,
            };
            let sealed = vault.seal(&token, &owner).await.expect("seal");
            let event = Event::lifecycle(
                shared::connection::Lifecycle::Connected,
                &conn,
                now,
                StdDuration::from_secs(86400),
            );
            store
                .save_connected(&conn, &sealed, &event, now)
                .await
                .expect("seed");
        });
        while tasks.len() >= 16 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

/// `posts` image posts for a minute from now, spread over the accounts,
/// created through the backend door (as a campaign tool would).
async fn seed_posts(backend: &Publisher<KmsDataKeys>, posts: usize, accounts: usize, at: &str) {
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..posts {
        let (backend, i) = (backend.clone(), p % accounts);
        let payload = json!({"action": "create", "provider": "instagram",
            "account_id": account_id(i), "user_id": format!("bench-user-{i}"),
            "post": {"type": "feed", "caption": format!("Post {p} #bench"), "publish_at": at,
                "media": [{"kind": "image", "url": format!("https://cdn.example.com/{p}.jpg")}]}});
        tasks.spawn(async move {
            let answer = backend.handle_invocation(payload).await;
            assert_eq!(answer["status"], 201, "{answer}");
        });
        while tasks.len() >= 16 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

/// The every-minute run and its continuations until nothing due is left:
/// the summed summary and the rounds taken.
async fn run_until_done(publisher: &Publisher<KmsDataKeys>) -> (RunSummary, u64) {
    let mut total = RunSummary::default();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let deadline = Deadline::before(Instant::now() + INVOCATION, publish::DEADLINE_MARGIN);
        let s = publisher.run(deadline).await.expect("a run");
        eprintln!("round {rounds}: {s:?}");
        total.examined += s.examined;
        total.published += s.published;
        total.failed += s.failed;
        total.busy += s.busy;
        total.waiting += s.waiting;
        if s.left_for_next_run == 0 {
            return (total, rounds);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (posts, accounts, concurrency) = (arg(1, 10_000), arg(2, 1_000), arg(3, 16));

    let (stack, clock) = start_stack(posts, accounts, concurrency).await;
    seed(&stack, &clock, posts, accounts).await;
    // The minute comes: every post is due at once.
    clock.advance(Duration::minutes(1));

    let ddb_calls = Calls::default();
    let kms_calls = Calls::default();
    let publisher = counted_publisher(&stack, &clock, &ddb_calls, &kms_calls);
    stack.meta.set_delay(META_LATENCY);
    let meta_before = stack.meta.calls("graph");
    reset_rss_peak();
    let before = rss_peak_kib();
    let t = Instant::now();
    let (summary, rounds) = run_until_done(&publisher).await;
    let elapsed = t.elapsed().as_secs_f64();
    let peak = rss_peak_kib();
    let meta_calls = stack.meta.calls("graph") - meta_before;
    assert_eq!(summary.published, posts, "{summary:?}");
    assert_eq!(stack.meta.published_posts().len(), posts, "each post once");

    let report = Report {
        posts,
        accounts,
        concurrency,
        elapsed,
        rounds,
        meta_calls,
        peak_kib: peak,
        before_kib: before,
    };
    report.print(&ddb_calls, &kms_calls);
}

/// The stack, set for `concurrency` and with room for every post, and its
/// fixed clock.
async fn start_stack(posts: usize, accounts: usize, concurrency: usize) -> (Stack, Clock) {
    let mut stack = Stack::start(StackOptions {
        prefix: format!("benchp{}", std::process::id()),
        ..StackOptions::for_tests()
    })
    .await;
    stack
        .env
        .insert("PUBLISH_CONCURRENCY".into(), concurrency.to_string());
    let clock = Clock::fixed(
        time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap(),
    );
    // Room for every post in each account's daily limit.
    stack
        .meta
        .set_publishing_quota((posts / accounts + 1) as u32 * 2);
    (stack, clock)
}

/// The accounts, and the posts for a minute from now.
async fn seed(stack: &Stack, clock: &Clock, posts: usize, accounts: usize) {
    let t = Instant::now();
    seed_accounts(stack, accounts, clock).await;
    let (backend, _) = infra::publish::publisher(stack, clock.clone(), Door::Invoke);
    let at = shared::clock::rfc3339(clock.now() + Duration::minutes(1));
    seed_posts(&backend, posts, accounts, &at).await;
    eprintln!(
        "seeded {accounts} accounts and {posts} posts in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// The publisher the run measures, its DynamoDB and KMS calls counted.
fn counted_publisher(
    stack: &Stack,
    clock: &Clock,
    ddb_calls: &Calls,
    kms_calls: &Calls,
) -> Publisher<KmsDataKeys> {
    let config = PublishConfig::from_env(stack.env_reader()).unwrap();
    let keys = KmsDataKeys::new(kms_calls.kms(&stack.aws), &config.token_key_id);
    Publisher::new(
        config,
        ddb_calls.dynamodb(&stack.aws),
        aws_sdk_secretsmanager::Client::new(&stack.aws),
        keys,
        clock.clone(),
        None,
    )
    .expect("an HTTPS client")
}

struct Report {
    posts: usize,
    accounts: usize,
    concurrency: usize,
    elapsed: f64,
    rounds: u64,
    meta_calls: usize,
    peak_kib: u64,
    before_kib: u64,
}

impl Report {
    fn print(&self, ddb_calls: &Calls, kms_calls: &Calls) {
        let Report {
            posts,
            accounts,
            concurrency,
            elapsed,
            rounds,
            meta_calls,
            ..
        } = *self;
        let ceiling = concurrency as f64 / META_LATENCY.as_secs_f64();
        let achieved = meta_calls as f64 / elapsed;
        println!("| posts | accounts | concurrency | time to publish all | rounds (120 s invocations; bound {}) | posts/s | Meta calls per post | Meta calls/s (ceiling {ceiling:.0}) | ratio | peak RSS during run | DynamoDB calls per post | KMS calls per post |", publish::CONTINUATION.max_rounds);
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {posts} | {accounts} | {concurrency} | {elapsed:.1} s | {rounds} | {:.1} | {:.2} | {achieved:.1} | {:.2} | {:.1} MiB (from {:.1} MiB) | {} | {} |",
            posts as f64 / elapsed,
            meta_calls as f64 / posts as f64,
            achieved / ceiling,
            self.peak_kib as f64 / 1024.0,
            self.before_kib as f64 / 1024.0,
            Calls::describe(&ddb_calls.take(), posts),
            Calls::describe(&kms_calls.take(), posts),
        );
    }
}
