//! Time, injectable so tests can move it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use time::OffsetDateTime;

/// The system clock, or a fixed clock that tests can move.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    fixed: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Self {
        Self { fixed: None }
    }

    /// A clock frozen at `at` until moved with [`Clock::advance`].
    pub fn fixed(at: OffsetDateTime) -> Self {
        Self {
            fixed: Some(Arc::new(AtomicI64::new(at.unix_timestamp()))),
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        match &self.fixed {
            Some(secs) => {
                OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(secs.load(Ordering::SeqCst))
            }
            None => {
                let now = OffsetDateTime::now_utc();
                now - time::Duration::nanoseconds(i64::from(now.nanosecond()))
            }
        }
    }

    /// Moves a fixed clock forward; does nothing to the system clock.
    pub fn advance(&self, by: time::Duration) {
        if let Some(secs) = &self.fixed {
            secs.fetch_add(by.whole_seconds(), Ordering::SeqCst);
        }
    }
}

/// RFC 3339 in UTC with second precision, as the contract shows it.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// RFC 3339 in UTC with milliseconds, the one form of every event's
/// `occurred_at` and `received_at`: Meta's timestamps are in milliseconds, and
/// a fixed width keeps string order the same as time order.
pub fn rfc3339_millis(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let base = rfc3339(t);
    format!("{}.{:03}Z", base.trim_end_matches('Z'), t.millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let clock = Clock::fixed(datetime!(2026-11-21 10:00:00 UTC));
        assert_eq!(rfc3339(clock.now()), "2026-11-21T10:00:00Z");
        clock.advance(time::Duration::minutes(11));
        assert_eq!(rfc3339(clock.now()), "2026-11-21T10:11:00Z");
    }

    #[test]
    fn millis_form_is_fixed_width_utc() {
        let t = datetime!(2026-11-21 10:00:00.0071 UTC);
        assert_eq!(rfc3339_millis(t), "2026-11-21T10:00:00.007Z");
        assert_eq!(
            rfc3339_millis(datetime!(2026-11-21 12:00:00 +02:00)),
            "2026-11-21T10:00:00.000Z"
        );
    }
}
