//! What follows from Meta's answer about one connection: its new status,
//! when it is next due, its failure count, the lifecycle event, and whether
//! its webhooks must be subscribed again. The refresher asks; this decides.

use time::{Duration, OffsetDateTime};

use super::{after_failure, Due, Plan, FACEBOOK_CHECK_EVERY, RETRY_AFTER};
use crate::connection::{Connection, Lifecycle, Status};

/// The run's settings that shape a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// How long before expiry an Instagram token is refreshed.
    pub window: Duration,
    /// Days of passing failures after which the person must connect again.
    pub max_failure_days: u32,
}

/// What Meta said about the token (asked only for [`Plan::Refresh`] and
/// [`Plan::Check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// No token is stored: there was nothing to ask with.
    NoToken,
    /// Instagram: a new token, sealed and ready to store.
    Refreshed { expires_at: Option<OffsetDateTime> },
    /// Instagram: Meta rotated the token but it could not be sealed. The old
    /// one stays valid for its remaining life.
    NotSealed,
    /// Facebook: `debug_token` says the Page token works.
    Healthy,
    /// Meta says the token is dead (or its data access ends soon).
    Dead,
    /// Throttled, or a passing failure.
    Failed,
}

/// What a run learned about one connection before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Findings {
    /// A token is stored and could be opened.
    pub has_token: bool,
    /// Meta's answer about the token; `None` when the plan asks nothing.
    pub answer: Option<Answer>,
    /// Whether Meta still delivers the account's webhooks, when asked (only
    /// for connections stored as subscribed). Asked at every look at an
    /// active connection; when the plan asks nothing else, a dead token
    /// found by this check is the `answer` (`Answer::Dead`).
    pub still_subscribed: Option<bool>,
}

/// The summary counter a connection adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    Refreshed,
    Skipped,
    Failed,
    NeedsReauth,
}

/// Days in a row on which refreshing failed for a passing reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub days: u32,
    /// `None` resets the count.
    pub last_at: Option<OffsetDateTime>,
}

impl Failures {
    pub const NONE: Failures = Failures {
        days: 0,
        last_at: None,
    };
}

/// A new token was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    pub at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

/// What a run decided for one connection; written over the version it
/// leased. `None` fields are left as they are, except `due`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshOutcome {
    pub tally: Tally,
    pub status: Option<Status>,
    /// When to look next; `None` takes it out of the refresh index.
    pub due: Option<Due>,
    pub failures: Option<Failures>,
    pub refreshed: Option<Refreshed>,
    pub webhooks_subscribed: Option<bool>,
    /// The lifecycle event to write with the outcome.
    pub event: Option<Lifecycle>,
    /// The webhook subscription was missing and is subscribed again: written
    /// with `connection.webhooks_restored` (see [`RefreshOutcome::events`]).
    pub webhooks_restored: bool,
    /// Why the person must connect again (for the log).
    pub reauth_reason: Option<&'static str>,
    /// The webhook subscription is missing: subscribe, then
    /// [`RefreshOutcome::subscribed`].
    pub resubscribe: bool,
}

impl RefreshOutcome {
    /// Nothing learned: still due now, for the next run.
    pub fn retry(conn: &Connection, now: OffsetDateTime, window: Duration, tally: Tally) -> Self {
        Self {
            tally,
            ..Self::skip(Some(Due::acting_at(conn.provider, now, window)))
        }
    }

    fn skip(due: Option<Due>) -> Self {
        Self {
            tally: Tally::Skipped,
            status: None,
            due,
            failures: None,
            refreshed: None,
            webhooks_subscribed: None,
            event: None,
            webhooks_restored: false,
            reauth_reason: None,
            resubscribe: false,
        }
    }

    fn needs_reauth(why: &'static str) -> Self {
        Self {
            tally: Tally::NeedsReauth,
            status: Some(Status::NeedsReauth),
            event: Some(Lifecycle::NeedsReauth),
            reauth_reason: Some(why),
            ..Self::skip(None)
        }
    }

    /// The connection as it will be once the outcome is written: what the
    /// lifecycle event shows.
    pub fn applied_to(&self, conn: &Connection) -> Connection {
        let mut after = conn.clone();
        if let Some(status) = self.status {
            after.status = status;
        }
        if let Some(r) = self.refreshed {
            after.token_expires_at = r.expires_at;
            after.last_refreshed_at = Some(r.at);
        }
        if let Some(subscribed) = self.webhooks_subscribed {
            after.webhooks_subscribed = subscribed;
        }
        after
    }

    /// The lifecycle events to write with the outcome, in order.
    pub fn events(&self) -> impl Iterator<Item = Lifecycle> {
        let restored = self
            .webhooks_restored
            .then_some(Lifecycle::WebhooksRestored);
        self.event.into_iter().chain(restored)
    }

    /// Records the re-subscription's result. A restored subscription is an
    /// event for the product (its connection's webhooks flow again); a failed
    /// one is tried again at the next run after [`RETRY_AFTER`] (within a
    /// day), whatever the token's schedule.
    pub fn subscribed(
        &mut self,
        ok: bool,
        conn: &Connection,
        now: OffsetDateTime,
        window: Duration,
    ) {
        self.webhooks_subscribed = Some(ok);
        self.webhooks_restored = ok;
        if let (false, Some(due)) = (ok, self.due) {
            let retry = Due::next(conn.provider, now + RETRY_AFTER, now, window);
            self.due = Some(if retry.at < due.at { retry } else { due });
        }
    }
}

/// The outcome of `plan` for `conn`, given what the run found.
pub fn decide(
    conn: &Connection,
    plan: Plan,
    found: Findings,
    now: OffsetDateTime,
    rules: Rules,
) -> RefreshOutcome {
    // An active connection stays in the index: next when its token needs it
    // or its subscription is checked again, whichever comes first.
    let act_at = |t| Some(Due::next(conn.provider, t, now, rules.window));
    let mut outcome = match (plan, found.answer) {
        (Plan::Retire, _) => RefreshOutcome::skip(None),
        (Plan::Expired, _) => RefreshOutcome::needs_reauth("token expired"),
        // The subscription check found the token dead before its refresh.
        (Plan::NotBefore(_), Some(Answer::Dead)) => RefreshOutcome::needs_reauth("token invalid"),
        (Plan::NotBefore(at), _) => RefreshOutcome::skip(act_at(at)),
        (Plan::Refresh | Plan::Check, None | Some(Answer::NoToken)) => {
            RefreshOutcome::needs_reauth("no token stored")
        }
        (_, Some(Answer::Refreshed { expires_at })) => RefreshOutcome {
            tally: Tally::Refreshed,
            // Next: when the new token enters the window.
            due: act_at(expires_at.map_or(now + RETRY_AFTER, |e| e - rules.window)),
            failures: Some(Failures::NONE),
            refreshed: Some(Refreshed {
                at: now,
                expires_at,
            }),
            event: Some(Lifecycle::Refreshed),
            ..RefreshOutcome::skip(None)
        },
        (_, Some(Answer::NotSealed)) => {
            RefreshOutcome::retry(conn, now, rules.window, Tally::Failed)
        }
        (_, Some(Answer::Healthy)) => {
            let recovered = conn.refresh_failures > 0;
            RefreshOutcome {
                failures: recovered.then_some(Failures::NONE),
                event: recovered.then_some(Lifecycle::Refreshed),
                ..RefreshOutcome::skip(act_at(now + FACEBOOK_CHECK_EVERY))
            }
        }
        (_, Some(Answer::Dead)) => RefreshOutcome::needs_reauth("token invalid"),
        (_, Some(Answer::Failed)) => after_failed_call(conn, now, rules),
    };
    outcome.resubscribe = outcome.status.is_none()
        && conn.status == Status::Active
        && found.has_token
        && subscription_missing(conn, found);
    outcome
}

fn after_failed_call(conn: &Connection, now: OffsetDateTime, rules: Rules) -> RefreshOutcome {
    let (days, give_up) = after_failure(
        conn.refresh_failures,
        conn.last_refresh_failure_at,
        now,
        rules.max_failure_days,
    );
    let base = if give_up {
        RefreshOutcome::needs_reauth("failing for days")
    } else {
        RefreshOutcome::retry(conn, now, rules.window, Tally::Failed)
    };
    RefreshOutcome {
        failures: Some(Failures {
            days,
            last_at: Some(now),
        }),
        ..base
    }
}

/// Meta drops a subscription by itself after about an hour of failed
/// deliveries. Its "not subscribed" counts when the token call (if the plan
/// made one) went well too: a token Meta refused says nothing reliable.
fn subscription_missing(conn: &Connection, found: Findings) -> bool {
    let token_fine = matches!(
        found.answer,
        None | Some(Answer::Refreshed { .. } | Answer::Healthy)
    );
    !conn.webhooks_subscribed || (token_fine && found.still_subscribed == Some(false))
}

#[cfg(test)]
#[path = "outcome_tests.rs"]
mod tests;
