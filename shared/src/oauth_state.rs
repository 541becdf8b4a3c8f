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

/// The browser-binding cookies' name prefix. Each flow has its own cookie,
/// `oauth_binding_<flow id>`, scoped to `/oauth/{provider}`, so two flows in
/// one browser (two tabs, a double click) don't overwrite each other.
pub const BINDING_COOKIE_PREFIX: &str = "oauth_binding_";

/// The cookie name of the flow whose binding secret hashes to `binding_hash`:
/// the flow id is the hash's first 64 bits. It reveals nothing usable (the
/// secret has 256 bits) and needs no extra stored field.
pub fn binding_cookie_name(binding_hash: &str) -> String {
    let id = binding_hash.get(..16).unwrap_or(binding_hash);
    format!("{BINDING_COOKIE_PREFIX}{id}")
}

/// The cookie's path: only the callback of that provider receives it.
pub fn binding_cookie_path(provider: Provider) -> String {
    format!("/oauth/{provider}")
}

/// The OAuth `state` of one flow: 256 random bits, base64url. Only its hash
/// is stored; `Debug` hides it (oauth2-rs's `CsrfToken` does the same).
#[derive(Clone, PartialEq, Eq)]
pub struct StateToken(String);

impl StateToken {
    /// A fresh state for a new flow.
    pub fn generate() -> Self {
        Self(new_secret())
    }

    /// The state a request carries, if it could be one (1 to 512 characters:
    /// anything else is refused without a store read).
    pub fn from_request(raw: &str) -> Option<Self> {
        (!raw.is_empty() && raw.len() <= 512).then(|| Self(raw.to_string()))
    }

    /// The value sent to Meta in the authorize URL.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The stored form.
    pub fn hash(&self) -> String {
        hash(&self.0)
    }
}

/// An authorization code from Meta: single use, exchanged once, never
/// stored or logged (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthCode(String);

impl AuthCode {
    /// The code a request carries. Instagram appends `#_` (a fragment, not
    /// part of the code) and a frontend may pass it along: it is dropped.
    pub fn from_request(raw: &str) -> Option<Self> {
        let code = raw.strip_suffix("#_").unwrap_or(raw);
        (!code.is_empty()).then(|| Self(code.to_string()))
    }

    pub fn secret(&self) -> &str {
        &self.0
    }
}

macro_rules! hidden_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), "(..)"))
            }
        }
        impl Drop for $t {
            fn drop(&mut self) {
                zeroize::Zeroize::zeroize(&mut self.0);
            }
        }
    )*};
}

hidden_debug!(StateToken, AuthCode);

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

/// The PKCE (RFC 7636) code verifier of a flow: 256 random bits, base64url
/// (43 characters of the allowed alphabet). Stored server-side with the state
/// and sent only on the code exchange; never in a URL or a log (`Debug`
/// hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct PkceVerifier(String);

impl PkceVerifier {
    pub fn new() -> Self {
        Self(new_secret())
    }

    /// As read back from the store.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The `S256` challenge: base64url(SHA-256(verifier)), no padding.
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl Default for PkceVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PkceVerifier(..)")
    }
}

impl Drop for PkceVerifier {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
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
    /// Where the person lands, checked by `return_to::resolve` before storing.
    pub return_to: url::Url,
    /// Hash of the binding cookie (redirect mode only).
    pub binding_hash: Option<String>,
    /// The PKCE verifier, for providers that take one (`facebook`).
    pub pkce_verifier: Option<PkceVerifier>,
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
    /// The name of this flow's binding cookie (redirect mode only).
    pub fn binding_cookie_name(&self) -> Option<String> {
        self.binding_hash.as_deref().map(binding_cookie_name)
    }

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
            return_to: url::Url::parse("https://app.example.com/").unwrap(),
            binding_hash: binding.map(hash),
            pkce_verifier: None,
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
    fn state_and_code_from_requests_and_never_in_debug() {
        assert!(StateToken::from_request("").is_none());
        assert!(StateToken::from_request(&"x".repeat(513)).is_none());
        let s = StateToken::from_request(&"x".repeat(43)).unwrap();
        assert_eq!(s.hash(), hash(&"x".repeat(43)));
        let fresh = StateToken::generate();
        assert_eq!(URL_SAFE_NO_PAD.decode(fresh.secret()).unwrap().len(), 32);
        assert_eq!(format!("{fresh:?}"), "StateToken(..)");
        assert_eq!(AuthCode::from_request("abc#_").unwrap().secret(), "abc");
        assert_eq!(AuthCode::from_request("abc").unwrap().secret(), "abc");
        assert!(AuthCode::from_request("").is_none());
        assert!(AuthCode::from_request("#_").is_none());
        assert_eq!(
            format!("{:?}", AuthCode::from_request("AQsecret").unwrap()),
            "AuthCode(..)"
        );
    }

    #[test]
    fn pkce_challenge_is_s256_of_the_verifier() {
        // RFC 7636 appendix B.
        let v = PkceVerifier::from_stored("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(v.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let fresh = PkceVerifier::new();
        assert_eq!(fresh.secret().len(), 43);
        assert_ne!(fresh, PkceVerifier::new());
        assert_eq!(format!("{fresh:?}"), "PkceVerifier(..)");
    }

    #[test]
    fn each_flow_has_its_own_cookie_name() {
        let a = state(Mode::Redirect, Some("first-flow"));
        let b = state(Mode::Redirect, Some("second-flow"));
        let (na, nb) = (
            a.binding_cookie_name().unwrap(),
            b.binding_cookie_name().unwrap(),
        );
        assert_ne!(na, nb);
        assert!(na.starts_with(BINDING_COOKIE_PREFIX));
        assert_eq!(na.len(), BINDING_COOKIE_PREFIX.len() + 16);
        assert!(!na.contains("first-flow"));
        assert_eq!(state(Mode::Complete, None).binding_cookie_name(), None);
    }

    #[test]
    fn complete_mode_needs_the_same_user() {
        let s = state(Mode::Complete, None);
        assert!(s.is_bound_to(Binding::User("user-1")));
        assert!(!s.is_bound_to(Binding::User("user-2")));
        assert!(!s.is_bound_to(Binding::Cookie(Some("anything"))));
    }
}
