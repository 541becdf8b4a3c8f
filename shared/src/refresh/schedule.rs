//! When a connection is next due: the one place that turns "look at it at
//! time t" into its entry in the sparse `by_due` index.
//!
//! Each provider is its own index bucket. A run reads the `instagram` bucket
//! up to `now + window` and the `facebook` bucket up to `now` ([`due_until`]),
//! so Instagram rows hold their token's expiry (the run takes them once the
//! expiry enters the window) and Facebook rows hold the time to act.
//!
//! Every active connection is also looked at within
//! [`WEBHOOKS_CHECK_EVERY`], whatever its token needs: Meta drops a
//! subscription after about an hour of failed deliveries, and the run that
//! looks at a connection verifies its subscription and restores it. So a
//! connection's next look is the sooner of what its token needs and its next
//! subscription check ([`Due::next`]).

use time::{Duration, OffsetDateTime};

use super::FACEBOOK_CHECK_EVERY;
use crate::connection::Connection;
use crate::provider::Provider;

/// Every active connection's webhook subscription is verified at least this
/// often. Less than a day on purpose: a run loads what is due when it
/// starts, so a connection checked an hour into today's run must already be
/// due when tomorrow's starts, or it would wait two days.
pub const WEBHOOKS_CHECK_EVERY: Duration = Duration::hours(20);

/// The smallest refresh window the configuration allows (`REFRESH_WINDOW_DAYS`
/// is 1 to 50): what a writer that does not know the window can count on.
const MIN_WINDOW: Duration = Duration::days(1);

/// A connection's entry in the `by_due` index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub bucket: Provider,
    /// The indexed value (`due_at`); see the module docs for its meaning.
    pub at: OffsetDateTime,
}

impl Due {
    /// The entry that makes a run act on the connection at `act_at`.
    pub fn acting_at(provider: Provider, act_at: OffsetDateTime, window: Duration) -> Self {
        let at = match provider {
            Provider::Instagram => act_at + window,
            Provider::Facebook => act_at,
        };
        Self {
            bucket: provider,
            at,
        }
    }

    /// The entry of an active connection looked at `now` whose token needs
    /// acting on at `token_act_at`: that, or its next subscription check if
    /// sooner.
    pub fn next(
        provider: Provider,
        token_act_at: OffsetDateTime,
        now: OffsetDateTime,
        window: Duration,
    ) -> Self {
        let check_at = now + WEBHOOKS_CHECK_EVERY;
        Self::acting_at(provider, token_act_at.min(check_at), window)
    }

    /// The entry of a connection just connected (or reconnected): at once
    /// when the webhook subscription is missing or the Instagram expiry
    /// unknown; otherwise its first subscription check, or its token's
    /// expiry if sooner. Connecting does not know the refresh window, so an
    /// Instagram entry assumes the smallest one: a run takes it no later than
    /// [`WEBHOOKS_CHECK_EVERY`] after connecting (with the default window of
    /// 7 days, at the first run), and from then on [`Due::next`] keeps it.
    pub fn when_connected(conn: &Connection, now: OffsetDateTime) -> Self {
        let check_at = now + WEBHOOKS_CHECK_EVERY;
        let at = match (conn.provider, conn.token_expires_at) {
            _ if !conn.webhooks_subscribed => now,
            (Provider::Instagram, Some(expires)) => expires.min(check_at + MIN_WINDOW),
            (Provider::Instagram, None) => now,
            (Provider::Facebook, _) => (now + FACEBOOK_CHECK_EVERY).min(check_at),
        };
        Self {
            bucket: conn.provider,
            at,
        }
    }
}

/// How far a run at `now` reads a bucket of the index.
pub fn due_until(bucket: Provider, now: OffsetDateTime, window: Duration) -> OffsetDateTime {
    match bucket {
        Provider::Instagram => now + window,
        Provider::Facebook => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-21 10:00:00 UTC);
    const WINDOW: Duration = Duration::days(7);

    fn conn(provider: Provider, expires: Option<OffsetDateTime>, subscribed: bool) -> Connection {
        Connection {
            token_expires_at: expires,
            webhooks_subscribed: subscribed,
            ..crate::connection::test_connection(provider, NOW)
        }
    }

    /// Whether a run at `run_at` reads this entry.
    fn taken_at(due: Due, run_at: OffsetDateTime) -> bool {
        due.at <= due_until(due.bucket, run_at, WINDOW)
    }

    #[test]
    fn a_run_takes_a_connection_from_the_time_it_was_due_to_act() {
        for &provider in Provider::ALL {
            let act_at = NOW + Duration::days(3);
            let due = Due::acting_at(provider, act_at, WINDOW);
            assert_eq!(due.bucket, provider);
            assert!(!taken_at(due, act_at - Duration::seconds(1)), "{provider}");
            assert!(taken_at(due, act_at), "{provider}");
        }
    }

    #[test]
    fn a_new_instagram_connection_is_checked_within_a_day_whatever_the_window() {
        let expires = NOW + Duration::days(60);
        let c = conn(Provider::Instagram, Some(expires), true);
        let due = Due::when_connected(&c, NOW);
        assert_eq!(due.bucket, Provider::Instagram);
        for window in [MIN_WINDOW, WINDOW, Duration::days(50)] {
            let taken = |run_at| due.at <= due_until(due.bucket, run_at, window);
            assert!(taken(NOW + WEBHOOKS_CHECK_EVERY), "{window}");
        }
        // With the smallest window, not before the check is due.
        assert!(due.at > due_until(Provider::Instagram, NOW, MIN_WINDOW));
        // A token expiring sooner than that: by its expiry, as before.
        let soon = NOW + Duration::days(1);
        let due = Due::when_connected(&conn(Provider::Instagram, Some(soon), true), NOW);
        assert_eq!(due.at, soon);
        // No expiry known: at once.
        let due = Due::when_connected(&conn(Provider::Instagram, None, true), NOW);
        assert_eq!(due.at, NOW);
    }

    #[test]
    fn the_next_look_is_the_sooner_of_the_token_and_the_subscription_check() {
        for &provider in Provider::ALL {
            // The token needs nothing for weeks: the subscription check decides.
            let due = Due::next(provider, NOW + Duration::days(40), NOW, WINDOW);
            assert!(!taken_at(
                due,
                NOW + WEBHOOKS_CHECK_EVERY - Duration::seconds(1)
            ));
            assert!(taken_at(due, NOW + WEBHOOKS_CHECK_EVERY));
            // The token needs acting on sooner: the token decides.
            let due = Due::next(provider, NOW + Duration::hours(3), NOW, WINDOW);
            assert_eq!(
                due,
                Due::acting_at(provider, NOW + Duration::hours(3), WINDOW)
            );
        }
    }

    #[test]
    fn a_connection_checked_late_in_a_daily_run_is_due_at_the_next_one() {
        // Runs start at the same time each day and load what is due then.
        let run = NOW;
        let checked = run + Duration::hours(2); // late in a long run
        let due = Due::next(
            Provider::Instagram,
            NOW + Duration::days(40),
            checked,
            WINDOW,
        );
        assert!(taken_at(due, run + Duration::days(1)));
    }

    #[test]
    fn a_new_page_connection_is_checked_within_a_day_and_a_missing_subscription_at_once() {
        let due = Due::when_connected(&conn(Provider::Facebook, None, true), NOW);
        assert_eq!(due.at, NOW + WEBHOOKS_CHECK_EVERY);
        assert!(!taken_at(due, NOW));
        assert!(taken_at(due, NOW + Duration::days(1)));
        for &provider in Provider::ALL {
            let expires = Some(NOW + Duration::days(60));
            let due = Due::when_connected(&conn(provider, expires, false), NOW);
            assert_eq!(
                due,
                Due {
                    bucket: provider,
                    at: NOW
                }
            );
            assert!(taken_at(due, NOW));
        }
    }
}
