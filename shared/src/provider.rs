//! The two ways a person can connect an Instagram professional account.

use std::fmt;

/// The enum, its list and its names from one list, so a provider added to
/// it is in `ALL` (every provider the refresh run, the template's checks
/// and the tests go through) and has a name.
macro_rules! providers {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Provider {
            $($(#[$doc])* $variant,)*
        }

        impl Provider {
            /// Every provider.
            pub const ALL: &'static [Provider] = &[$(Self::$variant,)*];

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

providers! {
    /// Instagram API with Instagram Login.
    Instagram => "instagram",
    /// Instagram API with Facebook Login for Business.
    Facebook => "facebook",
}

impl Provider {
    /// Whether the authorization takes PKCE (Facebook Login does; Instagram
    /// Login documents none).
    pub fn uses_pkce(self) -> bool {
        match self {
            Self::Instagram => false,
            Self::Facebook => true,
        }
    }

    /// Whether its consent URL carries the app's login configuration
    /// (`config_id`, Facebook Login for Business), when one is set.
    pub fn takes_login_config(self) -> bool {
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
        for &p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
        }
        assert_eq!(Provider::ALL, [Provider::Instagram, Provider::Facebook]);
        assert!(Provider::Facebook.takes_login_config());
        assert!(!Provider::Instagram.takes_login_config());
        assert!(Provider::Facebook.uses_pkce() && !Provider::Instagram.uses_pkce());
        assert!(Provider::Facebook.revokes_grants() && !Provider::Instagram.revokes_grants());
        assert_eq!(
            Provider::of_webhook_object("page"),
            Some(Provider::Facebook)
        );
        assert_eq!(Provider::of_webhook_object("instagram"), None);
    }
}
