//! Meta's error shapes, parsed into what the service must do about them.

use serde::Deserialize;
use serde_json::Value;

/// What a failed Meta call means for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// The token is dead (190/102): the person must connect again.
    #[error("token invalid (code {code}, subcode {subcode:?}): {message}")]
    TokenInvalid {
        code: i64,
        subcode: Option<i64>,
        message: String,
    },
    /// Rate limited: retry later, with backoff.
    #[error("throttled (code {code}): {message}")]
    Throttled { code: i64, message: String },
    /// Meta or the network failed for now: retry later.
    #[error("transient failure: {message}")]
    Transient { message: String },
    /// Anything else (bad request, permission, used code): don't retry.
    #[error("rejected (HTTP {status}, code {code:?}): {message}")]
    Rejected {
        status: u16,
        code: Option<i64>,
        message: String,
    },
}

impl MetaError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Transient { .. })
    }
}

#[derive(Deserialize)]
struct GraphEnvelope {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    error_subcode: Option<Value>,
    #[serde(default)]
    is_transient: Option<bool>,
}

/// The shape `api.instagram.com/oauth/access_token` uses.
#[derive(Deserialize)]
struct InstagramOAuthError {
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    error_message: Option<String>,
}

const THROTTLE_CODES: [i64; 9] = [4, 17, 32, 613, 80001, 80002, 80004, 80006, 80008];

fn as_i64(v: &Option<Value>) -> Option<i64> {
    match v {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// Meta puts free text in messages; keep it short and on one line for logs.
fn short(message: &str) -> String {
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    one_line
}

/// Classifies a non-success answer (HTTP status and body) from any Meta host.
pub fn classify(status: u16, body: &[u8]) -> MetaError {
    if let Ok(GraphEnvelope { error }) = serde_json::from_slice::<GraphEnvelope>(body) {
        return classify_codes(
            status,
            as_i64(&error.code),
            as_i64(&error.error_subcode),
            error.is_transient.unwrap_or(false),
            &error.message,
        );
    }
    if let Ok(e) = serde_json::from_slice::<InstagramOAuthError>(body) {
        if e.error_type.is_some() || e.error_message.is_some() {
            return classify_codes(
                status,
                as_i64(&e.code),
                None,
                false,
                e.error_message.as_deref().unwrap_or_default(),
            );
        }
    }
    classify_codes(status, None, None, false, "unrecognised error body")
}

fn classify_codes(
    status: u16,
    code: Option<i64>,
    subcode: Option<i64>,
    is_transient: bool,
    message: &str,
) -> MetaError {
    let message = short(message);
    match code {
        Some(c @ (190 | 102)) => MetaError::TokenInvalid {
            code: c,
            subcode,
            message,
        },
        Some(c) if THROTTLE_CODES.contains(&c) => MetaError::Throttled { code: c, message },
        // 1: unknown error, 2: service temporarily unavailable.
        Some(1 | 2) => MetaError::Transient { message },
        _ if is_transient => MetaError::Transient { message },
        _ if status == 429 => MetaError::Throttled {
            code: code.unwrap_or(0),
            message,
        },
        _ if status >= 500 => MetaError::Transient { message },
        _ => MetaError::Rejected {
            status,
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_token_errors_mean_reconnect() {
        let body = br#"{"error":{"message":"Error validating access token: The user has not authorized application 1.","type":"OAuthException","code":190,"error_subcode":458,"fbtrace_id":"A"}}"#;
        assert_eq!(
            classify(400, body),
            MetaError::TokenInvalid {
                code: 190,
                subcode: Some(458),
                message:
                    "Error validating access token: The user has not authorized application 1."
                        .into()
            }
        );
        let body = br#"{"error":{"message":"Session key invalid","code":102}}"#;
        assert!(matches!(
            classify(400, body),
            MetaError::TokenInvalid { code: 102, .. }
        ));
    }

    #[test]
    fn throttling_codes_and_429() {
        for code in [4, 17, 32, 613, 80001, 80002, 80006] {
            let body = format!(
                r#"{{"error":{{"message":"limit","type":"OAuthException","code":{code}}}}}"#
            );
            assert!(
                matches!(classify(400, body.as_bytes()), MetaError::Throttled { code: c, .. } if c == code),
                "{code}"
            );
        }
        assert!(matches!(classify(429, b""), MetaError::Throttled { .. }));
    }

    #[test]
    fn transient_failures() {
        assert!(matches!(
            classify(500, br#"{"error":{"message":"x","code":2}}"#),
            MetaError::Transient { .. }
        ));
        assert!(matches!(
            classify(
                400,
                br#"{"error":{"message":"x","code":100,"is_transient":true}}"#
            ),
            MetaError::Transient { .. }
        ));
        assert!(matches!(
            classify(502, b"<html>Bad gateway</html>"),
            MetaError::Transient { .. }
        ));
        assert!(classify(503, b"").is_retryable());
    }

    #[test]
    fn instagram_oauth_shape_is_understood() {
        let body = br#"{"error_type": "OAuthException", "code": 400, "error_message": "Matching code was not found or was already used"}"#;
        let e = classify(400, body);
        assert_eq!(
            e,
            MetaError::Rejected {
                status: 400,
                code: Some(400),
                message: "Matching code was not found or was already used".into()
            }
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn other_errors_are_not_retried() {
        let e = classify(
            400,
            br#"{"error":{"message":"(#100) bad param","code":"100"}}"#,
        );
        assert!(matches!(
            e,
            MetaError::Rejected {
                code: Some(100),
                ..
            }
        ));
        assert!(!e.is_retryable());
        assert!(!classify(403, b"nonsense").is_retryable());
        let long = format!(
            r#"{{"error":{{"message":"{}\n","code":100}}}}"#,
            "x".repeat(500)
        );
        match classify(400, long.as_bytes()) {
            MetaError::Rejected { message, .. } => {
                assert!(message.len() <= 200 && !message.contains('\n'))
            }
            other => panic!("{other:?}"),
        }
    }
}
