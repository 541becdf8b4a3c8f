//! Why Meta gets a `503` (and retries): the one failure type of the webhook
//! function's routes, carrying its cause, logged and mapped to its answer in
//! one place ([`Unavailable::response`]).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use shared::http;
use shared::secrets::SecretsError;
use shared::store::StoreError;

/// Something this function needs is down for now. Meta retries a call it
/// did not get a 2xx for, so nothing is lost.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("the app secrets could not be read: {0}")]
    Secrets(#[from] SecretsError),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("the data-deletion job could not be started: {0}")]
    Invoke(String),
    /// Another request of the same person is being recorded at this moment.
    #[error("another request of this person is being recorded")]
    Busy,
}

impl Unavailable {
    /// Logs the cause (never a secret: the causes carry none) and answers
    /// `503`.
    pub fn response(&self, route: &'static str) -> Response<Body> {
        match self {
            Self::Busy => tracing::warn!(route, error = %self, "unavailable: Meta will retry"),
            _ => tracing::error!(route, error = %self, "unavailable: Meta will retry"),
        }
        unavailable()
    }
}

/// `503 {"error":"unavailable"}`.
pub fn unavailable() -> Response<Body> {
    http::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Try again.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_is_a_503_and_says_what_failed() {
        for (e, says) in [
            (Unavailable::Store(StoreError("down".into())), "store"),
            (Unavailable::Invoke("throttled".into()), "data-deletion"),
            (Unavailable::Busy, "another request"),
        ] {
            assert!(e.to_string().contains(says), "{e}");
            assert_eq!(e.response("test").status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }
}
