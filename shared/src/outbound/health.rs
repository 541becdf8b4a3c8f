//! An endpoint whose every attempt has failed for 5 days in a row is
//! disabled. The endpoint keeps `failing_since`: the first failure after its
//! last success (any success clears it).

use time::{Duration, OffsetDateTime};

/// How long every attempt must have failed before the endpoint is disabled.
pub const DISABLE_AFTER: Duration = Duration::days(5);

/// `failing_since` after an attempt at `now` that succeeded or not.
pub fn failing_since_after(
    failing_since: Option<OffsetDateTime>,
    delivered: bool,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    if delivered {
        None
    } else {
        Some(failing_since.unwrap_or(now))
    }
}

/// Whether an endpoint failing since `failing_since` is disabled after a
/// failed attempt at `now`.
pub fn should_disable(failing_since: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    failing_since.is_some_and(|since| now - since >= DISABLE_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Clock;
    use time::macros::datetime;

    #[test]
    fn five_days_of_failures_disable_and_one_success_resets() {
        let clock = Clock::fixed(datetime!(2026-11-21 12:00:00 UTC));
        let mut since = failing_since_after(None, false, clock.now());
        assert_eq!(since, Some(clock.now()));
        clock.advance(Duration::days(5) - Duration::SECOND);
        since = failing_since_after(since, false, clock.now());
        assert!(!should_disable(since, clock.now()));
        clock.advance(Duration::SECOND);
        assert!(should_disable(since, clock.now()));

        // A success in between starts the count again.
        let ok = failing_since_after(since, true, clock.now());
        assert_eq!(ok, None);
        assert!(!should_disable(ok, clock.now()));
        let again = failing_since_after(ok, false, clock.now());
        clock.advance(Duration::days(4));
        assert!(!should_disable(again, clock.now()));
    }
}
