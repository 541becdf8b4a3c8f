//! Response shapes, lenient where Meta's pages disagree.

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use super::MetaError;

/// A Meta id as a string, whether Meta sent a number or a string (ids exceed
/// 2^53, so they must never pass through a float).
pub fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        U(u64),
        I(i64),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::U(n) => n.to_string(),
        Id::I(n) => n.to_string(),
    })
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

/// Both shapes Meta documents for the Instagram code exchange.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum InstagramExchangeResponse {
    Wrapped { data: Vec<InstagramShortToken> },
    Flat(InstagramShortToken),
}

impl InstagramExchangeResponse {
    pub(super) fn into_token(self) -> Option<InstagramShortToken> {
        match self {
            Self::Wrapped { data } => data.into_iter().next(),
            Self::Flat(t) => Some(t),
        }
    }
}

#[derive(Deserialize)]
pub struct InstagramShortToken {
    #[serde(deserialize_with = "secret")]
    pub access_token: SecretString,
    /// The app-scoped Instagram user id.
    #[serde(deserialize_with = "id_string")]
    pub user_id: String,
    #[serde(default, deserialize_with = "permissions")]
    pub permissions: Vec<String>,
}

/// `"a,b"` or `["a","b"]`.
fn permissions<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        Csv(String),
        List(Vec<String>),
    }
    Ok(match Option::<P>::deserialize(d)? {
        Some(P::Csv(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Some(P::List(l)) => l,
        None => Vec::new(),
    })
}

#[derive(Deserialize)]
pub(super) struct TokenResponse {
    #[serde(deserialize_with = "secret")]
    pub access_token: SecretString,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub(super) fn into_long_lived(self) -> LongLivedToken {
        LongLivedToken {
            access_token: self.access_token,
            expires_in: self.expires_in,
        }
    }
}

pub struct LongLivedToken {
    pub access_token: SecretString,
    /// Seconds; `None` when Meta gave no expiry.
    pub expires_in: Option<u64>,
}

impl LongLivedToken {
    /// When the token expires, counted from `now` (when Meta answered).
    pub fn expires_at(&self, now: time::OffsetDateTime) -> Option<time::OffsetDateTime> {
        self.expires_in
            .map(|secs| now + time::Duration::seconds(secs as i64))
    }
}

#[derive(Deserialize, Debug, Clone)]
pub struct InstagramProfile {
    /// The professional account id: what webhooks carry as `entry[].id`.
    #[serde(deserialize_with = "id_string")]
    pub user_id: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub account_type: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct FacebookUser {
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
pub struct FacebookPage {
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(deserialize_with = "secret")]
    pub access_token: SecretString,
    #[serde(default)]
    pub instagram_business_account: Option<LinkedInstagram>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct LinkedInstagram {
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    #[serde(default)]
    pub username: String,
}

#[derive(Deserialize)]
pub(super) struct PagesResponse {
    #[serde(default)]
    pub data: Vec<FacebookPage>,
    #[serde(default)]
    pub paging: Option<Paging>,
}

#[derive(Deserialize)]
pub(super) struct Paging {
    #[serde(default)]
    pub cursors: Option<Cursors>,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Cursors {
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct DebugTokenResponse {
    pub data: DebugToken,
}

/// What `debug_token` says of a token. Times are epoch seconds; `0` or absent
/// means never.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DebugToken {
    #[serde(default)]
    pub is_valid: bool,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub data_access_expires_at: Option<i64>,
}

#[derive(Deserialize)]
pub(super) struct SubscribedApps {
    #[serde(default)]
    pub data: Vec<SubscribedApp>,
}

#[derive(Deserialize)]
pub(super) struct SubscribedApp {
    #[serde(default, deserialize_with = "opt_id")]
    pub id: Option<String>,
}

fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "id_string")] String);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

#[derive(Deserialize)]
pub(super) struct SuccessResponse {
    #[serde(default)]
    pub success: bool,
}

impl SuccessResponse {
    pub(super) fn check(self) -> Result<(), MetaError> {
        if self.success {
            Ok(())
        } else {
            Err(MetaError::Rejected {
                status: 200,
                code: None,
                message: "Meta answered success=false".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(body: &str) -> InstagramShortToken {
        serde_json::from_str::<InstagramExchangeResponse>(body)
            .unwrap()
            .into_token()
            .unwrap()
    }

    #[test]
    fn instagram_exchange_wrapped_shape_with_csv_permissions() {
        let t = parse(
            r#"{"data":[{"access_token":"IGQ1","user_id":17841400000000001,"permissions":"instagram_business_basic,instagram_business_manage_messages"}]}"#,
        );
        assert_eq!(t.access_token.expose_secret(), "IGQ1");
        assert_eq!(t.user_id, "17841400000000001");
        assert_eq!(
            t.permissions,
            [
                "instagram_business_basic",
                "instagram_business_manage_messages"
            ]
        );
    }

    #[test]
    fn instagram_exchange_flat_shape_with_list_permissions_and_string_id() {
        let t = parse(
            r#"{"access_token":"IGQ2","user_id":"9007199254740993","permissions":["instagram_business_basic"]}"#,
        );
        assert_eq!(t.access_token.expose_secret(), "IGQ2");
        // 2^53 + 1: would be 9007199254740992 after a float.
        assert_eq!(t.user_id, "9007199254740993");
        assert_eq!(t.permissions, ["instagram_business_basic"]);
    }

    #[test]
    fn big_numeric_ids_survive() {
        let t = parse(r#"{"access_token":"x","user_id":9007199254740993}"#);
        assert_eq!(t.user_id, "9007199254740993");
        assert!(t.permissions.is_empty());
    }

    #[test]
    fn empty_data_gives_no_token() {
        let r: InstagramExchangeResponse = serde_json::from_str(r#"{"data":[]}"#).unwrap();
        assert!(r.into_token().is_none());
    }
}
