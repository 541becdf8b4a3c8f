//! The AWS SDK configuration, built once per container.
//!
//! In Lambda the credentials and the region are in the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`): they are taken from there directly, without building the
//! whole provider chains (profile, web identity, ECS, IMDS) that would find
//! them there anyway. Without them (a local run with a profile) the chains
//! run as usual. Everything else is the SDK's default loader, endpoint
//! overrides included (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`:
//! the tests point the SDK at moto with them).
//!
//! Every SDK client shares one HTTP client (one connection pool, one TLS
//! configuration), which trusts only Amazon Trust Services' roots, compiled
//! in ([`crate::tls`]).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedHttpClient};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};

/// Lambda's credentials and region, as its environment gives them.
pub struct LambdaEnvironment {
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl LambdaEnvironment {
    /// `None` unless the region, the key id and the secret key are all set
    /// and non-empty (the session token is optional).
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        Some(Self {
            region: set("AWS_REGION")?,
            access_key_id: set("AWS_ACCESS_KEY_ID")?,
            secret_access_key: set("AWS_SECRET_ACCESS_KEY")?,
            session_token: set("AWS_SESSION_TOKEN"),
        })
    }
}

/// Builds the AWS SDK configuration (see the module's documentation).
pub async fn aws_config() -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
    if let Some(env) = LambdaEnvironment::read(|name| std::env::var(name).ok()) {
        let credentials = Credentials::new(
            env.access_key_id,
            env.secret_access_key,
            env.session_token,
            None,
            "EnvironmentVariable",
        );
        loader = loader
            .region(Region::new(env.region))
            .credentials_provider(credentials);
    }
    loader.load().await
}

/// The SDK's default HTTPS client (hyper, rustls with aws-lc, proxies from
/// the environment), trusting Amazon Trust Services' compiled-in roots
/// instead of reading the system's store. Its connector is built once and
/// shared by every client made from the same [`SdkConfig`].
pub fn http_client() -> SharedHttpClient {
    let roots = TrustStore::empty().with_pem_certificate(crate::tls::aws_pem_bundle());
    let tls = TlsContext::builder()
        .with_trust_store(roots)
        .build()
        .expect("a TLS context from a trust store");
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn lambdas_environment_is_used_only_when_complete() {
        let full = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ];
        let got = LambdaEnvironment::read(env(&full)).expect("complete");
        assert_eq!(got.region, "eu-west-1");
        assert_eq!(got.access_key_id, "AKIDEXAMPLE");
        assert_eq!(got.secret_access_key, "secret");
        assert_eq!(got.session_token.as_deref(), Some("token"));

        let no_token = LambdaEnvironment::read(env(&full[..3])).expect("no token needed");
        assert_eq!(no_token.session_token, None);

        for missing in 0..3 {
            let vars: Vec<_> = full[..3]
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, v)| *v)
                .collect();
            assert!(LambdaEnvironment::read(env(&vars)).is_none(), "{missing}");
        }
        let empty_region = [("AWS_REGION", ""), full[1], full[2]];
        assert!(LambdaEnvironment::read(env(&empty_region)).is_none());
    }
}
