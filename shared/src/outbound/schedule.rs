//! When a failed delivery is tried again: about 5 s, 5 min, 30 min, 2 h,
//! 5 h, 10 h, 10 h, then every 12 h, until 72 hours after the first attempt
//! (±20 % jitter; a `Retry-After` on 429/503 honoured up to 12 h). After
//! that the delivery is dead-lettered.

use rand::RngExt;
use time::{Duration, OffsetDateTime};

/// The waits after the 1st, 2nd, ... failed attempt; every later one is
/// [`LATER`].
const WAITS: [Duration; 7] = [
    Duration::seconds(5),
    Duration::minutes(5),
    Duration::minutes(30),
    Duration::hours(2),
    Duration::hours(5),
    Duration::hours(10),
    Duration::hours(10),
];
const LATER: Duration = Duration::hours(12);
/// No attempt is made later than this after the first one.
pub const GIVE_UP_AFTER: Duration = Duration::hours(72);
/// The longest `Retry-After` honoured, and the longest any wait may be.
pub const MAX_WAIT: Duration = Duration::hours(12);
/// The jitter's bound, as a fraction of the wait.
pub const JITTER: f64 = 0.2;

/// What follows a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again at this instant.
    RetryAt(OffsetDateTime),
    /// 72 hours are over: to the dead-letter queue.
    DeadLetter,
}

/// A jitter fraction in [-0.2, 0.2] from the CSPRNG.
pub fn random_jitter() -> f64 {
    rand::rng().random_range(-JITTER..=JITTER)
}

/// After attempt number `failed` (1 for the first) failed at `now`, the
/// first attempt having been made at `first`. `retry_after` is the
/// receiver's `Retry-After` on a 429 or 503; `jitter` a fraction in
/// [-0.2, 0.2] (clamped).
pub fn next_attempt(
    failed: u32,
    first: OffsetDateTime,
    now: OffsetDateTime,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Next {
    let base = WAITS
        .get(failed.saturating_sub(1) as usize)
        .copied()
        .unwrap_or(LATER);
    let wait = match retry_after {
        Some(asked) if asked > Duration::ZERO => asked.min(MAX_WAIT),
        _ => (base * (1.0 + jitter.clamp(-JITTER, JITTER))).min(MAX_WAIT),
    };
    let at = now + wait.max(Duration::SECOND);
    if at > first + GIVE_UP_AFTER {
        Next::DeadLetter
    } else {
        Next::RetryAt(at)
    }
}

/// A `Retry-After` value: delay seconds, or an HTTP date (RFC 7231's
/// IMF-fixdate), as a wait from `now`. `None` when unreadable or past.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::seconds(secs.min(i64::MAX as u64) as i64));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    (at > now).then(|| at - now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

    /// Every attempt's instant with no jitter, a failure each time.
    fn attempts_without_jitter() -> Vec<OffsetDateTime> {
        let mut at = vec![T0];
        let mut n = 1;
        while let Next::RetryAt(next) = next_attempt(n, T0, *at.last().unwrap(), None, 0.0) {
            at.push(next);
            n += 1;
        }
        at
    }

    #[test]
    fn the_schedule_runs_for_72_hours_then_dead_letters() {
        let gaps: Vec<i64> = attempts_without_jitter()
            .windows(2)
            .map(|w| (w[1] - w[0]).whole_seconds())
            .collect();
        let h = 3600;
        assert_eq!(
            gaps,
            vec![
                5,
                300,
                1800,
                2 * h,
                5 * h,
                10 * h,
                10 * h,
                12 * h,
                12 * h,
                12 * h
            ]
        );
        let last = *attempts_without_jitter().last().unwrap();
        assert!(last - T0 <= GIVE_UP_AFTER);
        assert_eq!(next_attempt(11, T0, last, None, 0.0), Next::DeadLetter);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let now = T0 + Duration::hours(1);
        let at = |j| match next_attempt(4, T0, now, None, j) {
            Next::RetryAt(at) => (at - now).whole_seconds(),
            Next::DeadLetter => panic!("within 72 h"),
        };
        assert_eq!(at(0.2), 8640);
        assert_eq!(at(-0.2), 5760);
        assert_eq!(at(5.0), 8640, "clamped");
        for _ in 0..100 {
            let j = random_jitter();
            assert!((-0.2..=0.2).contains(&j));
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_12_hours() {
        let now = T0 + Duration::seconds(5);
        let asked = Some(Duration::minutes(90));
        assert_eq!(
            next_attempt(2, T0, now, asked, 0.2),
            Next::RetryAt(now + Duration::minutes(90))
        );
        let asked = Some(Duration::days(3));
        assert_eq!(
            next_attempt(2, T0, now, asked, 0.0),
            Next::RetryAt(now + Duration::hours(12))
        );
        let late = T0 + Duration::hours(70);
        assert_eq!(
            next_attempt(9, T0, late, Some(Duration::hours(3)), 0.0),
            Next::DeadLetter
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after(" 120 ", T0), Some(Duration::minutes(2)));
        assert_eq!(
            parse_retry_after("Sat, 21 Nov 2026 13:00:00 GMT", T0),
            Some(Duration::hours(1))
        );
        assert_eq!(parse_retry_after("Sat, 21 Nov 2026 11:00:00 GMT", T0), None);
        assert_eq!(parse_retry_after("soon", T0), None);
    }
}
