//! When a connection is next due: the one place that turns "look at it at
//! time t" into its entry in the sparse `by_due` index.
//!
//! Each provider is its own index bucket. A run reads the `instagram` bucket
//! up to `now + window` and the `facebook` bucket up to `now` ([`due_until`]),
//! so Instagram rows hold their token's expiry (the run takes them once the
//! expiry enters the window) and Facebook rows hold the time to act.

use time::{Duration, OffsetDateTime};

use super::FACEBOOK_CHECK_EVERY;
use crate::connection::Connection;
use crate::provider::Provider;

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

    /// The entry of a connection just connected (or reconnected): Instagram
    /// tokens by expiry, Page tokens a day later, and at once when the
    /// webhook subscription is missing or the expiry unknown.
    pub fn when_connected(conn: &Connection, now: OffsetDateTime) -> Self {
        let at = match (conn.provider, conn.token_expires_at) {
            _ if !conn.webhooks_subscribed => now,
            (Provider::Instagram, Some(expires)) => expires,
            (Provider::Instagram, None) => now,
            (Provider::Facebook, _) => now + FACEBOOK_CHECK_EVERY,
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
        for provider in [Provider::Instagram, Provider::Facebook] {
            let act_at = NOW + Duration::days(3);
            let due = Due::acting_at(provider, act_at, WINDOW);
            assert_eq!(due.bucket, provider);
            assert!(!taken_at(due, act_at - Duration::seconds(1)), "{provider}");
            assert!(taken_at(due, act_at), "{provider}");
        }
    }

    #[test]
    fn a_new_instagram_connection_is_due_when_its_token_enters_the_window() {
        let expires = NOW + Duration::days(60);
        let due = Due::when_connected(&conn(Provider::Instagram, Some(expires), true), NOW);
        assert_eq!(due.at, expires);
        assert!(!taken_at(due, expires - WINDOW - Duration::seconds(1)));
        assert!(taken_at(due, expires - WINDOW));
        // No expiry known: at once.
        let due = Due::when_connected(&conn(Provider::Instagram, None, true), NOW);
        assert_eq!(due.at, NOW);
    }

    #[test]
    fn a_new_page_connection_is_checked_a_day_later_and_a_missing_subscription_at_once() {
        let due = Due::when_connected(&conn(Provider::Facebook, None, true), NOW);
        assert_eq!(due.at, NOW + FACEBOOK_CHECK_EVERY);
        for provider in [Provider::Instagram, Provider::Facebook] {
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
