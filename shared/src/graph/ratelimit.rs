//! Meta's rate limits, read from its answers: when must the service stop
//! calling Meta for an account, and until when. A plain decision; the proxy
//! stores its result so every container honours it.

use serde_json::Value;
use time::{Duration, OffsetDateTime};

/// Meta's throttling error codes (app, user, Pages, custom, business use
/// cases for Pages, Instagram and Messenger).
pub const THROTTLE_CODES: [i64; 7] = [4, 17, 32, 613, 80001, 80002, 80006];

/// The throttle that is the app's, not one account's ("Application request
/// limit reached"): it stops every account of the app.
pub const APP_THROTTLE_CODE: i64 = 4;

/// How long to stop when Meta throttles without saying for how long.
pub const DEFAULT_BLOCK: Duration = Duration::seconds(60);

/// Usage at or above this percentage (Meta blocks at 100) stops calls for
/// [`DEFAULT_BLOCK`] before Meta has to refuse them.
pub const USAGE_CEILING: f64 = 100.0;

/// What one of Meta's answers says about an account's limits.
pub struct MetaAnswerLimits<'a> {
    /// The Graph error code, when Meta answered with an error.
    pub error_code: Option<i64>,
    /// The `x-business-use-case-usage` header.
    pub business_use_case_usage: Option<&'a str>,
    /// The `x-app-usage` header.
    pub app_usage: Option<&'a str>,
}

/// Until when calls for the account must not reach Meta, if at all.
pub fn blocked_until(now: OffsetDateTime, answer: &MetaAnswerLimits<'_>) -> Option<OffsetDateTime> {
    let regain_minutes = answer
        .business_use_case_usage
        .map(regain_minutes)
        .unwrap_or(0);
    let throttled = answer
        .error_code
        .is_some_and(|c| THROTTLE_CODES.contains(&c));
    let at_ceiling = max_usage(answer.business_use_case_usage, answer.app_usage) >= USAGE_CEILING;
    if regain_minutes > 0 {
        Some(now + Duration::minutes(regain_minutes))
    } else if throttled || at_ceiling {
        Some(now + DEFAULT_BLOCK)
    } else {
        None
    }
}

/// What one answer stops, and until when: the account that saw it, every
/// account of the app (per provider: each has its own Meta app), or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocks {
    pub until: OffsetDateTime,
    /// The answer speaks of the account: an account-level throttle code, or
    /// `x-business-use-case-usage` at 100 % or with a regain time.
    pub account: bool,
    /// The answer speaks of the app: code 4, or `x-app-usage` at 100 % in
    /// any of its percentages.
    pub app: bool,
}

/// Which blocks one of Meta's answers causes (see [`Blocks`]), if any.
pub fn blocks(now: OffsetDateTime, answer: &MetaAnswerLimits<'_>) -> Option<Blocks> {
    let until = blocked_until(now, answer)?;
    let app = answer.error_code == Some(APP_THROTTLE_CODE)
        || max_usage(None, answer.app_usage) >= USAGE_CEILING;
    let account = answer
        .error_code
        .is_some_and(|c| c != APP_THROTTLE_CODE && THROTTLE_CODES.contains(&c))
        || max_usage(answer.business_use_case_usage, None) >= USAGE_CEILING
        || answer
            .business_use_case_usage
            .map(regain_minutes)
            .unwrap_or(0)
            > 0;
    Some(Blocks {
        until,
        account,
        app,
    })
}

/// Whether Meta's error code means throttling.
pub fn is_throttling(code: Option<i64>) -> bool {
    code.is_some_and(|c| THROTTLE_CODES.contains(&c))
}

/// Seconds to tell the caller to wait (`Retry-After`), at least 1.
pub fn retry_after_secs(now: OffsetDateTime, until: OffsetDateTime) -> i64 {
    (until - now).whole_seconds().max(1)
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The largest `estimated_time_to_regain_access` (minutes) in a
/// `x-business-use-case-usage` header: `{"<id>": [{"type", ...}]}`.
fn regain_minutes(header: &str) -> i64 {
    let Ok(Value::Object(ids)) = serde_json::from_str::<Value>(header) else {
        return 0;
    };
    ids.values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|u| u.get("estimated_time_to_regain_access").and_then(number))
        .map(|m| m.ceil() as i64)
        .max()
        .unwrap_or(0)
        .clamp(0, 24 * 60)
}

/// The highest usage percentage in either header.
fn max_usage(buc: Option<&str>, app: Option<&str>) -> f64 {
    const METRICS: [&str; 3] = ["call_count", "total_cputime", "total_time"];
    let of = |u: &Value| -> f64 {
        METRICS
            .iter()
            .filter_map(|m| u.get(*m).and_then(number))
            .fold(0.0, f64::max)
    };
    let buc = buc
        .and_then(|h| serde_json::from_str::<Value>(h).ok())
        .and_then(|v| v.as_object().cloned())
        .map(|ids| {
            ids.values()
                .filter_map(Value::as_array)
                .flatten()
                .map(of)
                .fold(0.0, f64::max)
        })
        .unwrap_or(0.0);
    let app = app
        .and_then(|h| serde_json::from_str::<Value>(h).ok())
        .map(|v| of(&v))
        .unwrap_or(0.0);
    buc.max(app)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

    fn limits<'a>(
        code: Option<i64>,
        buc: Option<&'a str>,
        app: Option<&'a str>,
    ) -> MetaAnswerLimits<'a> {
        MetaAnswerLimits {
            error_code: code,
            business_use_case_usage: buc,
            app_usage: app,
        }
    }

    #[test]
    fn a_normal_answer_blocks_nothing() {
        assert_eq!(blocked_until(NOW, &limits(None, None, None)), None);
        let buc = r#"{"17841400000000001":[{"type":"instagram","call_count":28,"total_cputime":25,"total_time":25,"estimated_time_to_regain_access":0}]}"#;
        let app = r#"{"call_count":28,"total_time":25,"total_cputime":25}"#;
        assert_eq!(
            blocked_until(NOW, &limits(None, Some(buc), Some(app))),
            None
        );
        // Other errors are not throttling.
        assert_eq!(blocked_until(NOW, &limits(Some(100), None, None)), None);
        assert_eq!(blocked_until(NOW, &limits(Some(190), None, None)), None);
    }

    #[test]
    fn throttling_blocks_until_metas_regain_time() {
        let buc = r#"{"17841400000000001":[{"type":"instagram","call_count":100,"estimated_time_to_regain_access":12},{"type":"messenger","estimated_time_to_regain_access":"3"}]}"#;
        for code in THROTTLE_CODES {
            assert_eq!(
                blocked_until(NOW, &limits(Some(code), Some(buc), None)),
                Some(NOW + Duration::minutes(12)),
                "{code}"
            );
        }
        // Without a regain time: the default pause.
        assert_eq!(
            blocked_until(NOW, &limits(Some(80002), None, None)),
            Some(NOW + DEFAULT_BLOCK)
        );
        // Meta says the account is blocked even on a success.
        assert_eq!(
            blocked_until(NOW, &limits(None, Some(buc), None)),
            Some(NOW + Duration::minutes(12))
        );
    }

    #[test]
    fn usage_at_the_ceiling_pauses_before_meta_refuses() {
        let app = r#"{"call_count":100,"total_time":40,"total_cputime":40}"#;
        assert_eq!(
            blocked_until(NOW, &limits(None, None, Some(app))),
            Some(NOW + DEFAULT_BLOCK)
        );
        let buc = r#"{"1":[{"type":"pages","call_count":5,"total_time":"101","total_cputime":1}]}"#;
        assert_eq!(
            blocked_until(NOW, &limits(None, Some(buc), None)),
            Some(NOW + DEFAULT_BLOCK)
        );
    }

    #[test]
    fn malformed_headers_are_ignored_and_regain_is_bounded() {
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"1": "x"}"#,
            r#"{"1": [{"estimated_time_to_regain_access": "soon"}]}"#,
        ] {
            assert_eq!(
                blocked_until(NOW, &limits(None, Some(bad), Some(bad))),
                None,
                "{bad}"
            );
        }
        let huge = r#"{"1":[{"estimated_time_to_regain_access":999999}]}"#;
        assert_eq!(
            blocked_until(NOW, &limits(None, Some(huge), None)),
            Some(NOW + Duration::hours(24))
        );
    }

    #[test]
    fn an_app_throttle_blocks_the_app_an_account_throttle_the_account() {
        let blocks_of = |code, buc, app| blocks(NOW, &limits(code, buc, app));
        assert_eq!(blocks_of(None, None, None), None);
        // Code 4 without a regain time: the whole app, the default pause.
        assert_eq!(
            blocks_of(Some(4), None, None),
            Some(Blocks {
                until: NOW + DEFAULT_BLOCK,
                account: false,
                app: true
            })
        );
        // Every other throttle code is the account's.
        for code in THROTTLE_CODES.into_iter().filter(|c| *c != 4) {
            assert_eq!(
                blocks_of(Some(code), None, None),
                Some(Blocks {
                    until: NOW + DEFAULT_BLOCK,
                    account: true,
                    app: false
                }),
                "{code}"
            );
        }
        // Code 4 with the account's usage at its limit too: both, until
        // Meta's regain time.
        let buc =
            r#"{"1":[{"type":"instagram","call_count":100,"estimated_time_to_regain_access":5}]}"#;
        assert_eq!(
            blocks_of(Some(4), Some(buc), None),
            Some(Blocks {
                until: NOW + Duration::minutes(5),
                account: true,
                app: true
            })
        );
        // x-app-usage at 100 in any of its percentages, on a success: the app.
        for app in [
            r#"{"call_count":100,"total_time":1,"total_cputime":1}"#,
            r#"{"call_count":3,"total_time":"100","total_cputime":1}"#,
            r#"{"call_count":3,"total_time":1,"total_cputime":104}"#,
        ] {
            let b = blocks_of(None, None, Some(app)).expect(app);
            assert!(b.app && !b.account, "{app}");
        }
        // The account's usage at 100, the app's not: the account only.
        let buc = r#"{"1":[{"type":"pages","call_count":100}]}"#;
        let app = r#"{"call_count":99,"total_time":1,"total_cputime":1}"#;
        let b = blocks_of(None, Some(buc), Some(app)).unwrap();
        assert!(b.account && !b.app);
        // Non-throttling errors block nothing.
        assert_eq!(blocks_of(Some(190), None, Some(app)), None);
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(retry_after_secs(NOW, NOW + Duration::minutes(2)), 120);
        assert_eq!(retry_after_secs(NOW, NOW + Duration::milliseconds(300)), 1);
        assert_eq!(retry_after_secs(NOW, NOW - Duration::seconds(5)), 1);
    }
}
