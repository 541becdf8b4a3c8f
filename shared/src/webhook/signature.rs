//! `X-Hub-Signature-256`: HMAC-SHA256 of the exact body, checked in
//! constant time with either app secret.

use crate::mac::{hmac_sha256, hmac_sha256_matches};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Hub-Signature-256 header")]
    Missing,
    #[error("more than one signature")]
    Repeated,
    #[error("the signature is not sha256=<64 lowercase hex>")]
    Malformed,
    #[error("the signature does not match")]
    Mismatch,
}

/// Parses the `X-Hub-Signature-256` values (API Gateway joins repeated
/// headers with commas). Strict: `sha256=` and 64 lowercase hex digits.
pub fn parse_signature(values: &[&str]) -> Result<[u8; 32], SignatureError> {
    let value = match values {
        [] => return Err(SignatureError::Missing),
        [one] => one.trim(),
        _ => return Err(SignatureError::Repeated),
    };
    if value.contains(',') {
        return Err(SignatureError::Repeated);
    }
    let hex_part = value
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_part.len() != 64
        || !hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(SignatureError::Malformed);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| SignatureError::Malformed)?;
    Ok(out)
}

/// Constant-time equality for secrets (the length is not secret).
pub fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// HMAC-SHA256 of `body` keyed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> [u8; 32] {
    hmac_sha256(secret, &[body])
}

/// Whether `signature` is the HMAC of `body` under any of `secrets` (empty
/// secrets are skipped). Each comparison is constant-time.
pub fn verify(body: &[u8], signature: &[u8; 32], secrets: &[&[u8]]) -> bool {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .any(|secret| hmac_sha256_matches(secret, body, signature))
}

/// The header value Meta would send for `body`.
pub fn signature_header(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(sign(secret, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        assert_eq!(
            hex::encode(sign(b"It's a Secret to Everybody", b"Hello, World!")),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let sig = parse_signature(&[
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ])
        .unwrap();
        assert!(verify(
            b"Hello, World!",
            &sig,
            &[b"It's a Secret to Everybody"]
        ));
        assert!(!verify(
            b"Hello, World?",
            &sig,
            &[b"It's a Secret to Everybody"]
        ));
        assert!(verify(
            b"Hello, World!",
            &sig,
            &[b"", b"other", b"It's a Secret to Everybody"]
        ));
        assert!(!verify(b"Hello, World!", &sig, &[b""]));
    }

    #[test]
    fn malformed_headers() {
        let good = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(parse_signature(&[]), Err(SignatureError::Missing));
        assert_eq!(
            parse_signature(&["sha256="]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            parse_signature(&["sha1=0123456789abcdef0123456789abcdef01234567"]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            parse_signature(&[&format!("sha256={}", good.to_uppercase())]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            parse_signature(&[&format!("sha256={}", &good[..63])]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            parse_signature(&[&format!("sha256={good}0")]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            parse_signature(&[&format!("sha256={good}"), &format!("sha256={good}")]),
            Err(SignatureError::Repeated)
        );
        assert_eq!(
            parse_signature(&[&format!("sha256={good},sha256={good}")]),
            Err(SignatureError::Repeated)
        );
        assert!(parse_signature(&[&format!(" sha256={good} ")]).is_ok());
    }
}
