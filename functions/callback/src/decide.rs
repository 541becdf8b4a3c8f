//! The callback's decisions, as plain functions: which failure a person
//! sees, what the redirect back carries, what a set of granted Pages amounts
//! to. The handler (`lib.rs`) calls Meta and the stores around them.

use lambda_http::http::StatusCode;
use shared::connection::Connection;
use shared::metrics::Metrics;
use shared::Provider;

/// Why a flow failed, as the frontend sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    AccessDenied,
    InvalidState,
    BrowserMismatch,
    ExchangeFailed,
    NoInstagramAccount,
    AccountAlreadyLinked,
    ServerError,
}

impl Reason {
    /// Every reason, in the order the contract lists them.
    pub const ALL: [Reason; 7] = [
        Self::AccessDenied,
        Self::InvalidState,
        Self::BrowserMismatch,
        Self::ExchangeFailed,
        Self::NoInstagramAccount,
        Self::AccountAlreadyLinked,
        Self::ServerError,
    ];

    /// The code the frontend receives (`reason=` or the error body's `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::InvalidState => "invalid_state",
            Self::BrowserMismatch => "browser_mismatch",
            Self::ExchangeFailed => "exchange_failed",
            Self::NoInstagramAccount => "no_instagram_account",
            Self::AccountAlreadyLinked => "account_already_linked",
            Self::ServerError => "server_error",
        }
    }

    /// The reason's metric name (CamelCase, as CloudWatch shows it).
    pub fn metric(self) -> &'static str {
        match self {
            Self::AccessDenied => "AccessDenied",
            Self::InvalidState => "InvalidState",
            Self::BrowserMismatch => "BrowserMismatch",
            Self::ExchangeFailed => "ExchangeFailed",
            Self::NoInstagramAccount => "NoInstagramAccount",
            Self::AccountAlreadyLinked => "AccountAlreadyLinked",
            Self::ServerError => "ServerError",
        }
    }

    /// The sentence a person reads: `POST /complete` returns it as `message`.
    pub fn message(self) -> &'static str {
        match self {
            Self::AccessDenied => "The connection was cancelled at Meta.",
            Self::InvalidState => {
                "This connection attempt is unknown, expired or already used. Start again."
            }
            Self::BrowserMismatch => {
                "This connection was started by another browser or user. Start again."
            }
            Self::ExchangeFailed => "Meta did not confirm the connection. Start again.",
            Self::NoInstagramAccount => {
                "None of the Pages you granted has an Instagram professional account linked."
            }
            Self::AccountAlreadyLinked => {
                "This Instagram account is already connected by another user."
            }
            Self::ServerError => "Something went wrong on our side. Try again.",
        }
    }

    /// The status of a `POST /complete` error.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::AccountAlreadyLinked => StatusCode::CONFLICT,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Reason {}

/// Meta's `error` parameter: the person cancelled, or something else failed.
pub(crate) fn reason_for_meta_error(error: &str) -> Reason {
    if error == "access_denied" {
        Reason::AccessDenied
    } else {
        Reason::ExchangeFailed
    }
}

/// One finished connect attempt as metrics (EMF, `function=callback`, by
/// provider): `Attempts` 1, `Connected` (the accounts it connected, 0 on
/// failure), `Failed` 0 or 1, and every reason's count, 0 or 1, so a
/// dashboard shows zeros rather than gaps.
pub fn connect_metrics(provider: Provider, outcome: Result<usize, Reason>) -> Metrics {
    let mut m = Metrics::new("callback")
        .provider(provider.as_str())
        .count("Attempts", 1)
        .count("Connected", *outcome.as_ref().unwrap_or(&0) as u64)
        .count("Failed", u64::from(outcome.is_err()));
    for reason in Reason::ALL {
        m = m.count(reason.metric(), u64::from(outcome == Err(reason)));
    }
    m
}

/// The query of the redirect back to `return_to`.
pub(crate) fn redirect_params(
    provider: Provider,
    outcome: Result<&[Connection], Reason>,
) -> Vec<(&'static str, String)> {
    let mut params = vec![];
    match outcome {
        Ok(conns) => {
            params.push(("status", "connected".to_string()));
            params.push(("provider", provider.to_string()));
            for c in conns {
                params.push(("account_id", c.account_id.clone()));
            }
        }
        Err(reason) => {
            params.push(("status", "error".to_string()));
            params.push(("provider", provider.to_string()));
            params.push(("reason", reason.as_str().to_string()));
        }
    }
    params
}

/// The scopes granted: as Meta reported them, else those asked for.
pub(crate) fn granted_scopes(reported: &[String], asked: &[String]) -> Vec<String> {
    if reported.is_empty() { asked } else { reported }.to_vec()
}

/// What connecting a person's Pages amounts to: the accounts connected, or
/// `account_already_linked` when none was and some belong to someone else.
pub(crate) fn pages_result(
    connected: Vec<Connection>,
    taken: usize,
) -> Result<Vec<Connection>, Reason> {
    if connected.is_empty() && taken > 0 {
        return Err(Reason::AccountAlreadyLinked);
    }
    Ok(connected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::connection::Status;
    use shared::time::macros::datetime;
    use shared::time::OffsetDateTime;

    const NOW: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

    #[test]
    fn every_reason_has_one_code_and_a_sentence() {
        let codes: Vec<String> = Reason::ALL.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            codes,
            [
                "access_denied",
                "invalid_state",
                "browser_mismatch",
                "exchange_failed",
                "no_instagram_account",
                "account_already_linked",
                "server_error"
            ]
        );
        assert!(Reason::ALL.iter().all(|r| r.message().ends_with('.')));
        assert_eq!(Reason::AccountAlreadyLinked.status(), StatusCode::CONFLICT);
        assert_eq!(
            Reason::ServerError.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(Reason::InvalidState.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn each_attempt_counts_once_with_its_reason_and_zero_for_the_others() {
        let ok = connect_metrics(Provider::Facebook, Ok(2)).document(1_795_260_000_000);
        assert_eq!(ok["function"], "callback");
        assert_eq!(ok["provider"], "facebook");
        assert_eq!(
            (
                ok["Attempts"].as_f64(),
                ok["Connected"].as_f64(),
                ok["Failed"].as_f64()
            ),
            (Some(1.0), Some(2.0), Some(0.0))
        );
        for reason in Reason::ALL {
            assert_eq!(ok[reason.metric()], 0.0);
            let failed = connect_metrics(Provider::Instagram, Err(reason)).document(0);
            assert_eq!(failed["Failed"], 1.0);
            assert_eq!(failed["Connected"], 0.0);
            for other in Reason::ALL {
                let want = if other == reason { 1.0 } else { 0.0 };
                assert_eq!(failed[other.metric()], want, "{reason} {other}");
            }
        }
        // Metric names are distinct.
        let names: std::collections::BTreeSet<_> = Reason::ALL.iter().map(|r| r.metric()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
    }

    #[test]
    fn meta_errors_are_read_before_any_call() {
        assert_eq!(reason_for_meta_error("access_denied"), Reason::AccessDenied);
        assert_eq!(
            reason_for_meta_error("server_error"),
            Reason::ExchangeFailed
        );
    }

    #[test]
    fn the_redirect_names_every_account_or_the_reason() {
        let a = Connection::new("u", Provider::Facebook, "1", "a", NOW);
        let b = Connection::new("u", Provider::Facebook, "2", "b", NOW);
        let conns = [a, b];
        let params = redirect_params(Provider::Facebook, Ok(&conns[..]));
        let expected = [
            ("status", "connected"),
            ("provider", "facebook"),
            ("account_id", "1"),
            ("account_id", "2"),
        ];
        let as_strs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(as_strs, expected);
        let params = redirect_params(Provider::Instagram, Err(Reason::BrowserMismatch));
        let as_strs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            as_strs,
            [
                ("status", "error"),
                ("provider", "instagram"),
                ("reason", "browser_mismatch")
            ]
        );
    }

    #[test]
    fn pages_fail_only_when_none_connected_and_some_are_taken() {
        let a = Connection::new("u", Provider::Facebook, "1", "a", NOW);
        assert_eq!(pages_result(vec![a.clone()], 2), Ok(vec![a]));
        assert_eq!(pages_result(vec![], 1), Err(Reason::AccountAlreadyLinked));
        assert_eq!(pages_result(vec![], 0), Ok(vec![]));
    }

    #[test]
    fn scopes_are_those_reported_else_those_asked() {
        let asked = vec!["a".to_string(), "b".to_string()];
        assert_eq!(granted_scopes(&[], &asked), asked);
        assert_eq!(granted_scopes(&["c".to_string()], &asked), ["c"]);
    }

    #[test]
    fn a_new_connection_is_active_and_fresh() {
        let c = Connection::new("u", Provider::Instagram, "1", "name", NOW);
        assert_eq!(
            (c.status, c.version, c.refresh_failures),
            (Status::Active, 0, 0)
        );
        assert_eq!((c.connected_at, c.token_issued_at), (NOW, NOW));
        assert_eq!(c.last_refreshed_at, None);
    }
}
