//! The two ways a person can connect an Instagram professional account.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Instagram API with Instagram Login.
    Instagram,
    /// Instagram API with Facebook Login for Business.
    Facebook,
}

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::Instagram, Provider::Facebook];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "instagram" => Some(Self::Instagram),
            "facebook" => Some(Self::Facebook),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Instagram => "instagram",
            Self::Facebook => "facebook",
        }
    }

    /// Whether the authorization takes PKCE (Facebook Login does; Instagram
    /// Login documents none).
    pub fn uses_pkce(self) -> bool {
        match self {
            Self::Instagram => false,
            Self::Facebook => true,
        }
    }

    /// Whether Meta can revoke the person's grant for this app
    /// (`DELETE /me/permissions` with the user token); Instagram Login has
    /// no such endpoint: unsubscribing and forgetting the token is all.
    pub fn revokes_grants(self) -> bool {
        match self {
            Self::Instagram => false,
            Self::Facebook => true,
        }
    }

    /// The provider of a webhook notification's `object` (`instagram` or
    /// `page`), when the object alone tells.
    pub fn of_webhook_object(object: &str) -> Option<Self> {
        match object {
            "page" => Some(Self::Facebook),
            _ => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_answers_its_own_questions() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
        }
        assert!(Provider::Facebook.uses_pkce() && !Provider::Instagram.uses_pkce());
        assert!(Provider::Facebook.revokes_grants() && !Provider::Instagram.revokes_grants());
        assert_eq!(
            Provider::of_webhook_object("page"),
            Some(Provider::Facebook)
        );
        assert_eq!(Provider::of_webhook_object("instagram"), None);
    }
}
