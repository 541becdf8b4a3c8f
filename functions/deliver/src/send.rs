//! One HTTP attempt: the signed `POST`, and what came of it. Delivered is a
//! `2xx` within 15 seconds; nothing else, a redirect included.

use std::time::Instant;

use shared::outbound::attempt::AttemptError;
use shared::outbound::resolver::is_refused_address;
use shared::outbound::schedule::parse_retry_after;
use time::{Duration, OffsetDateTime};

/// The signed request, ready to send.
pub struct Signed<'a> {
    pub url: &'a str,
    pub event_id: &'a str,
    pub timestamp: i64,
    pub signature: String,
    pub body: Vec<u8>,
}

/// What came of an attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub status: Option<u16>,
    /// `None`: delivered.
    pub error: Option<AttemptError>,
    /// A `Retry-After` on a 429 or 503, as a wait.
    pub retry_after: Option<Duration>,
    pub latency_ms: u64,
}

pub async fn post(client: &reqwest::Client, req: Signed<'_>, now: OffsetDateTime) -> Sent {
    let started = Instant::now();
    let sent = client
        .post(req.url)
        .header("content-type", "application/json")
        .header("webhook-id", req.event_id)
        .header("webhook-timestamp", req.timestamp.to_string())
        .header("webhook-signature", req.signature)
        .body(req.body)
        .send()
        .await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = matches!(status, 429 | 503)
                .then(|| resp.headers().get("retry-after")?.to_str().ok())
                .flatten()
                .and_then(|v| parse_retry_after(v, now));
            Sent {
                status: Some(status),
                error: (!resp.status().is_success()).then_some(AttemptError::HttpStatus),
                retry_after,
                latency_ms,
            }
        }
        Err(e) => Sent {
            status: None,
            error: Some(classify(&e)),
            retry_after: None,
            latency_ms,
        },
    }
}

/// Why a request got no response.
pub fn classify(e: &reqwest::Error) -> AttemptError {
    if is_refused_address(e) {
        AttemptError::RefusedAddress
    } else if e.is_timeout() {
        AttemptError::Timeout
    } else if mentions_tls(e) {
        AttemptError::TlsFailed
    } else {
        AttemptError::ConnectFailed
    }
}

/// rustls's errors reach here only as text inside the chain.
fn mentions_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string().to_ascii_lowercase();
        if ["certificate", "tls", "handshake"]
            .iter()
            .any(|w| text.contains(w))
        {
            return true;
        }
        cur = err.source();
    }
    false
}
