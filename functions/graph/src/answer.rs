//! The proxy's answer, the same for both doors, and the answers it gives
//! without Meta: refusals, the connection's state, Meta's block.

use serde_json::{json, Value};
use shared::connection::Status;
use shared::graph::ratelimit;
use shared::graph::store::{Block, StoredAnswer};
use shared::meta::proxy::GraphAnswer;
use shared::time::OffsetDateTime;

/// The proxy's answer, the same for both doors.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub replayed: bool,
}

/// A backend door's refusal (`shared::door`), as the answer it gives.
impl From<shared::door::Refusal> for ProxyAnswer {
    fn from(r: shared::door::Refusal) -> Self {
        Self::error(r.status, r.code, &r.message)
    }
}

impl ProxyAnswer {
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: json!({"error": code, "message": message}),
            replayed: false,
        }
    }

    pub(crate) fn with_meta(mut self, meta: Value) -> Self {
        self.body["meta"] = meta;
        self
    }

    pub(crate) fn header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.into(), value));
        self
    }

    pub(crate) fn stored(&self) -> StoredAnswer {
        StoredAnswer {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    pub(crate) fn replay(stored: StoredAnswer) -> Self {
        Self {
            status: stored.status,
            headers: stored.headers,
            body: stored.body,
            replayed: true,
        }
    }

    pub(crate) fn unavailable() -> Self {
        Self::error(
            503,
            "service_unavailable",
            "The service could not reach its store. Try again.",
        )
    }

    pub(crate) fn meta_unavailable() -> Self {
        Self::error(
            502,
            "meta_unavailable",
            "Meta could not be reached or failed. Try again later.",
        )
    }

    /// The `error` code of an error answer (empty otherwise).
    pub fn error_code(&self) -> &str {
        self.body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Why a call is refused without reaching Meta: the connection's status
/// (`409`), Meta's block on the account (`429`), or the block unreadable
/// (`503`). `None`: go ahead.
pub(crate) fn refusal(
    status: Status,
    block: Result<Option<Block>, shared::store::StoreError>,
    now: OffsetDateTime,
) -> Option<ProxyAnswer> {
    match status {
        Status::Active => {}
        Status::NeedsReauth => {
            return Some(ProxyAnswer::error(
                409,
                "connection_needs_reauth",
                "This connection must be connected again.",
            ))
        }
        Status::Revoked => {
            return Some(ProxyAnswer::error(
                409,
                "connection_revoked",
                "The person removed this app at Meta.",
            ))
        }
    }
    match block {
        Ok(Some(block)) => Some(rate_limited(&block, now)),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "could not read the rate-limit state");
            Some(ProxyAnswer::unavailable())
        }
    }
}

pub(crate) fn rate_limited(block: &Block, now: OffsetDateTime) -> ProxyAnswer {
    ProxyAnswer::error(
        429,
        "meta_rate_limited",
        "Meta is limiting calls for this account (or the whole app). Try again after Retry-After seconds.",
    )
    .with_meta(block.meta.clone())
    .header(
        "retry-after",
        ratelimit::retry_after_secs(now, block.until).to_string(),
    )
}

/// The usage headers as JSON, for the caller to see why calls paused.
pub(crate) fn limits_json(meta: &GraphAnswer) -> Value {
    let parse = |h: &str| {
        meta.header(h)
            .and_then(|v| serde_json::from_str::<Value>(v).ok())
            .unwrap_or(Value::Null)
    };
    json!({
        "x-app-usage": parse("x-app-usage"),
        "x-business-use-case-usage": parse("x-business-use-case-usage"),
    })
}
