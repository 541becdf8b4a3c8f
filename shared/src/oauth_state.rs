//! The one-time OAuth `state` and the browser-binding secret.
//!
//! Both are 256 random bits, base64url. Only their SHA-256 hashes are stored,
//! so a read of the states table gives nothing that can finish a flow.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::provider::Provider;

/// The browser-binding cookie, scoped to `/oauth/{provider}`.
pub const BINDING_COOKIE: &str = "oauth_binding";

/// The cookie's path: only the callback of that provider receives it.
pub fn binding_cookie_path(provider: Provider) -> String {
    format!("/oauth/{provider}")
}

/// A fresh random secret (state or binding cookie value): 256 bits, base64url.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a secret: hex SHA-256.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Where Meta sends the person back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// To this API's `GET /oauth/{provider}/callback`; bound to the browser by a cookie.
    Redirect,
    /// To a frontend page that calls `POST /oauth/{provider}/complete`; bound to the user.
    Complete,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "redirect" => Some(Self::Redirect),
            "complete" => Some(Self::Complete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redirect => "redirect",
            Self::Complete => "complete",
        }
    }
}

/// A pending authorization, as stored (keyed by the state's hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthState {
    pub state_hash: String,
    pub user_id: String,
    pub provider: Provider,
    pub mode: Mode,
    /// Exactly the `redirect_uri` sent to Meta; the code exchange must repeat it.
    pub redirect_uri: String,
    pub return_to: String,
    /// Hash of the binding cookie (redirect mode only).
    pub binding_hash: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// What proves the request comes from the person who started the flow.
pub enum Binding<'a> {
    /// The binding cookie's value, if the browser sent one.
    Cookie(Option<&'a str>),
    /// The caller's user id from the JWT.
    User(&'a str),
}

impl OAuthState {
    /// Whether the request is bound to this state. Constant-time compares:
    /// the stored values are hashes, but timing should not tell even those.
    pub fn is_bound_to(&self, binding: Binding<'_>) -> bool {
        match (self.mode, binding) {
            (Mode::Redirect, Binding::Cookie(Some(cookie))) => match &self.binding_hash {
                Some(stored) => bool::from(stored.as_bytes().ct_eq(hash(cookie).as_bytes())),
                None => false,
            },
            (Mode::Complete, Binding::User(user)) => {
                bool::from(self.user_id.as_bytes().ct_eq(user.as_bytes()))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn state(mode: Mode, binding: Option<&str>) -> OAuthState {
        OAuthState {
            state_hash: hash("s"),
            user_id: "user-1".into(),
            provider: Provider::Instagram,
            mode,
            redirect_uri: "https://api.example.com/oauth/instagram/callback".into(),
            return_to: "https://app.example.com/".into(),
            binding_hash: binding.map(hash),
            created_at: datetime!(2026-11-21 10:00:00 UTC),
            expires_at: datetime!(2026-11-21 10:10:00 UTC),
        }
    }

    #[test]
    fn secrets_are_256_bit_base64url_and_unique() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn hash_is_hex_sha256_and_not_the_secret() {
        let h = hash("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash("abc"), h);
        assert_ne!(hash("abd"), h);
    }

    #[test]
    fn redirect_mode_needs_the_matching_cookie() {
        let s = state(Mode::Redirect, Some("cookie-value"));
        assert!(s.is_bound_to(Binding::Cookie(Some("cookie-value"))));
        assert!(!s.is_bound_to(Binding::Cookie(Some("other"))));
        assert!(!s.is_bound_to(Binding::Cookie(None)));
        assert!(!s.is_bound_to(Binding::User("user-1")));
    }

    #[test]
    fn complete_mode_needs_the_same_user() {
        let s = state(Mode::Complete, None);
        assert!(s.is_bound_to(Binding::User("user-1")));
        assert!(!s.is_bound_to(Binding::User("user-2")));
        assert!(!s.is_bound_to(Binding::Cookie(Some("anything"))));
    }
}
