//! The Standard Webhooks signature (standardwebhooks.com): `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "<id>.<timestamp>.<body>">`, keyed with the bytes of a `whsec_` secret.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// What every endpoint secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a secret this service generates (the spec allows 24–64).
pub const SECRET_BYTES: usize = 32;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret is not whsec_ followed by base64 of 24 to 64 bytes")]
    Malformed,
}

/// A fresh secret: `whsec_` and the base64 of 32 random bytes (CSPRNG).
pub fn generate_secret() -> SecretString {
    let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
    rand::rng().fill_bytes(bytes.as_mut());
    SecretString::from(format!("{SECRET_PREFIX}{}", B64.encode(bytes.as_ref())))
}

/// The key a secret stands for: its base64 part, decoded.
pub fn secret_key(secret: &SecretString) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let encoded = secret
        .expose_secret()
        .strip_prefix(SECRET_PREFIX)
        .ok_or(SecretError::Malformed)?;
    let key = Zeroizing::new(B64.decode(encoded).map_err(|_| SecretError::Malformed)?);
    if (24..=64).contains(&key.len()) {
        Ok(key)
    } else {
        Err(SecretError::Malformed)
    }
}

/// One `v1,<base64>` signature of the message under `key`.
fn sign_one(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let head = format!("{id}.{timestamp}.");
    let mac = crate::mac::hmac_sha256(key, &[head.as_bytes(), body]);
    format!("v1,{}", B64.encode(mac))
}

/// The `webhook-signature` value: one signature per secret, space-separated
/// (two while a rotation overlaps, the newest first).
pub fn signature_header(
    secrets: &[SecretString],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SecretError> {
    let mut out = Vec::with_capacity(secrets.len());
    for secret in secrets {
        out.push(sign_one(&secret_key(secret)?, id, timestamp, body));
    }
    Ok(out.join(" "))
}

/// How far a `webhook-timestamp` may be from the receiver's clock (the
/// official libraries' tolerance).
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 5 * 60;

/// What a receiver checks (the local stack's receiver): the timestamp within
/// [`TIMESTAMP_TOLERANCE_SECONDS`] of `now` (unix seconds), and one of the
/// header's `v1,` signatures equal, compared in constant time, to the
/// message's under `secret`.
pub fn verify(
    secret: &SecretString,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    let Ok(key) = secret_key(secret) else {
        return false;
    };
    if (now - ts).abs() > TIMESTAMP_TOLERANCE_SECONDS {
        return false;
    }
    let expected = sign_one(&key, id, ts, body);
    signatures
        .split(' ')
        .any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    #[test]
    fn matches_the_specifications_published_example() {
        // The example of the Standard Webhooks specification and its
        // reference libraries' tests.
        let key = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let header = signature_header(&[key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(
            header.unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn two_secrets_give_two_space_separated_signatures() {
        let (a, b) = (generate_secret(), generate_secret());
        let both = signature_header(&[a.clone(), b.clone()], "e1", 10, b"{}").unwrap();
        let one_a = signature_header(&[a], "e1", 10, b"{}").unwrap();
        let one_b = signature_header(&[b], "e1", 10, b"{}").unwrap();
        assert_eq!(both, format!("{one_a} {one_b}"));
        assert_ne!(one_a, one_b);
    }

    #[test]
    fn the_signature_covers_id_timestamp_and_body() {
        let s = [generate_secret()];
        let base = signature_header(&s, "e1", 10, b"{}").unwrap();
        assert_ne!(base, signature_header(&s, "e2", 10, b"{}").unwrap());
        assert_ne!(base, signature_header(&s, "e1", 11, b"{}").unwrap());
        assert_ne!(base, signature_header(&s, "e1", 10, b"{ }").unwrap());
    }

    #[test]
    fn generated_secrets_are_whsec_and_32_random_bytes() {
        let a = generate_secret();
        assert!(a.expose_secret().starts_with("whsec_"));
        assert_eq!(secret_key(&a).unwrap().len(), 32);
        assert_ne!(a.expose_secret(), generate_secret().expose_secret());
    }

    #[test]
    fn malformed_secrets_are_refused() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            "whsec_AAAA",
            &format!("whsec_{}", B64.encode([0u8; 65])),
        ] {
            assert_eq!(
                secret_key(&secret(bad)),
                Err(SecretError::Malformed),
                "{bad}"
            );
        }
        assert!(secret_key(&secret(&format!("whsec_{}", B64.encode([1u8; 24])))).is_ok());
    }

    #[test]
    fn a_receiver_verifies_in_time_and_refuses_the_rest() {
        let s = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"type":"messages"}"#;
        let header = signature_header(&[generate_secret(), s.clone()], "m1", 1000, body).unwrap();
        assert!(verify(&s, "m1", "1000", &header, body, 1000 + 300));
        assert!(verify(&s, "m1", "1000", &header, body, 1000 - 300));
        assert!(
            !verify(&s, "m1", "1000", &header, body, 1000 + 301),
            "too old"
        );
        assert!(
            !verify(&s, "m1", "1000", &header, body, 1000 - 301),
            "too new"
        );
        assert!(!verify(&s, "m2", "1000", &header, body, 1000), "another id");
        assert!(
            !verify(&s, "m1", "1000", &header, b"{}", 1000),
            "another body"
        );
        assert!(!verify(&s, "m1", "x", &header, body, 1000));
        assert!(!verify(
            &generate_secret(),
            "m1",
            "1000",
            &header,
            body,
            1000
        ));
    }
}
