//! One delivery attempt as `GET /admin/endpoints/{id}/attempts` shows it;
//! kept 14 days. Never a response body, never a secret or a signature.

use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::clock::{rfc3339, rfc3339_millis};

/// How long attempt records are kept.
pub const ATTEMPT_RETENTION: Duration = Duration::days(14);

/// Why an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptError {
    Timeout,
    ConnectFailed,
    TlsFailed,
    RefusedAddress,
    HttpStatus,
}

impl AttemptError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ConnectFailed => "connect_failed",
            Self::TlsFailed => "tls_failed",
            Self::RefusedAddress => "refused_address",
            Self::HttpStatus => "http_status",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Timeout,
            Self::ConnectFailed,
            Self::TlsFailed,
            Self::RefusedAddress,
            Self::HttpStatus,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub endpoint_id: String,
    pub event_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub at: OffsetDateTime,
    /// `None`: delivered.
    pub error: Option<AttemptError>,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub next_attempt_at: Option<OffsetDateTime>,
}

impl Attempt {
    /// The sort key: newest first when read backwards, unique per attempt.
    pub fn sort_key(&self) -> String {
        format!(
            "{}#{}#{:04}",
            rfc3339_millis(self.at),
            self.event_id,
            self.attempt
        )
    }

    pub fn outcome(&self) -> &'static str {
        if self.error.is_none() {
            "delivered"
        } else {
            "failed"
        }
    }

    pub fn view(&self) -> Value {
        json!({
            "event_id": self.event_id,
            "attempt": self.attempt,
            "at": rfc3339_millis(self.at),
            "outcome": self.outcome(),
            "status": self.status,
            "error": self.error.map(AttemptError::as_str),
            "latency_ms": self.latency_ms,
            "next_attempt_at": self.next_attempt_at.map(rfc3339),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_view_is_the_contracts_and_later_attempts_sort_later() {
        let a = Attempt {
            endpoint_id: "ep_1".into(),
            event_id: "e1".into(),
            attempt: 2,
            at: datetime!(2026-11-21 12:00:05 UTC),
            error: Some(AttemptError::HttpStatus),
            status: Some(500),
            latency_ms: 12,
            next_attempt_at: Some(datetime!(2026-11-21 12:05:05 UTC)),
        };
        let v = a.view();
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["error"], "http_status");
        assert_eq!(v["next_attempt_at"], "2026-11-21T12:05:05Z");
        let mut b = a.clone();
        b.at += Duration::milliseconds(1);
        assert!(b.sort_key() > a.sort_key());
        assert_eq!(
            AttemptError::parse("refused_address"),
            Some(AttemptError::RefusedAddress)
        );
    }
}
