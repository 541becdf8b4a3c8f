//! Work that may outlast one invocation (the refresh run, a data deletion,
//! and the jobs to come: publishing, replays): work until the deadline's
//! margin, then invoke the function itself for the rest, at most a bounded
//! number of rounds. One shape for all of them, so none hand-rolls its
//! deadline or its re-invocation.
//!
//! [`Deadline`] is the stop condition, injectable: Lambda's deadline less a
//! margin in AWS; in tests, "after this many starts", so no test depends on
//! how fast the machine is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::invoke::AsyncInvoke;

/// When a job must stop starting new work.
#[derive(Clone, Debug)]
pub struct Deadline(Stop);

#[derive(Clone, Debug)]
enum Stop {
    At(Instant),
    AfterStarts(Arc<AtomicUsize>),
}

impl Deadline {
    /// Stops `margin` before `deadline` (at `deadline` if it is closer than
    /// that already).
    pub fn before(deadline: Instant, margin: Duration) -> Self {
        Self(Stop::At(deadline.checked_sub(margin).unwrap_or(deadline)))
    }

    /// Lambda's deadline for this invocation (epoch time), less `margin`.
    pub fn of_invocation(deadline: SystemTime, margin: Duration) -> Self {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Self::before(Instant::now() + left, margin)
    }

    /// No deadline worth speaking of (a local run): an hour.
    pub fn distant() -> Self {
        Self(Stop::At(Instant::now() + Duration::from_secs(3600)))
    }

    /// Allows exactly `starts` answers of "go on" to [`Self::may_start`],
    /// then says stop: a stop condition for tests that needs no clock.
    pub fn after_starts(starts: usize) -> Self {
        Self(Stop::AfterStarts(Arc::new(AtomicUsize::new(starts))))
    }

    /// Whether one more piece of work may start now. Ask once per piece.
    pub fn may_start(&self) -> bool {
        match &self.0 {
            Stop::At(at) => Instant::now() < *at,
            Stop::AfterStarts(left) => left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// How a job chains its invocations: at most `max_rounds` in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Continuation {
    pub max_rounds: u64,
}

/// What became of asking for the next round.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing left: the chain ends.
    Done,
    /// Round `n` was invoked.
    Invoked(u64),
    /// Work is left but the chain is at its bound: the next scheduled run
    /// (or Lambda's retry) takes the rest.
    OutOfRounds,
    /// No function to invoke (a local run or a test): left for later.
    NoInvoker,
}

impl Continuation {
    /// The round after `round`, when work is left and the bound allows it.
    pub fn next_round(self, round: u64, work_left: bool) -> Option<u64> {
        let next = round.checked_add(1)?;
        (work_left && next < self.max_rounds).then_some(next)
    }

    /// Invokes the function itself for round `round + 1` with the payload
    /// `payload(next)` when work is left. The error is Lambda's, for the
    /// caller to decide on (log it, or fail so Lambda retries).
    pub async fn carry_on(
        self,
        invoker: Option<&AsyncInvoke>,
        round: u64,
        work_left: bool,
        payload: impl FnOnce(u64) -> Value,
    ) -> Result<Next, String> {
        if !work_left {
            return Ok(Next::Done);
        }
        let Some(next) = self.next_round(round, work_left) else {
            return Ok(Next::OutOfRounds);
        };
        let Some(invoker) = invoker else {
            return Ok(Next::NoInvoker);
        };
        invoker.send(&payload(next)).await?;
        Ok(Next::Invoked(next))
    }

    /// [`Self::carry_on`] for a scheduled run (`job`: `refresh`, `publish`)
    /// with `left` items it had no time for: the next round is logged, and
    /// so is a failed invocation, which is not an error of the run: the
    /// next scheduled run takes the rest.
    pub async fn carry_on_scheduled(
        self,
        job: &'static str,
        invoker: Option<&AsyncInvoke>,
        round: u64,
        left: usize,
        payload: impl FnOnce(u64) -> Value,
    ) {
        match self.carry_on(invoker, round, left > 0, payload).await {
            Ok(Next::Invoked(next)) => {
                tracing::info!(
                    job,
                    round = next,
                    left,
                    "the run continues in another invocation"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(job, error = %e, round = round + 1,
                    "could not continue the run; the next scheduled run takes the rest");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_deadline_allows_exactly_its_starts() {
        let d = Deadline::after_starts(2);
        let copy = d.clone();
        assert!(d.may_start());
        assert!(copy.may_start(), "clones share the count");
        assert!(!d.may_start());
        assert!(!copy.may_start());
        assert!(!Deadline::after_starts(0).may_start());
    }

    #[test]
    fn a_timed_deadline_keeps_its_margin() {
        let now = Instant::now();
        assert!(
            !Deadline::before(now + Duration::from_secs(5), Duration::from_secs(20)).may_start()
        );
        assert!(
            Deadline::before(now + Duration::from_secs(600), Duration::from_secs(20)).may_start()
        );
        assert!(Deadline::distant().may_start());
        let past = SystemTime::now() - Duration::from_secs(1);
        assert!(!Deadline::of_invocation(past, Duration::ZERO).may_start());
    }

    #[test]
    fn rounds_chain_only_for_work_left_and_within_the_bound() {
        let c = Continuation { max_rounds: 48 };
        assert_eq!(c.next_round(0, true), Some(1));
        assert_eq!(c.next_round(0, false), None);
        assert_eq!(c.next_round(46, true), Some(47));
        assert_eq!(c.next_round(47, true), None);
        assert_eq!(c.next_round(u64::MAX, true), None);
    }

    #[tokio::test]
    async fn carrying_on_without_an_invoker_or_rounds_says_so() {
        let c = Continuation { max_rounds: 2 };
        let payload = |n| serde_json::json!({ "round": n });
        assert_eq!(c.carry_on(None, 0, false, payload).await, Ok(Next::Done));
        assert_eq!(
            c.carry_on(None, 0, true, payload).await,
            Ok(Next::NoInvoker)
        );
        assert_eq!(
            c.carry_on(None, 1, true, payload).await,
            Ok(Next::OutOfRounds)
        );
    }
}
