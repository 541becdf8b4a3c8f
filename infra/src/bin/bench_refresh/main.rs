//! Refresh benchmark: N Instagram connections, emulated Meta answering
//! every call after 100 ms, one refresh invocation. Reports connections
//! examined per second, peak memory of the run, and Meta, KMS and DynamoDB
//! calls per connection.
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
use secrecy::SecretString;
use shared::connection::Connection;
use shared::store::{ConnectionStore, Event};
use shared::vault::{KmsDataKeys, TokenOwner, TokenVault};
use shared::{Clock, Provider};
use time::Duration;

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

async fn seed(stack: &Stack, n: usize, clock: &Clock, check_only: bool) {
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
        let (store, vault, meta) = (store.clone(), vault.clone(), stack.meta.clone());
        tasks.spawn(async move {
            let account = format!("1784149{i:010}");
            let token =
                SecretString::from(meta.mint_instagram_token(&account, &format!("bench{i}")));
            // Subscribed, as after a connect: a healthy check finds it so.
            meta.set_subscription(&account, "messages,comments");
            let user = format!("bench-user-{i}");
            let connected_at = now - Duration::days(55);
            let conn = Connection {
                webhooks_subscribed: true,
                scopes: vec!["instagram_business_basic".into()],
                token_expires_at: Some(now + Duration::days(if check_only { 40 } else { 5 })),
                token_issued_at: now - Duration::days(if check_only { 20 } else { 55 }),
                meta_user_id: format!("26{account}"),
                ..Connection::new(
                    &user,
                    Provider::Instagram,
                    &account,
                    &format!("bench{i}"),
                    connected_at,
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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = args
        .get(1)
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000]);
    let concurrency: usize = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(8);
    let check_only = args.get(3).map(String::as_str) == Some("check");
    let work = if check_only { "check" } else { "refresh" };

    println!("| due connections | work | concurrency | run time | examined/s | peak RSS during run | Meta calls per connection | DynamoDB calls per connection | KMS calls per connection |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let mut stack = Stack::start(StackOptions {
            prefix: format!("benchr{}x{n}", std::process::id()),
            ..StackOptions::for_tests()
        })
        .await;
        stack
            .env
            .insert("REFRESH_CONCURRENCY".into(), concurrency.to_string());
        let clock = Clock::fixed(
            time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap(),
        );
        let t = Instant::now();
        seed(&stack, n, &clock, check_only).await;
        // As a day later: the seeded rows are due for their check.
        clock.advance(Duration::days(1));
        eprintln!(
            "seeded {n} connections in {:.1} s",
            t.elapsed().as_secs_f64()
        );

        let ddb_calls = Calls::default();
        let kms_calls = Calls::default();
        let config = refresh::RefreshConfig::from_env(stack.env_reader()).unwrap();
        let keys = KmsDataKeys::new(kms_calls.kms(&stack.aws), &config.token_key_id);
        let refresher = refresh::Refresher::new(
            config,
            ddb_calls.dynamodb(&stack.aws),
            aws_sdk_secretsmanager::Client::new(&stack.aws),
            keys,
            clock.clone(),
        );
        stack.meta.set_delay(StdDuration::from_millis(100));
        reset_rss_peak();
        let before = rss_peak_kib();
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
        let peak = rss_peak_kib();
        assert_eq!(summary.examined, n, "{summary:?}");
        let refreshes = stack.meta.calls("ig_refresh");
        let checks = stack.meta.calls("ig_subscriptions");
        if check_only {
            assert_eq!((summary.skipped, refreshes), (n, 0), "{summary:?}");
        } else {
            assert_eq!((summary.refreshed, refreshes), (n, n), "{summary:?}");
        }
        assert_eq!(checks, n, "one subscription check per connection");
        assert_eq!(
            (summary.resubscribed, stack.meta.calls("ig_subscribe")),
            (0, 0),
            "healthy subscriptions are left alone: {summary:?}"
        );
        let meta = if check_only {
            format!("{:.2} GET subscribed_apps", checks as f64 / n as f64)
        } else {
            format!(
                "{:.2} refresh + {:.2} GET subscribed_apps",
                refreshes as f64 / n as f64,
                checks as f64 / n as f64
            )
        };
        println!(
            "| {n} | {work} | {concurrency} | {:.1} s | {:.1} | {:.1} MiB (from {:.1} MiB) | {meta} | {} | {} |",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            peak as f64 / 1024.0,
            before as f64 / 1024.0,
            Calls::describe(&ddb_calls.take(), n),
            Calls::describe(&kms_calls.take(), n),
        );
    }
}
