//! A connection: one Instagram professional account linked by one user.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::clock::rfc3339;
use crate::provider::Provider;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    /// The person must connect again.
    NeedsReauth,
    /// They removed the app at Meta.
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReauth => "needs_reauth",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "needs_reauth" => Some(Self::NeedsReauth),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// Declares `Lifecycle`, its `ALL` and its `kind` from one list, so that a
/// change can't be added to one and forgotten in another.
macro_rules! lifecycle {
    ($($(#[$doc:meta])* $variant:ident => $kind:literal,)*) => {
        /// What happened to a connection: the kind of the lifecycle event
        /// written with the change (webhook events take theirs from Meta's
        /// field instead).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Lifecycle {
            $($(#[$doc])* $variant,)*
        }

        impl Lifecycle {
            /// Every lifecycle change.
            pub const ALL: &'static [Lifecycle] = &[$(Self::$variant,)*];

            /// The event's `kind`, as `docs/contract.md` lists it.
            pub fn kind(self) -> &'static str {
                match self {
                    $(Self::$variant => $kind,)*
                }
            }
        }
    };
}

lifecycle! {
    Connected => "connection.connected",
    Refreshed => "connection.refreshed",
    WebhooksRestored => "connection.webhooks_restored",
    NeedsReauth => "connection.needs_reauth",
    Deleted => "connection.deleted",
    Revoked => "connection.revoked",
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub user_id: String,
    pub provider: Provider,
    /// The Instagram professional account id (webhook `entry[].id`).
    pub account_id: String,
    pub username: String,
    pub status: Status,
    pub webhooks_subscribed: bool,
    pub scopes: Vec<String>,
    pub connected_at: OffsetDateTime,
    pub token_expires_at: Option<OffsetDateTime>,
    pub token_issued_at: OffsetDateTime,
    pub last_refreshed_at: Option<OffsetDateTime>,
    /// The app-scoped Meta user id that deauthorize/data-deletion callbacks carry.
    pub meta_user_id: String,
    pub page_id: Option<String>,
    pub page_name: Option<String>,
    /// Bumped by every write; refresh writes only over the version it read.
    pub version: u64,
    /// Days on which refreshing failed for a passing reason, in a row.
    pub refresh_failures: u32,
    pub last_refresh_failure_at: Option<OffsetDateTime>,
}

/// The contract's Connection JSON. Carries nothing secret by construction.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ConnectionView {
    pub provider: &'static str,
    pub account_id: String,
    pub username: String,
    pub status: &'static str,
    pub webhooks: &'static str,
    pub scopes: Vec<String>,
    pub connected_at: String,
    pub token_expires_at: Option<String>,
    pub last_refreshed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_name: Option<String>,
}

impl Connection {
    /// A connection just made: active, its token issued `now`, not yet
    /// subscribed to webhooks, never written (version 0).
    pub fn new(
        user_id: &str,
        provider: Provider,
        account_id: &str,
        username: &str,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            user_id: user_id.to_string(),
            provider,
            account_id: account_id.to_string(),
            username: username.to_string(),
            status: Status::Active,
            webhooks_subscribed: false,
            scopes: vec![],
            connected_at: now,
            token_expires_at: None,
            token_issued_at: now,
            last_refreshed_at: None,
            meta_user_id: String::new(),
            page_id: None,
            page_name: None,
            version: 0,
            refresh_failures: 0,
            last_refresh_failure_at: None,
        }
    }

    pub fn view(&self) -> ConnectionView {
        ConnectionView {
            provider: self.provider.as_str(),
            account_id: self.account_id.clone(),
            username: self.username.clone(),
            status: self.status.as_str(),
            webhooks: if self.webhooks_subscribed {
                "subscribed"
            } else {
                "unsubscribed"
            },
            scopes: self.scopes.clone(),
            connected_at: rfc3339(self.connected_at),
            token_expires_at: self.token_expires_at.map(rfc3339),
            last_refreshed_at: self.last_refreshed_at.map(rfc3339),
            page_id: self.page_id.clone(),
            page_name: self.page_name.clone(),
        }
    }
}

impl ConnectionView {
    /// The view as JSON text, byte for byte what `Serialize` writes (a unit
    /// test holds the two together), built from values so it cannot fail.
    pub fn to_json(&self) -> String {
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let mut fields: Vec<(&str, Value)> = vec![
            ("provider", self.provider.into()),
            ("account_id", self.account_id.clone().into()),
            ("username", self.username.clone().into()),
            ("status", self.status.into()),
            ("webhooks", self.webhooks.into()),
            ("scopes", self.scopes.clone().into()),
            ("connected_at", self.connected_at.clone().into()),
            ("token_expires_at", text(&self.token_expires_at)),
            ("last_refreshed_at", text(&self.last_refreshed_at)),
        ];
        for (k, v) in [("page_id", &self.page_id), ("page_name", &self.page_name)] {
            if let Some(v) = v {
                fields.push((k, v.clone().into()));
            }
        }
        let pairs: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(k)))
            .collect();
        format!("{{{}}}", pairs.join(","))
    }
}

/// A connection for unit tests: active, subscribed, token issued at `issued`
/// with no expiry known; tests change what they are about.
#[cfg(test)]
pub(crate) fn test_connection(provider: Provider, issued: OffsetDateTime) -> Connection {
    Connection {
        webhooks_subscribed: true,
        meta_user_id: "m".into(),
        version: 1,
        ..Connection::new("u", provider, "a", "x", issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_json_writes_what_serialize_writes() {
        let issued = time::macros::datetime!(2026-12-01 10:00 UTC);
        let mut conn = test_connection(Provider::Facebook, issued);
        let bare = conn.view();
        conn.page_id = Some("p1".into());
        conn.page_name = Some("Page \"one\"".into());
        conn.token_expires_at = Some(issued + time::Duration::days(60));
        conn.last_refreshed_at = Some(issued);
        for view in [bare, conn.view()] {
            assert_eq!(view.to_json(), serde_json::to_string(&view).unwrap());
        }
    }

    #[test]
    fn every_lifecycle_kind_is_in_the_event_contract_once() {
        let contract = include_str!("../../docs/contract.md");
        let kinds: Vec<&str> = Lifecycle::ALL.iter().map(|l| l.kind()).collect();
        for kind in &kinds {
            assert!(contract.contains(&format!("`{kind}`")), "{kind}");
        }
        let distinct: std::collections::HashSet<_> = kinds.iter().collect();
        assert_eq!(distinct.len(), kinds.len());
    }
}
