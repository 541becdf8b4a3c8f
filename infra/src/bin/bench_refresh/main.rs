//! Refresh benchmark: N Instagram connections, emulated Meta answering
//! every call after 100 ms, one refresh invocation. Reports connections
//! examined per second, peak memory of the run, and Meta, KMS and DynamoDB
//! calls per connection.
//!
//! The emulated Meta runs in a process of its own ([`meta_process`]), so
//! the peak RSS reported for the run is the refresher's and the harness's;
//! the emulator's own peak is reported beside it.
//!
//! Two kinds of work (the third argument):
//! - `refresh` (default): every token is inside the refresh window, so each
//!   connection is refreshed (and its subscription checked beside it);
//! - `check`: every token needs nothing for weeks; each connection only has
//!   its daily webhook subscription check (what most of a day's work is).
//!
//! Run: `scripts/bench-refresh [SIZES] [CONCURRENCY] [refresh|check]`
//! (defaults: 1000,10000, 8 and refresh).

use shared::FromEnv;
use std::time::{Duration as StdDuration, Instant};

use infra::calls::Calls;
use infra::stack::{Stack, StackOptions};
use meta_process::{MetaControl, MetaProcess};
use secrecy::SecretString;
use shared::connection::Connection;
use shared::store::{ConnectionStore, Event};
use shared::vault::{KmsDataKeys, TokenOwner, TokenVault};
use shared::{Clock, Provider};
use time::Duration;

mod meta_process;

/// The high-water mark of `pid`'s RSS (`self`: this process), KiB.
fn rss_peak_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn reset_rss_peak(pid: &str) {
    // Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
        eprintln!("could not reset the peak RSS of {pid}: {e}");
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One Instagram connection, connected 55 days ago: its token minted by
/// the emulated Meta (which also has its webhook subscription, as after a
/// connect), sealed and saved. `check_only`: a token good for weeks.
async fn seed_one(
    (store, vault, meta): (ConnectionStore, TokenVault<KmsDataKeys>, MetaControl),
    i: usize,
    now: time::OffsetDateTime,
    check_only: bool,
) {
    let account = format!("1784149{i:010}");
    let username = format!("bench{i}");
    let token = SecretString::from(meta.mint_instagram_token(&account, &username).await);
    // Subscribed, as after a connect: a healthy check finds it so.
    meta.set_subscription(&account, "messages,comments").await;
    let conn = Connection {
        webhooks_subscribed: true,
        scopes: vec!["instagram_business_basic".into()],
        token_expires_at: Some(now + Duration::days(if check_only { 40 } else { 5 })),
        token_issued_at: now - Duration::days(if check_only { 20 } else { 55 }),
        meta_user_id: format!("26{account}"),
        ..Connection::new(
            &format!("bench-user-{i}"),
            Provider::Instagram,
            &account,
            &username,
            now - Duration::days(55),
        )
    };
    let owner = TokenOwner {
        user_id: conn.user_id.clone(),
        provider: conn.provider,
        account_id: account,
    };
    let sealed = vault.seal(&token, &owner).await.expect("seal");
    let connected = shared::connection::Lifecycle::Connected;
    let event = Event::lifecycle(connected, &conn, now, StdDuration::from_secs(86400));
    store
        .save_connected(&conn, &sealed, &event, now)
        .await
        .expect("seed");
}

/// `n` connections, 16 at a time.
async fn seed(stack: &Stack, meta: &MetaControl, n: usize, clock: &Clock, check_only: bool) {
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
    for i in 0..n {
        let handles = (store.clone(), vault.clone(), meta.clone());
        tasks.spawn(seed_one(handles, i, now, check_only));
        while tasks.len() >= 16 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

/// The benchmark's arguments: sizes, concurrency, `check` or not.
struct Args {
    sizes: Vec<usize>,
    concurrency: usize,
    check_only: bool,
}

impl Args {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().collect();
        Self {
            sizes: args
                .get(1)
                .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
                .unwrap_or_else(|| vec![1000, 10_000]),
            concurrency: args.get(2).and_then(|c| c.parse().ok()).unwrap_or(8),
            check_only: args.get(3).map(String::as_str) == Some("check"),
        }
    }
}

/// A stack against moto whose Meta URLs point at `meta`'s process, seeded
/// with `n` connections due a day later (`clock` is moved on).
async fn seeded_stack(args: &Args, meta: &MetaProcess, n: usize, clock: &Clock) -> Stack {
    let mut stack = Stack::start(StackOptions {
        prefix: format!("benchr{}x{n}", std::process::id()),
        ..StackOptions::for_tests()
    })
    .await;
    let concurrency = args.concurrency.to_string();
    stack.env.insert("REFRESH_CONCURRENCY".into(), concurrency);
    // The stack's own (in-process) emulator stays idle: see `run_one`.
    stack.env.extend(meta.env.iter().cloned());
    let t = Instant::now();
    seed(&stack, &meta.control, n, clock, args.check_only).await;
    // As a day later: the seeded rows are due for their check.
    clock.advance(Duration::days(1));
    let seeded = t.elapsed().as_secs_f64();
    eprintln!("seeded {n} connections in {seeded:.1} s");
    stack
}

/// Peak RSS of the run (KiB): the harness's process and the emulator's.
struct Peaks {
    before: u64,
    peak: u64,
    meta_before: u64,
    meta_peak: u64,
}

/// One invocation over `n` seeded connections; prints its table row.
async fn run_one(args: &Args, n: usize) {
    let meta = MetaProcess::spawn();
    let meta_pid = meta.pid().to_string();
    let clock = Clock::fixed(
        time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap(),
    );
    let stack = seeded_stack(args, &meta, n, &clock).await;
    let (ddb_calls, kms_calls) = (Calls::default(), Calls::default());
    let config = refresh::RefreshConfig::from_env(stack.env_reader()).unwrap();
    let keys = KmsDataKeys::new(kms_calls.kms(&stack.aws), &config.token_key_id);
    let refresher = refresh::Refresher::new(
        config,
        ddb_calls.dynamodb(&stack.aws),
        aws_sdk_secretsmanager::Client::new(&stack.aws),
        keys,
        clock.clone(),
    )
    .expect("an HTTPS client");
    meta.control.set_delay(StdDuration::from_millis(100)).await;
    reset_rss_peak("self");
    reset_rss_peak(&meta_pid);
    let (before, meta_before) = (rss_peak_kib("self"), rss_peak_kib(&meta_pid));
    let t = Instant::now();
    // A Lambda's 15-minute ceiling; the run stops itself before it.
    let summary = refresher
        .run(shared::continuation::Deadline::before(
            Instant::now() + StdDuration::from_secs(900),
            refresh::DEADLINE_MARGIN,
        ))
        .await
        .unwrap();
    let elapsed = t.elapsed();
    let peaks = Peaks {
        before,
        peak: rss_peak_kib("self"),
        meta_before,
        meta_peak: rss_peak_kib(&meta_pid),
    };
    let meta_calls = check_calls(args, n, &summary, &meta.control, &stack).await;
    let (ddb, kms) = (ddb_calls.take(), kms_calls.take());
    println!(
        "| {n} | {} | {} | {:.1} s | {:.1} | {:.1} MiB (from {:.1} MiB) | {:.1} MiB (from {:.1} MiB) | {meta_calls} | {} | {} |",
        if args.check_only { "check" } else { "refresh" },
        args.concurrency,
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        mib(peaks.peak),
        mib(peaks.before),
        mib(peaks.meta_peak),
        mib(peaks.meta_before),
        Calls::describe(&ddb, n),
        Calls::describe(&kms, n),
    );
}

/// Asserts every connection was examined once, every token refreshed
/// exactly once (or none, checking), one subscription check each and no
/// re-subscription, counted by the emulator in its process (the stack's
/// in-process emulator got none); the Meta calls per connection.
async fn check_calls(
    args: &Args,
    n: usize,
    summary: &refresh::Summary,
    meta: &MetaControl,
    stack: &Stack,
) -> String {
    assert_eq!(summary.examined, n, "{summary:?}");
    let refreshes = meta.calls("ig_refresh").await;
    let checks = meta.calls("ig_subscriptions").await;
    if args.check_only {
        assert_eq!((summary.skipped, refreshes), (n, 0), "{summary:?}");
    } else {
        assert_eq!((summary.refreshed, refreshes), (n, n), "{summary:?}");
    }
    assert_eq!(checks, n, "one subscription check per connection");
    assert_eq!(
        (summary.resubscribed, meta.calls("ig_subscribe").await),
        (0, 0),
        "healthy subscriptions are left alone: {summary:?}"
    );
    let idle = ["ig_refresh", "ig_subscriptions", "ig_subscribe"].map(|e| stack.meta.calls(e));
    assert_eq!(idle, [0; 3], "the in-process emulator is not called");
    let per = |c: usize| c as f64 / n as f64;
    if args.check_only {
        format!("{:.2} GET subscribed_apps", per(checks))
    } else {
        let (r, c) = (per(refreshes), per(checks));
        format!("{r:.2} refresh + {c:.2} GET subscribed_apps")
    }
}

#[tokio::main]
async fn main() {
    if meta_process::is_meta_role() {
        return meta_process::serve().await;
    }
    let args = Args::parse();
    println!("| due connections | work | concurrency | run time | examined/s | peak RSS during run (refresher and harness) | emulated Meta's peak RSS (its own process) | Meta calls per connection | DynamoDB calls per connection | KMS calls per connection |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &n in &args.sizes {
        run_one(&args, n).await;
    }
}
