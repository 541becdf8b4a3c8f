//! `signed_request`: how Meta's deauthorize and data-deletion callbacks
//! prove they come from Meta.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

use super::{sign, verify};

/// A verified `signed_request` from Meta's deauthorize or data-deletion callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The app-scoped id of the person.
    pub user_id: String,
    pub issued_at: Option<i64>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignedRequestError {
    #[error("signed_request is missing or is not <signature>.<payload>")]
    Malformed,
    #[error("signed_request signature is not a base64url HMAC-SHA256 (32 bytes)")]
    SignatureEncoding,
    #[error("signed_request payload is not base64url JSON")]
    PayloadEncoding,
    #[error("signed_request algorithm is not HMAC-SHA256")]
    Algorithm,
    #[error("signed_request signature does not match")]
    Mismatch,
    #[error("signed_request has no user_id")]
    NoUser,
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .ok()
}

/// Verifies `signed_request` (HMAC-SHA256 over the encoded payload, keyed with
/// an app secret) and reads the person's id.
pub fn verify_signed_request(
    signed_request: &str,
    secrets: &[&[u8]],
) -> Result<SignedRequest, SignedRequestError> {
    let (sig, payload) = signed_request
        .trim()
        .split_once('.')
        .ok_or(SignedRequestError::Malformed)?;
    if sig.is_empty() || payload.is_empty() {
        return Err(SignedRequestError::Malformed);
    }
    let sig: [u8; 32] = b64url(sig)
        .and_then(|s| s.try_into().ok())
        .ok_or(SignedRequestError::SignatureEncoding)?;
    // Signature before anything in the payload is believed.
    if !verify(payload.as_bytes(), &sig, secrets) {
        return Err(SignedRequestError::Mismatch);
    }
    let json: Value = b64url(payload)
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(SignedRequestError::PayloadEncoding)?;
    if !json
        .get("algorithm")
        .and_then(Value::as_str)
        .is_some_and(|a| a.eq_ignore_ascii_case("HMAC-SHA256"))
    {
        return Err(SignedRequestError::Algorithm);
    }
    let user_id = match json.get("user_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(SignedRequestError::NoUser),
    };
    Ok(SignedRequest {
        user_id,
        issued_at: json.get("issued_at").and_then(Value::as_i64),
    })
}

/// Builds a `signed_request` (for tests and the local stack).
pub fn make_signed_request(secret: &[u8], payload: &Value) -> String {
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let sig = URL_SAFE_NO_PAD.encode(sign(secret, payload.as_bytes()));
    format!("{sig}.{payload}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signed_requests() {
        let secret = b"app-secret";
        let ok = make_signed_request(
            secret,
            &json!({"algorithm":"HMAC-SHA256","issued_at":1795260000,"user_id":"123"}),
        );
        let r = verify_signed_request(&ok, &[b"other", secret]).unwrap();
        assert_eq!(r.user_id, "123");
        assert_eq!(r.issued_at, Some(1795260000));
        assert_eq!(
            verify_signed_request(&ok, &[b"other"]),
            Err(SignedRequestError::Mismatch)
        );

        // Tampered payload: the signature no longer matches.
        let (sig, _) = ok.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"algorithm":"HMAC-SHA256","user_id":"999"}"#);
        assert_eq!(
            verify_signed_request(&format!("{sig}.{forged}"), &[secret]),
            Err(SignedRequestError::Mismatch)
        );
        // Wrong algorithm, properly signed.
        let weak = make_signed_request(secret, &json!({"algorithm":"HMAC-SHA1","user_id":"123"}));
        assert_eq!(
            verify_signed_request(&weak, &[secret]),
            Err(SignedRequestError::Algorithm)
        );
        let none = make_signed_request(secret, &json!({"algorithm":"none","user_id":"123"}));
        assert_eq!(
            verify_signed_request(&none, &[secret]),
            Err(SignedRequestError::Algorithm)
        );
        // Each malformation says what is wrong with it.
        let sig32 = URL_SAFE_NO_PAD.encode([7u8; 32]);
        for (bad, why) in [
            ("", SignedRequestError::Malformed),
            ("abc", SignedRequestError::Malformed),
            (".", SignedRequestError::Malformed),
            ("abc.", SignedRequestError::Malformed),
            ("abc.def", SignedRequestError::SignatureEncoding),
            ("!!!.???", SignedRequestError::SignatureEncoding),
            (
                &format!("{sig32}x.e30"),
                SignedRequestError::SignatureEncoding,
            ),
            (&format!("{sig32}.e30"), SignedRequestError::Mismatch),
        ] {
            assert_eq!(verify_signed_request(bad, &[secret]), Err(why), "{bad:?}");
        }
        let not_json = {
            let payload = URL_SAFE_NO_PAD.encode("not json");
            let sig = URL_SAFE_NO_PAD.encode(sign(secret, payload.as_bytes()));
            format!("{sig}.{payload}")
        };
        assert_eq!(
            verify_signed_request(&not_json, &[secret]),
            Err(SignedRequestError::PayloadEncoding)
        );
        assert_eq!(
            SignedRequestError::SignatureEncoding.to_string(),
            "signed_request signature is not a base64url HMAC-SHA256 (32 bytes)"
        );
        // Numeric user ids are kept as digits.
        let n = make_signed_request(
            secret,
            &json!({"algorithm":"HMAC-SHA256","user_id":10160000000000001u64}),
        );
        assert_eq!(
            verify_signed_request(&n, &[secret]).unwrap().user_id,
            "10160000000000001"
        );
    }
}
