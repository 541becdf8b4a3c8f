//! HMAC-SHA256, the one MAC the service signs and checks with: Meta's
//! `X-Hub-Signature-256`, Graph's `appsecret_proof` and Standard Webhooks'
//! `v1` signatures. aws-lc's HMAC (already linked for TLS) takes a key of
//! any length, so neither signing nor checking has an error to handle.

use aws_lc_rs::hmac::{self, Context, Key, HMAC_SHA256};

/// The HMAC-SHA256 of `parts`, one after another, keyed with `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = Context::with_key(&Key::new(HMAC_SHA256, key));
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// Whether `tag` is the HMAC-SHA256 of `data` keyed with `key`, compared in
/// constant time.
pub fn hmac_sha256_matches(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    hmac::verify(&Key::new(HMAC_SHA256, key), data, tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231's test cases 2 (a short key) and 6 (a key longer than
    // SHA-256's 64-byte block, which HMAC hashes first).
    #[test]
    fn rfc_4231_vectors() {
        let short = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(short),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long_key = [0xaau8; 131];
        let data = b"Test Using Larger Than Block-Size Key - Hash Key First";
        let long = hmac_sha256(&long_key, &[data]);
        assert_eq!(
            hex::encode(long),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert!(hmac_sha256_matches(&long_key, data, &long));
        assert!(!hmac_sha256_matches(&long_key[1..], data, &long));
        assert!(!hmac_sha256_matches(&long_key, data, &long[..31]));
    }
}
