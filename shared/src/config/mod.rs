//! Configuration, read once at start and validated. Each function reads only
//! the variables it uses and refuses to start with one message that names
//! every missing or malformed variable.

use std::time::Duration;

use url::Url;

use crate::provider::Provider;

mod env;
pub use env::{ConfigError, EnvReader, FromEnv};

pub const DEFAULT_INSTAGRAM_SCOPES: &str = "instagram_business_basic,instagram_business_manage_messages,instagram_business_manage_comments";
pub const DEFAULT_FACEBOOK_SCOPES: &str = "instagram_basic,instagram_manage_messages,instagram_manage_comments,pages_show_list,pages_manage_metadata,pages_read_engagement,business_management";
pub const DEFAULT_WEBHOOK_FIELDS_INSTAGRAM: &str =
    "messages,comments,message_reactions,messaging_postbacks,messaging_seen";
pub const DEFAULT_WEBHOOK_FIELDS_FACEBOOK: &str = "messages,feed";

/// Meta's hosts. Overridden only by tests and the local stack.
#[derive(Clone, Debug)]
pub struct MetaUrls {
    pub facebook: String,
    pub graph: String,
    pub instagram: String,
    pub instagram_api: String,
    pub instagram_graph: String,
}

impl MetaUrls {
    pub fn read(env: &mut EnvReader) -> Self {
        Self {
            facebook: env.base_url("META_FACEBOOK_URL", Some("https://www.facebook.com")),
            graph: env.base_url("META_GRAPH_URL", Some("https://graph.facebook.com")),
            instagram: env.base_url("META_INSTAGRAM_URL", Some("https://www.instagram.com")),
            instagram_api: env
                .base_url("META_INSTAGRAM_API_URL", Some("https://api.instagram.com")),
            instagram_graph: env.base_url(
                "META_INSTAGRAM_GRAPH_URL",
                Some("https://graph.instagram.com"),
            ),
        }
    }
}

/// What the service knows about the Meta app(s): ids, scopes, fields, hosts.
#[derive(Clone, Debug)]
pub struct MetaAppConfig {
    pub facebook_app_id: String,
    pub instagram_app_id: String,
    pub facebook_login_config_id: String,
    pub instagram_scopes: Vec<String>,
    pub facebook_scopes: Vec<String>,
    pub webhook_fields_instagram: Vec<String>,
    pub webhook_fields_facebook: Vec<String>,
    pub graph_api_version: String,
    pub urls: MetaUrls,
}

impl MetaAppConfig {
    pub fn read(env: &mut EnvReader) -> Self {
        let facebook_app_id = env.optional("FACEBOOK_APP_ID");
        let instagram_app_id = env.optional("INSTAGRAM_APP_ID");
        for (name, id) in [
            ("FACEBOOK_APP_ID", &facebook_app_id),
            ("INSTAGRAM_APP_ID", &instagram_app_id),
        ] {
            if !id.chars().all(|c| c.is_ascii_digit()) {
                env.problem(format!("{name} must be a numeric Meta app id, got {id:?}"));
            }
        }
        if facebook_app_id.is_empty() && instagram_app_id.is_empty() {
            env.problem(
                "FACEBOOK_APP_ID and INSTAGRAM_APP_ID are both empty: at least one provider must be on"
                    .into(),
            );
        }
        let graph_api_version = env.or_default("GRAPH_API_VERSION", "v25.0");
        if !is_graph_version(&graph_api_version) {
            env.problem(format!(
                "GRAPH_API_VERSION must look like v25.0, got {graph_api_version:?}"
            ));
        }
        Self {
            facebook_app_id,
            instagram_app_id,
            facebook_login_config_id: env.optional("FACEBOOK_LOGIN_CONFIG_ID"),
            instagram_scopes: env.list_or("INSTAGRAM_SCOPES", DEFAULT_INSTAGRAM_SCOPES),
            facebook_scopes: env.list_or("FACEBOOK_SCOPES", DEFAULT_FACEBOOK_SCOPES),
            webhook_fields_instagram: env
                .list_or("WEBHOOK_FIELDS_INSTAGRAM", DEFAULT_WEBHOOK_FIELDS_INSTAGRAM),
            webhook_fields_facebook: env
                .list_or("WEBHOOK_FIELDS_FACEBOOK", DEFAULT_WEBHOOK_FIELDS_FACEBOOK),
            graph_api_version,
            urls: MetaUrls::read(env),
        }
    }

    /// The app id of an enabled provider; `None` when that provider is off.
    pub fn app_id(&self, provider: Provider) -> Option<&str> {
        let id = match provider {
            Provider::Instagram => &self.instagram_app_id,
            Provider::Facebook => &self.facebook_app_id,
        };
        (!id.is_empty()).then_some(id.as_str())
    }

    pub fn scopes(&self, provider: Provider) -> &[String] {
        match provider {
            Provider::Instagram => &self.instagram_scopes,
            Provider::Facebook => &self.facebook_scopes,
        }
    }

    pub fn webhook_fields(&self, provider: Provider) -> &[String] {
        match provider {
            Provider::Instagram => &self.webhook_fields_instagram,
            Provider::Facebook => &self.webhook_fields_facebook,
        }
    }
}

fn is_graph_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let mut parts = rest.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(a), Some(b), None)
            if !a.is_empty() && !b.is_empty()
            && a.chars().all(|c| c.is_ascii_digit())
            && b.chars().all(|c| c.is_ascii_digit())
    )
}

/// Where people are sent: the API's own URL and the product's frontend.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// The API's public base URL, no trailing slash.
    pub public_base_url: String,
    pub frontend_url: Url,
    /// Origins (`scheme://host[:port]`) that `return_to` may point at.
    pub allowed_return_origins: Vec<url::Origin>,
    /// Exactly as configured: Meta compares it byte for byte with the
    /// redirect URI registered for the app.
    pub complete_redirect_uri: Option<String>,
}

impl SiteConfig {
    /// `None` when `FRONTEND_URL` is missing or malformed (a problem in
    /// `env`); every other variable is read and checked all the same.
    pub fn read(env: &mut EnvReader) -> Option<Self> {
        let public_base_url = env.base_url("PUBLIC_BASE_URL", None);
        let frontend_url = env.optional_url("FRONTEND_URL");
        if frontend_url.is_none() && env.optional("FRONTEND_URL").is_empty() {
            env.problem("FRONTEND_URL is missing".into());
        }
        let mut allowed_return_origins: Vec<url::Origin> =
            frontend_url.iter().map(Url::origin).collect();
        for raw in env.list_or("ALLOWED_RETURN_ORIGINS", "") {
            match Url::parse(&raw) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && matches!(u.path(), "" | "/")
                        && u.query().is_none()
                        && u.username().is_empty() =>
                {
                    allowed_return_origins.push(u.origin())
                }
                _ => env.problem(format!(
                    "ALLOWED_RETURN_ORIGINS must list origins like https://app.example.com, got {raw:?}"
                )),
            }
        }
        let complete_redirect_uri = env
            .optional_url("COMPLETE_REDIRECT_URI")
            .map(|_| env.optional("COMPLETE_REDIRECT_URI"));
        Some(Self {
            public_base_url,
            frontend_url: frontend_url?,
            allowed_return_origins,
            complete_redirect_uri,
        })
    }

    /// The redirect URI registered with Meta for `redirect` mode.
    pub fn callback_uri(&self, provider: Provider) -> String {
        format!("{}/oauth/{}/callback", self.public_base_url, provider)
    }
}

/// The three tables; each function names only those it uses.
pub fn table(env: &mut EnvReader, name: &str) -> String {
    env.required(name)
}

/// Where connections and their events are stored, and how long events are
/// kept: what every function that writes a connection or an event reads.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub connections_table: String,
    pub events_table: String,
    pub event_retention: Duration,
}

impl StoreConfig {
    /// `CONNECTIONS_TABLE`, `EVENTS_TABLE`, `EVENT_RETENTION_DAYS`.
    pub fn read(env: &mut EnvReader) -> Self {
        Self {
            connections_table: table(env, "CONNECTIONS_TABLE"),
            events_table: table(env, "EVENTS_TABLE"),
            event_retention: event_retention(env),
        }
    }

    /// The connections store on these tables.
    pub fn connections(&self, client: &aws_sdk_dynamodb::Client) -> crate::store::ConnectionStore {
        crate::store::ConnectionStore::new(
            client.clone(),
            &self.connections_table,
            &self.events_table,
        )
    }

    /// The events store on the events table.
    pub fn events(&self, client: &aws_sdk_dynamodb::Client) -> crate::store::EventStore {
        crate::store::EventStore::new(client.clone(), &self.events_table)
    }
}

/// `STATE_TTL_SECONDS`: how long a person has to approve at Meta.
pub fn state_ttl(env: &mut EnvReader) -> Duration {
    Duration::from_secs(env.number_or("STATE_TTL_SECONDS", 600, 60, 3600))
}

/// `EVENT_RETENTION_DAYS`: how long events stay in the outbox.
pub fn event_retention(env: &mut EnvReader) -> Duration {
    Duration::from_secs(env.number_or("EVENT_RETENTION_DAYS", 14, 1, 365) * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(pairs: &[(&str, &str)]) -> EnvReader {
        EnvReader::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn names_every_missing_or_malformed_variable_at_once() {
        let mut env = reader(&[
            ("FACEBOOK_APP_ID", "abc"),
            ("GRAPH_API_VERSION", "25"),
            ("STATE_TTL_SECONDS", "ten"),
            (
                "ALLOWED_RETURN_ORIGINS",
                "https://ok.example.com,javascript:alert(1)",
            ),
        ]);
        let _ = table(&mut env, "STATES_TABLE");
        let _ = MetaAppConfig::read(&mut env);
        let _ = SiteConfig::read(&mut env);
        let _ = state_ttl(&mut env);
        let err = env.finish().unwrap_err().to_string();
        for name in [
            "STATES_TABLE is missing",
            "FACEBOOK_APP_ID must be a numeric",
            "GRAPH_API_VERSION",
            "PUBLIC_BASE_URL is missing",
            "FRONTEND_URL is missing",
            "STATE_TTL_SECONDS",
            "ALLOWED_RETURN_ORIGINS",
        ] {
            assert!(err.contains(name), "{name} not in {err}");
        }
    }

    #[test]
    fn defaults_and_disabled_providers() {
        let mut env = reader(&[
            ("INSTAGRAM_APP_ID", "123"),
            ("PUBLIC_BASE_URL", "https://api.example.com/"),
            ("FRONTEND_URL", "https://app.example.com/settings"),
        ]);
        let meta = MetaAppConfig::read(&mut env);
        let site = SiteConfig::read(&mut env).unwrap();
        let ttl = state_ttl(&mut env);
        env.finish().unwrap();
        assert_eq!(meta.app_id(Provider::Instagram), Some("123"));
        assert_eq!(meta.app_id(Provider::Facebook), None);
        assert_eq!(meta.graph_api_version, "v25.0");
        assert_eq!(meta.urls.graph, "https://graph.facebook.com");
        assert_eq!(ttl, Duration::from_secs(600));
        assert_eq!(
            site.callback_uri(Provider::Instagram),
            "https://api.example.com/oauth/instagram/callback"
        );
        assert!(meta
            .instagram_scopes
            .contains(&"instagram_business_basic".to_string()));
    }
}
