//! Two lanes, so that a slow or dead endpoint never delays another's
//! deliveries (docs/contract.md, "Outbound webhooks").
//!
//! - The **fast lane** (`DeliveryQueue`, batches of 10) serves endpoints that
//!   answer promptly. It waits for an answer only as long as [`patience`]
//!   allows: twice as long as the batch's slowest answer so far, at least
//!   [`MIN_PATIENCE`], at most [`MAX_PATIENCE`]. An attempt still unanswered
//!   then is handed, unchanged, to the slow lane, and its endpoint is marked
//!   slow (`slow_since`), so its next attempts go there directly.
//! - The **slow lane** (`SlowDeliveryQueue`, one record per invocation)
//!   waits the full 15 seconds. An endpoint leaves it when it answers
//!   within [`MIN_PATIENCE`] ([`Bounds::is_quick`]) after at least [`MIN_SLOW_STAY`]
//!   there, so that an endpoint whose answers straddle the bar moves (and
//!   may get a request twice) at most once per [`MIN_SLOW_STAY`].

use std::time::Duration;

/// The fast lane's shortest wait for an answer.
pub const MIN_PATIENCE: Duration = Duration::from_millis(150);
/// The shortest time an endpoint marked slow stays in the slow lane.
pub const MIN_SLOW_STAY: Duration = Duration::from_secs(600);
/// The fast lane's longest wait for an answer (when nothing else of the
/// batch has answered yet).
pub const MAX_PATIENCE: Duration = Duration::from_secs(1);

/// Which queue an attempt waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Fast,
    Slow,
}

impl Lane {
    /// The lane of an endpoint: slow while it is marked slow.
    pub fn of(slow: bool) -> Self {
        if slow {
            Lane::Slow
        } else {
            Lane::Fast
        }
    }

    /// The lane a record came from: its `eventSourceARN`'s queue name
    /// against the slow lane's queue URL (`.../<account>/<name>`). A record
    /// without a source (tests, the local stack's fast lane) is the fast
    /// lane's.
    pub fn of_source(event_source_arn: Option<&str>, slow_queue_url: &str) -> Self {
        let name = |s: &str, sep: char| s.rsplit(sep).next().unwrap_or_default().to_string();
        let slow = name(slow_queue_url.trim_end_matches('/'), '/');
        match event_source_arn {
            Some(arn) if !slow.is_empty() && name(arn, ':') == slow => Lane::Slow,
            _ => Lane::Fast,
        }
    }
}

/// The fast lane's patience: at least `min`, at most `max`; an answer
/// within `min` is quick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub min: Duration,
    pub max: Duration,
}

impl Bounds {
    /// What the service runs with ([`MIN_PATIENCE`], [`MAX_PATIENCE`]);
    /// tests lengthen both, so that a busy test machine is not taken for a
    /// slow endpoint.
    pub const STANDARD: Bounds = Bounds {
        min: MIN_PATIENCE,
        max: MAX_PATIENCE,
    };

    /// How long, from the start of its batch, the fast lane waits for an
    /// attempt's answer, given the batch's slowest answer so far (from the
    /// batch's start).
    pub fn patience(&self, slowest_answer: Option<Duration>) -> Duration {
        match slowest_answer {
            None => self.max,
            Some(slowest) => (slowest * 2).clamp(self.min, self.max),
        }
    }

    /// Whether an answer after `latency` is quick enough for the fast lane.
    pub fn is_quick(&self, latency: Duration) -> bool {
        latency < self.min
    }
}

/// What came of an attempt, as far as lanes go.
#[derive(Clone, Copy, Debug)]
pub struct Answered {
    pub latency: Duration,
    pub timed_out: bool,
    /// How long the endpoint has been marked slow (`None`: not marked).
    pub slow_for: Option<Duration>,
}

/// Where an endpoint's next attempt goes after one answered (whatever its
/// status) in `lane`: the fast lane keeps what it got an answer from; the
/// slow lane lets go only of a quick one, after its minimum stay.
pub fn after_answer(lane: Lane, a: Answered, bounds: Bounds) -> Lane {
    let stayed = a.slow_for.is_none_or(|t| t >= MIN_SLOW_STAY);
    match lane {
        Lane::Fast => Lane::Fast,
        Lane::Slow if !a.timed_out && bounds.is_quick(a.latency) && stayed => Lane::Fast,
        Lane::Slow => Lane::Slow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn answered(ms: u64, timed_out: bool, slow_for: Option<u64>) -> Answered {
        Answered {
            latency: MS(ms),
            timed_out,
            slow_for: slow_for.map(Duration::from_secs),
        }
    }

    #[test]
    fn the_fast_lane_waits_twice_the_slowest_answer_within_its_bounds() {
        assert_eq!(
            Bounds::STANDARD.patience(None),
            MAX_PATIENCE,
            "nothing answered yet"
        );
        assert_eq!(
            Bounds::STANDARD.patience(Some(MS(50))),
            MIN_PATIENCE,
            "at least 150 ms"
        );
        assert_eq!(Bounds::STANDARD.patience(Some(MS(300))), MS(600));
        assert_eq!(
            Bounds::STANDARD.patience(Some(MS(800))),
            MAX_PATIENCE,
            "at most 1 s"
        );
    }

    #[test]
    fn only_a_quick_answer_after_its_stay_brings_an_endpoint_back() {
        let slow = |ms, timed_out, slow_for| {
            after_answer(
                Lane::Slow,
                answered(ms, timed_out, slow_for),
                Bounds::STANDARD,
            )
        };
        assert_eq!(slow(40, false, Some(600)), Lane::Fast);
        assert_eq!(slow(40, false, None), Lane::Fast, "not marked (any more)");
        assert_eq!(
            slow(40, false, Some(599)),
            Lane::Slow,
            "10 minutes at least"
        );
        assert_eq!(slow(150, false, Some(3600)), Lane::Slow);
        assert_eq!(slow(900, false, Some(3600)), Lane::Slow);
        assert_eq!(slow(1, true, Some(3600)), Lane::Slow);
        assert_eq!(
            after_answer(Lane::Fast, answered(900, false, None), Bounds::STANDARD),
            Lane::Fast,
            "an answer the fast lane waited for keeps it there"
        );
    }

    #[test]
    fn a_record_is_the_slow_lanes_only_when_it_came_from_its_queue() {
        let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/ig-SlowDeliveryQueue-AB";
        let slow = "arn:aws:sqs:eu-west-1:123456789012:ig-SlowDeliveryQueue-AB";
        let fast = "arn:aws:sqs:eu-west-1:123456789012:ig-DeliveryQueue-CD";
        assert_eq!(Lane::of_source(Some(slow), url), Lane::Slow);
        assert_eq!(Lane::of_source(Some(fast), url), Lane::Fast);
        assert_eq!(Lane::of_source(None, url), Lane::Fast);
        assert_eq!(Lane::of_source(Some(slow), ""), Lane::Fast);
        assert_eq!(Lane::of(true), Lane::Slow);
        assert_eq!(Lane::of(false), Lane::Fast);
    }
}
