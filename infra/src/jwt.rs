//! HS256 JWTs for the local gateway, which plays the HTTP API JWT authorizer:
//! it verifies the token and hands the claims to the function.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::{json, Map, Value};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub const ISSUER: &str = "http://127.0.0.1/local-issuer";
pub const AUDIENCE: &str = "ig-connect-local";

pub fn sign(key: &[u8], sub: &str, now: i64, ttl_secs: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims =
        json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl_secs});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(format!("{header}.{payload}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

/// The claims of a valid token, as strings (as API Gateway passes them).
pub fn verify(key: &[u8], token: &str, now: i64) -> Option<Vec<(String, String)>> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(format!("{h}.{p}").as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()?;
    if claims.get("exp")?.as_i64()? <= now
        || claims.get("iss")?.as_str()? != ISSUER
        || claims.get("aud")?.as_str()? != AUDIENCE
    {
        return None;
    }
    Some(
        claims
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let t = sign(b"k", "user-1", 1000, 60);
        let claims = verify(b"k", &t, 1001).unwrap();
        assert!(claims.contains(&("sub".into(), "user-1".into())));
        assert!(verify(b"other", &t, 1001).is_none());
        assert!(verify(b"k", &t, 2000).is_none());
        let mut tampered = t.clone();
        tampered.insert(t.find('.').unwrap() + 3, 'x');
        assert!(verify(b"k", &tampered, 1001).is_none());
    }
}
