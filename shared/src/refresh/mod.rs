//! Decisions of the scheduled refresh, as plain functions: what to do with a
//! connection ([`plan`]), what follows from Meta's answer ([`decide`], in
//! `outcome.rs`) and where it goes in the `by_due` index ([`Due`], in
//! `schedule.rs`).

mod outcome;
mod schedule;

pub use outcome::{decide, Answer, Failures, Findings, RefreshOutcome, Refreshed, Rules, Tally};
pub use schedule::{due_until, Due, WEBHOOKS_CHECK_EVERY};

use time::{Duration, OffsetDateTime};

use crate::connection::{Connection, Status};
use crate::provider::Provider;

/// Meta refreshes only tokens at least this old.
pub const MIN_TOKEN_AGE: Duration = Duration::hours(24);
/// Facebook Page tokens are checked this often (Meta advises daily).
pub const FACEBOOK_CHECK_EVERY: Duration = Duration::days(1);
/// After a transient failure, try again this much later.
pub const RETRY_AFTER: Duration = Duration::days(1);

/// What a run should do with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Instagram: refresh the token now.
    Refresh,
    /// Facebook: ask `debug_token` whether the Page token still works.
    Check,
    /// Instagram token already expired: only the person can fix it.
    Expired,
    /// Nothing to do with the token before this time.
    NotBefore(OffsetDateTime),
    /// Not active: drop it from the refresh index.
    Retire,
}

pub fn plan(conn: &Connection, now: OffsetDateTime, window: Duration) -> Plan {
    if conn.status != Status::Active {
        return Plan::Retire;
    }
    match conn.provider {
        Provider::Facebook => Plan::Check,
        Provider::Instagram => {
            let Some(expires) = conn.token_expires_at else {
                // No expiry known: refresh (which tells us one) once old enough.
                return age_gate(conn, now).unwrap_or(Plan::Refresh);
            };
            if expires <= now {
                Plan::Expired
            } else if expires > now + window {
                Plan::NotBefore(expires - window)
            } else {
                age_gate(conn, now).unwrap_or(Plan::Refresh)
            }
        }
    }
}

fn age_gate(conn: &Connection, now: OffsetDateTime) -> Option<Plan> {
    let old_enough_at = conn.token_issued_at + MIN_TOKEN_AGE;
    (old_enough_at > now).then_some(Plan::NotBefore(old_enough_at))
}

/// Bookkeeping after a throttled or transient failure: failures are counted
/// once per UTC day (several runs on one bad day count once); after
/// `max_days` days of failures the connection needs the person.
pub fn after_failure(
    failures: u32,
    last_failure: Option<OffsetDateTime>,
    now: OffsetDateTime,
    max_days: u32,
) -> (u32, bool) {
    let same_day = last_failure.is_some_and(|t| t.date() == now.date());
    let count = if same_day { failures } else { failures + 1 };
    (count, count >= max_days)
}

/// Facebook: the token works, but Meta will stop data access soon.
pub fn data_access_ending(
    data_access_expires_at: Option<i64>,
    now: OffsetDateTime,
    window: Duration,
) -> bool {
    matches!(data_access_expires_at, Some(at) if at > 0 && at <= (now + window).unix_timestamp())
}

/// Facebook: what `debug_token` says of a Page token. Invalid, or data
/// access ending within the window, is a dead token as far as the person is
/// concerned.
pub fn page_token_answer(
    is_valid: bool,
    data_access_expires_at: Option<i64>,
    now: OffsetDateTime,
    window: Duration,
) -> Answer {
    if is_valid && !data_access_ending(data_access_expires_at, now, window) {
        Answer::Healthy
    } else {
        Answer::Dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ig(issued: OffsetDateTime, expires: Option<OffsetDateTime>) -> Connection {
        Connection {
            token_expires_at: expires,
            ..crate::connection::test_connection(Provider::Instagram, issued)
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-11-21 10:00:00 UTC);

    #[test]
    fn instagram_is_refreshed_inside_the_window_once_a_day_old() {
        let w = Duration::days(7);
        let issued = NOW - Duration::days(55);
        assert_eq!(
            plan(&ig(issued, Some(NOW + Duration::days(5))), NOW, w),
            Plan::Refresh
        );
        // Not due yet: come back when the window opens.
        let far = NOW + Duration::days(30);
        assert_eq!(
            plan(&ig(issued, Some(far)), NOW, w),
            Plan::NotBefore(far - w)
        );
        // Due, but younger than 24 h: come back when it is.
        let young = NOW - Duration::hours(3);
        assert_eq!(
            plan(&ig(young, Some(NOW + Duration::days(2))), NOW, w),
            Plan::NotBefore(young + Duration::hours(24))
        );
        // Expired: only the person can fix it.
        assert_eq!(
            plan(&ig(issued, Some(NOW - Duration::seconds(1))), NOW, w),
            Plan::Expired
        );
        assert_eq!(plan(&ig(issued, None), NOW, w), Plan::Refresh);
    }

    #[test]
    fn facebook_is_checked_and_inactive_is_retired() {
        let mut c = ig(NOW, None);
        c.provider = Provider::Facebook;
        assert_eq!(plan(&c, NOW, Duration::days(7)), Plan::Check);
        c.status = Status::NeedsReauth;
        assert_eq!(plan(&c, NOW, Duration::days(7)), Plan::Retire);
    }

    #[test]
    fn failures_count_once_a_day_and_give_up_after_max_days() {
        let (n, reauth) = after_failure(0, None, NOW, 3);
        assert_eq!((n, reauth), (1, false));
        // A second run the same day does not count again.
        assert_eq!(
            after_failure(1, Some(NOW), NOW + Duration::hours(5), 3),
            (1, false)
        );
        assert_eq!(
            after_failure(1, Some(NOW), NOW + Duration::days(1), 3),
            (2, false)
        );
        assert_eq!(
            after_failure(2, Some(NOW + Duration::days(1)), NOW + Duration::days(2), 3),
            (3, true)
        );
    }

    #[test]
    fn a_page_token_is_dead_when_invalid_or_its_data_access_ends_soon() {
        let w = Duration::days(7);
        let soon = Some((NOW + Duration::days(3)).unix_timestamp());
        let later = Some((NOW + Duration::days(30)).unix_timestamp());
        assert_eq!(page_token_answer(true, None, NOW, w), Answer::Healthy);
        assert_eq!(page_token_answer(true, later, NOW, w), Answer::Healthy);
        assert_eq!(page_token_answer(true, soon, NOW, w), Answer::Dead);
        assert_eq!(page_token_answer(false, None, NOW, w), Answer::Dead);
    }

    #[test]
    fn data_access_expiry() {
        let w = Duration::days(7);
        assert!(!data_access_ending(None, NOW, w));
        assert!(!data_access_ending(Some(0), NOW, w));
        assert!(data_access_ending(
            Some((NOW + Duration::days(3)).unix_timestamp()),
            NOW,
            w
        ));
        assert!(!data_access_ending(
            Some((NOW + Duration::days(30)).unix_timestamp()),
            NOW,
            w
        ));
    }
}
