//! An endpoint: where events go, which ones, and the sealed secret(s) that
//! sign them. Its JSON view never carries a secret.

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use super::filter::matches;
use crate::clock::rfc3339;
use crate::vault::{SealContext, SealedToken};

/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: Duration = Duration::hours(24);
/// The most endpoints a deployment may have.
pub const MAX_ENDPOINTS: u32 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisabledReason {
    Manual,
    Failing,
}

impl DisabledReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Failing => "failing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "manual" => Some(Self::Manual),
            "failing" => Some(Self::Failing),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub kinds: Option<Vec<String>>,
    pub accounts: Option<Vec<String>>,
    pub description: String,
    /// `None`: enabled.
    pub disabled: Option<DisabledReason>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The first failure since the last success (see `health`).
    pub failing_since: Option<OffsetDateTime>,
    /// Since when its attempts go to the slow lane (see `lane`).
    pub slow_since: Option<OffsetDateTime>,
    pub secret: SealedToken,
    /// The secret before the last rotation, and until when it still signs.
    pub previous_secret: Option<(SealedToken, OffsetDateTime)>,
}

/// A new endpoint id: `ep_` and 16 random bytes in hex.
pub fn new_endpoint_id() -> String {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    format!("ep_{}", hex::encode(id))
}

impl Endpoint {
    /// The contract's Endpoint JSON (never a secret).
    pub fn view(&self) -> Value {
        json!({
            "id": self.id,
            "url": self.url,
            "kinds": self.kinds,
            "accounts": self.accounts,
            "description": self.description,
            "status": if self.disabled.is_some() { "disabled" } else { "enabled" },
            "disabled_reason": self.disabled.map(DisabledReason::as_str),
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        })
    }

    /// Whether an event of `kind` about `account_id` is delivered here now.
    pub fn receives(&self, kind: &str, account_id: &str) -> bool {
        self.disabled.is_none()
            && matches(
                self.kinds.as_deref(),
                self.accounts.as_deref(),
                kind,
                account_id,
            )
    }

    /// The secrets that sign a delivery at `now`: the current one, and the
    /// previous one during the 24 hours after a rotation.
    pub fn signing_secrets(&self, now: OffsetDateTime) -> Vec<&SealedToken> {
        let mut out = vec![&self.secret];
        if let Some((previous, until)) = &self.previous_secret {
            if now < *until {
                out.push(previous);
            }
        }
        out
    }
}

/// What an endpoint's secret is sealed to: its own purpose and the
/// endpoint's id (a secret copied onto another endpoint does not open).
pub struct EndpointSecretOwner<'a>(pub &'a str);

/// The encryption-context purpose of endpoint secrets.
pub const SECRET_PURPOSE: &str = "webhook-endpoint-secret";

impl SealContext for EndpointSecretOwner<'_> {
    fn encryption_context(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("purpose".to_string(), SECRET_PURPOSE.to_string()),
            ("endpoint_id".to_string(), self.0.to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::fake::FakeDataKeys;
    use crate::vault::TokenVault;
    use secrecy::{ExposeSecret, SecretString};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

    fn sealed(tag: u8) -> SealedToken {
        SealedToken {
            version: 1,
            key_id: "k".into(),
            wrapped_key: vec![tag],
            nonce: vec![0; 12],
            ciphertext: vec![tag],
        }
    }

    fn endpoint() -> Endpoint {
        Endpoint {
            id: new_endpoint_id(),
            url: "https://backend.example.com/hook".into(),
            kinds: Some(vec!["messages".into()]),
            accounts: None,
            description: "main".into(),
            disabled: None,
            created_at: T0,
            updated_at: T0,
            failing_since: None,
            slow_since: None,
            secret: sealed(1),
            previous_secret: Some((sealed(2), T0 + ROTATION_OVERLAP)),
        }
    }

    #[test]
    fn the_previous_secret_signs_for_24_hours_only() {
        let e = endpoint();
        assert_eq!(e.signing_secrets(T0).len(), 2);
        assert_eq!(e.signing_secrets(T0).first(), Some(&&sealed(1)));
        let later = T0 + ROTATION_OVERLAP;
        assert_eq!(e.signing_secrets(later), vec![&sealed(1)]);
    }

    #[test]
    fn a_disabled_endpoint_receives_nothing() {
        let mut e = endpoint();
        assert!(e.receives("messages", "a1"));
        assert!(!e.receives("comments", "a1"));
        e.disabled = Some(DisabledReason::Failing);
        assert!(!e.receives("messages", "a1"));
        let view = e.view();
        assert_eq!(view["status"], "disabled");
        assert_eq!(view["disabled_reason"], "failing");
        assert_eq!(view["created_at"], "2026-11-21T12:00:00Z");
        assert!(view.get("secret").is_none());
    }

    #[tokio::test]
    async fn a_secret_sealed_for_one_endpoint_opens_for_no_other() {
        let vault = TokenVault::new(FakeDataKeys::default());
        let secret = SecretString::from("whsec_abc".to_string());
        let s = vault
            .seal(&secret, &EndpointSecretOwner("ep_1"))
            .await
            .unwrap();
        let opened = vault.open(&s, &EndpointSecretOwner("ep_1")).await.unwrap();
        assert_eq!(opened.expose_secret(), "whsec_abc");
        assert!(vault.open(&s, &EndpointSecretOwner("ep_2")).await.is_err());
    }
}
