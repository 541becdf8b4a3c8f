//! Unit tests of `decide`: one per rule.

use super::*;
use crate::provider::Provider;
use crate::refresh::WEBHOOKS_CHECK_EVERY;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-21 10:00:00 UTC);
const RULES: Rules = Rules {
    window: Duration::days(7),
    max_failure_days: 3,
};

fn conn(provider: Provider) -> Connection {
    Connection {
        token_expires_at: Some(NOW + Duration::days(5)),
        ..crate::connection::test_connection(provider, NOW - Duration::days(50))
    }
}

fn asked(answer: Answer) -> Findings {
    Findings {
        has_token: true,
        answer: Some(answer),
        still_subscribed: Some(true),
    }
}

fn due(provider: Provider, act_at: OffsetDateTime) -> Option<Due> {
    Some(Due::acting_at(provider, act_at, RULES.window))
}

/// The next subscription check of a connection looked at `NOW`.
fn next_check(provider: Provider) -> Option<Due> {
    due(provider, NOW + WEBHOOKS_CHECK_EVERY)
}

#[test]
fn a_refreshed_token_is_stored_and_due_at_the_next_subscription_check() {
    let c = conn(Provider::Instagram);
    let expires_at = Some(NOW + Duration::days(60));
    let o = decide(
        &c,
        Plan::Refresh,
        asked(Answer::Refreshed { expires_at }),
        NOW,
        RULES,
    );
    assert_eq!(o.tally, Tally::Refreshed);
    // The new token needs nothing for 53 days; its subscription is checked
    // again within a day.
    assert_eq!(o.due, next_check(Provider::Instagram));
    assert_eq!(
        o.due,
        Some(Due::next(
            Provider::Instagram,
            NOW + Duration::days(53),
            NOW,
            RULES.window
        ))
    );
    assert_eq!(o.failures, Some(Failures::NONE));
    assert_eq!(
        o.refreshed,
        Some(Refreshed {
            at: NOW,
            expires_at
        })
    );
    assert_eq!(o.event, Some(Lifecycle::Refreshed));
    assert_eq!(o.status, None);
    assert!(!o.resubscribe);
    let after = o.applied_to(&c);
    assert_eq!(after.token_expires_at, expires_at);
    assert_eq!(after.last_refreshed_at, Some(NOW));
    // No expiry given: look again within a day.
    let o = decide(
        &c,
        Plan::Refresh,
        asked(Answer::Refreshed { expires_at: None }),
        NOW,
        RULES,
    );
    assert_eq!(o.due, next_check(Provider::Instagram));
}

#[test]
fn a_token_rotated_but_not_sealed_is_tried_again_next_run() {
    let c = conn(Provider::Instagram);
    let o = decide(&c, Plan::Refresh, asked(Answer::NotSealed), NOW, RULES);
    assert_eq!(
        o,
        RefreshOutcome::retry(&c, NOW, RULES.window, Tally::Failed)
    );
    assert_eq!(o.due, due(Provider::Instagram, NOW));
}

#[test]
fn a_healthy_page_is_checked_again_tomorrow_and_recovers_from_failures() {
    let mut c = conn(Provider::Facebook);
    let o = decide(&c, Plan::Check, asked(Answer::Healthy), NOW, RULES);
    assert_eq!(o.tally, Tally::Skipped);
    assert!(FACEBOOK_CHECK_EVERY >= WEBHOOKS_CHECK_EVERY);
    assert_eq!(o.due, next_check(Provider::Facebook));
    assert_eq!((o.failures, o.event), (None, None));
    c.refresh_failures = 2;
    let o = decide(&c, Plan::Check, asked(Answer::Healthy), NOW, RULES);
    assert_eq!(o.failures, Some(Failures::NONE));
    assert_eq!(o.event, Some(Lifecycle::Refreshed));
    assert_eq!(o.applied_to(&c), c);
}

#[test]
fn dead_expired_or_missing_tokens_need_the_person() {
    let c = conn(Provider::Instagram);
    for (plan, found, why) in [
        (Plan::Expired, Findings::default(), "token expired"),
        (Plan::Refresh, asked(Answer::NoToken), "no token stored"),
        (Plan::Check, asked(Answer::Dead), "token invalid"),
    ] {
        let o = decide(&c, plan, found, NOW, RULES);
        assert_eq!(o.tally, Tally::NeedsReauth);
        assert_eq!(o.status, Some(Status::NeedsReauth));
        assert_eq!(o.due, None);
        assert_eq!(o.event, Some(Lifecycle::NeedsReauth));
        assert_eq!(o.reauth_reason, Some(why));
        assert!(!o.resubscribe);
        assert_eq!(o.applied_to(&c).status, Status::NeedsReauth);
    }
}

#[test]
fn passing_failures_are_counted_and_give_up_after_max_days() {
    let mut c = conn(Provider::Instagram);
    let o = decide(&c, Plan::Refresh, asked(Answer::Failed), NOW, RULES);
    assert_eq!(o.tally, Tally::Failed);
    assert_eq!(o.due, due(Provider::Instagram, NOW));
    assert_eq!(
        o.failures,
        Some(Failures {
            days: 1,
            last_at: Some(NOW)
        })
    );
    assert_eq!(o.status, None);
    c.refresh_failures = 2;
    c.last_refresh_failure_at = Some(NOW - Duration::days(1));
    let o = decide(&c, Plan::Refresh, asked(Answer::Failed), NOW, RULES);
    assert_eq!(o.tally, Tally::NeedsReauth);
    assert_eq!(o.reauth_reason, Some("failing for days"));
    assert_eq!(
        o.failures,
        Some(Failures {
            days: 3,
            last_at: Some(NOW)
        })
    );
    assert_eq!(o.due, None);
}

#[test]
fn retired_and_not_yet_due_connections_are_skipped() {
    let mut c = conn(Provider::Instagram);
    let later = NOW + Duration::days(20);
    let o = decide(&c, Plan::NotBefore(later), Findings::default(), NOW, RULES);
    assert_eq!(
        (o.tally, o.due),
        (Tally::Skipped, next_check(Provider::Instagram))
    );
    // Sooner than the next check: when the token needs it.
    let soon = NOW + Duration::hours(5);
    let o = decide(&c, Plan::NotBefore(soon), Findings::default(), NOW, RULES);
    assert_eq!(o.due, due(Provider::Instagram, soon));
    c.status = Status::Revoked;
    let o = decide(&c, Plan::Retire, Findings::default(), NOW, RULES);
    assert_eq!((o.tally, o.due, o.status), (Tally::Skipped, None, None));
}

#[test]
fn webhooks_are_subscribed_again_when_missing() {
    let mut c = conn(Provider::Instagram);
    let dropped = Findings {
        still_subscribed: Some(false),
        ..asked(Answer::Refreshed { expires_at: None })
    };
    assert!(decide(&c, Plan::Refresh, dropped, NOW, RULES).resubscribe);
    // Checked while the token needs nothing: the check alone decides.
    let checked = Findings {
        has_token: true,
        answer: None,
        still_subscribed: Some(false),
    };
    let later = Plan::NotBefore(NOW + Duration::days(20));
    assert!(decide(&c, later, checked, NOW, RULES).resubscribe);
    let fine = Findings {
        still_subscribed: Some(true),
        ..checked
    };
    assert!(!decide(&c, later, fine, NOW, RULES).resubscribe);
    // Meta's "no" counts only when it also answered for the token.
    let failed = Findings {
        still_subscribed: Some(false),
        ..asked(Answer::Failed)
    };
    assert!(!decide(&c, Plan::Refresh, failed, NOW, RULES).resubscribe);
    // Stored as unsubscribed: whenever a token is at hand, even when not due.
    c.webhooks_subscribed = false;
    let waiting = Findings {
        has_token: true,
        ..Findings::default()
    };
    let later = Plan::NotBefore(NOW + Duration::days(20));
    assert!(decide(&c, later, waiting, NOW, RULES).resubscribe);
    assert!(!decide(&c, later, Findings::default(), NOW, RULES).resubscribe);
    // Not for a connection that needs the person.
    assert!(!decide(&c, Plan::Check, asked(Answer::Dead), NOW, RULES).resubscribe);
}

#[test]
fn a_restored_subscription_is_an_event_and_a_failed_one_is_tried_again_within_a_day() {
    let c = conn(Provider::Facebook);
    let mut o = decide(&c, Plan::Check, asked(Answer::Healthy), NOW, RULES);
    assert_eq!(o.events().count(), 0);
    o.subscribed(true, &c, NOW, RULES.window);
    assert_eq!(o.webhooks_subscribed, Some(true));
    assert!(o.webhooks_restored);
    assert_eq!(
        o.events().collect::<Vec<_>>(),
        [Lifecycle::WebhooksRestored]
    );
    assert_eq!(o.due, next_check(Provider::Facebook));
    // With a refresh in the same run: both events.
    let ig = conn(Provider::Instagram);
    let refreshed = asked(Answer::Refreshed { expires_at: None });
    let mut o = decide(&ig, Plan::Refresh, refreshed, NOW, RULES);
    o.subscribed(true, &ig, NOW, RULES.window);
    assert_eq!(
        o.events().collect::<Vec<_>>(),
        [Lifecycle::Refreshed, Lifecycle::WebhooksRestored]
    );
    // The event shows the connection subscribed.
    let mut unsubscribed = c.clone();
    unsubscribed.webhooks_subscribed = false;
    assert!(o.applied_to(&unsubscribed).webhooks_subscribed);
    // Failed: not restored, and looked at again within a day.
    let mut o = decide(&c, Plan::Check, asked(Answer::Healthy), NOW, RULES);
    o.subscribed(false, &c, NOW, RULES.window);
    assert_eq!(o.webhooks_subscribed, Some(false));
    assert!(!o.webhooks_restored && o.events().count() == 0);
    assert_eq!(o.due, next_check(Provider::Facebook));
    // A retry already due sooner stays so.
    let mut o = decide(&c, Plan::Check, asked(Answer::Failed), NOW, RULES);
    o.subscribed(false, &c, NOW, RULES.window);
    assert_eq!(o.due, due(Provider::Facebook, NOW));
}

#[test]
fn a_dead_token_found_by_the_subscription_check_needs_the_person() {
    let c = conn(Provider::Instagram);
    let found = Findings {
        has_token: true,
        answer: Some(Answer::Dead),
        still_subscribed: None,
    };
    let o = decide(
        &c,
        Plan::NotBefore(NOW + Duration::days(20)),
        found,
        NOW,
        RULES,
    );
    assert_eq!(o.tally, Tally::NeedsReauth);
    assert_eq!(o.due, None);
    assert!(!o.resubscribe);
}
