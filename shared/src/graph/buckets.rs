//! Per-caller limits on the proxy (CONTRACT.md, "Per-caller limits"): each
//! user and each connection has a token bucket. A plain decision over one
//! number; the store keeps that number in DynamoDB so every container shares
//! the bucket.
//!
//! A bucket of `burst` tokens refilled at `rate` tokens a second is kept as
//! the instant it will be full again (`full_at`): at `now` it holds
//! `burst - (full_at - now) / interval` tokens (all of them once `full_at` is
//! past). Taking a token moves `full_at` one interval later. One number
//! instead of "tokens + last refill" lets the store take a token with one
//! conditional `UpdateItem` (`full_at = full_at + interval`) that never
//! conflicts with a concurrent take, only with a bucket that ran out.

use time::OffsetDateTime;

use crate::config::{EnvReader, FromEnv};

/// A bucket's size and refill rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketRule {
    /// Tokens added per second.
    pub rate: u64,
    /// Tokens the bucket holds when full: calls allowed at one instant.
    pub burst: u64,
}

impl BucketRule {
    /// Microseconds for one token to come back (at least 1).
    pub fn interval_us(&self) -> i64 {
        (1_000_000 / self.rate.max(1)).max(1) as i64
    }

    /// The latest `full_at` at which a call at `now` still finds a token:
    /// the bucket then holds exactly one.
    pub fn last_take_at(&self, now: OffsetDateTime) -> i64 {
        micros(now) + (self.burst.max(1) as i64 - 1) * self.interval_us()
    }
}

/// The proxy's limits: one rule for every user, one for every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallerLimits {
    pub user: BucketRule,
    pub connection: BucketRule,
}

impl Default for CallerLimits {
    /// 20 requests/s (bursts of 40) per user, 10/s (20) per connection.
    fn default() -> Self {
        Self {
            user: BucketRule {
                rate: 20,
                burst: 40,
            },
            connection: BucketRule {
                rate: 10,
                burst: 20,
            },
        }
    }
}

impl FromEnv for CallerLimits {
    fn read(env: &mut EnvReader) -> Option<Self> {
        let d = Self::default();
        let mut rule = |rate: &str, burst: &str, default: BucketRule| BucketRule {
            rate: env.number_or(rate, default.rate, 1, 10_000),
            burst: env.number_or(burst, default.burst, 1, 100_000),
        };
        Some(Self {
            user: rule("GRAPH_USER_RATE", "GRAPH_USER_BURST", d.user),
            connection: rule(
                "GRAPH_CONNECTION_RATE",
                "GRAPH_CONNECTION_BURST",
                d.connection,
            ),
        })
    }
}

/// What one more call does to a bucket whose `full_at` is as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// The bucket is full (or was never used): it starts over with one
    /// token taken; store `full_at`.
    Refill { full_at: i64 },
    /// It holds a token: take it (`full_at` moves one interval later).
    Spend { full_at: i64 },
    /// Empty: the call waits `retry_after` seconds (whole, at least 1).
    Limited { retry_after: i64 },
}

/// The bucket decision: `full_at` in microseconds since the epoch, `None`
/// for a bucket never used (or expired, which is the same: full).
pub fn take(rule: BucketRule, full_at: Option<i64>, now: OffsetDateTime) -> Take {
    let now_us = micros(now);
    let interval = rule.interval_us();
    match full_at {
        None => Take::Refill {
            full_at: now_us + interval,
        },
        Some(f) if f <= now_us => Take::Refill {
            full_at: now_us + interval,
        },
        Some(f) if f <= rule.last_take_at(now) => Take::Spend {
            full_at: f + interval,
        },
        Some(f) => {
            let wait_us = f - rule.last_take_at(now);
            Take::Limited {
                retry_after: ((wait_us + 999_999) / 1_000_000).max(1),
            }
        }
    }
}

/// An instant as microseconds since the epoch.
pub fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use time::macros::datetime;
    use time::Duration;

    const NOW: OffsetDateTime = datetime!(2026-12-04 12:00:00 UTC);

    /// Calls at one instant, each applied as the store would: how many
    /// passed, and the bucket after.
    fn calls(
        rule: BucketRule,
        mut full_at: Option<i64>,
        now: OffsetDateTime,
        n: usize,
    ) -> (usize, Option<i64>, Option<i64>) {
        let mut passed = 0;
        let mut retry = None;
        for _ in 0..n {
            match take(rule, full_at, now) {
                Take::Refill { full_at: f } | Take::Spend { full_at: f } => {
                    full_at = Some(f);
                    passed += 1;
                }
                Take::Limited { retry_after } => retry = Some(retry_after),
            }
        }
        (passed, full_at, retry)
    }

    #[test]
    fn a_fresh_bucket_allows_its_burst_at_once_then_waits() {
        let rule = BucketRule {
            rate: 20,
            burst: 40,
        };
        let (passed, full_at, retry) = calls(rule, None, NOW, 50);
        assert_eq!(passed, 40);
        assert_eq!(retry, Some(1), "a token is back within a second");
        // Full again after 40 intervals of 50 ms: two seconds.
        assert_eq!(full_at, Some(micros(NOW + Duration::seconds(2))));
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_never_beyond_the_burst() {
        let rule = BucketRule {
            rate: 10,
            burst: 20,
        };
        let (_, full_at, _) = calls(rule, None, NOW, 20);
        // One second later: 10 tokens back.
        let (passed, full_at, _) = calls(rule, full_at, NOW + Duration::seconds(1), 100);
        assert_eq!(passed, 10);
        // An hour idle fills the bucket, no more.
        let (passed, _, _) = calls(rule, full_at, NOW + Duration::hours(1), 100);
        assert_eq!(passed, 20);
    }

    #[test]
    fn the_first_call_on_an_idle_bucket_starts_it_over() {
        let rule = BucketRule {
            rate: 10,
            burst: 20,
        };
        let past = micros(NOW - Duration::seconds(5));
        for stored in [None, Some(past), Some(micros(NOW))] {
            assert_eq!(
                take(rule, stored, NOW),
                Take::Refill {
                    full_at: micros(NOW) + 100_000
                },
                "{stored:?}"
            );
        }
        let soon = micros(NOW) + 300_000;
        assert_eq!(
            take(rule, Some(soon), NOW),
            Take::Spend {
                full_at: soon + 100_000
            }
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        // One token a second, one at most: the second call waits a second.
        let rule = BucketRule { rate: 1, burst: 1 };
        let (passed, full_at, retry) = calls(rule, None, NOW, 2);
        assert_eq!((passed, retry), (1, Some(1)));
        // A bucket overdrawn far ahead (a larger rule before a deploy)
        // waits until a token is back, rounded up.
        let far = micros(NOW) + 2_500_000;
        assert_eq!(take(rule, Some(far), NOW), Take::Limited { retry_after: 3 });
        // Just past the instant: go.
        assert!(matches!(
            take(rule, full_at, NOW + Duration::seconds(1)),
            Take::Refill { .. }
        ));
    }

    #[test]
    fn odd_rates_and_bounds_stay_sane() {
        let rule = BucketRule { rate: 3, burst: 3 };
        assert_eq!(rule.interval_us(), 333_333);
        let (passed, _, _) = calls(rule, None, NOW, 10);
        assert_eq!(passed, 3);
        let fast = BucketRule {
            rate: 10_000_000,
            burst: 1,
        };
        assert_eq!(fast.interval_us(), 1);
        let zero = BucketRule { rate: 0, burst: 0 };
        assert_eq!(zero.interval_us(), 1_000_000);
        assert_eq!(calls(zero, None, NOW, 3).0, 1, "at least one call");
    }

    #[test]
    fn limits_come_from_the_environment_with_defaults() {
        let limits = CallerLimits::from_env(EnvReader::from_map(HashMap::new())).unwrap();
        assert_eq!(limits, CallerLimits::default());
        assert_eq!(
            limits.user,
            BucketRule {
                rate: 20,
                burst: 40
            }
        );
        assert_eq!(
            limits.connection,
            BucketRule {
                rate: 10,
                burst: 20
            }
        );
        let env = HashMap::from([
            ("GRAPH_USER_RATE".to_string(), "5".to_string()),
            ("GRAPH_USER_BURST".into(), "7".into()),
            ("GRAPH_CONNECTION_RATE".into(), "2".into()),
            ("GRAPH_CONNECTION_BURST".into(), "3".into()),
        ]);
        let limits = CallerLimits::from_env(EnvReader::from_map(env)).unwrap();
        assert_eq!(limits.user, BucketRule { rate: 5, burst: 7 });
        assert_eq!(limits.connection, BucketRule { rate: 2, burst: 3 });
        let bad = HashMap::from([
            ("GRAPH_USER_RATE".to_string(), "0".to_string()),
            ("GRAPH_CONNECTION_BURST".into(), "lots".into()),
        ]);
        let err = CallerLimits::from_env(EnvReader::from_map(bad)).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(err.to_string().contains("GRAPH_USER_RATE"));
        assert!(err.to_string().contains("GRAPH_CONNECTION_BURST"));
    }
}
