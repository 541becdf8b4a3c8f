//! The whole service against moto (DynamoDB, KMS, Secrets Manager) and the
//! emulated Meta: used by the integration tests and by the local stack.

use shared::FromEnv;
use std::collections::HashMap;

use authorize::{Authorize, AuthorizeConfig};
use callback::{Callback, CallbackConfig};
use shared::vault::KmsDataKeys;
use shared::{Clock, EnvReader};

use crate::meta::{MetaApps, MetaEmulator};
use crate::template;

#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Prefix of every table and secret name, so runs don't collide.
    pub prefix: String,
    pub meta_port: u16,
    pub public_base_url: String,
    pub frontend_url: String,
    pub allowed_return_origins: String,
    pub complete_redirect_uri: Option<String>,
    /// The unguessable path segment the Meta-facing routes live under
    /// (`/<MetaPathSecret>` in the template), as `/segment`.
    pub meta_path_prefix: String,
}

/// The tests' Meta path prefix: fixed, so a failing test names the URL.
pub const TEST_META_PATH_PREFIX: &str = "/test-meta-path-secret-0123456789abcdef";

impl StackOptions {
    pub fn for_tests() -> Self {
        let mut id = [0u8; 6];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
        Self {
            prefix: format!("t{}", hex::encode(id)),
            meta_port: 0,
            public_base_url: "https://api.example.com".into(),
            frontend_url: "https://app.example.com/settings/instagram".into(),
            allowed_return_origins: "https://admin.example.com".into(),
            complete_redirect_uri: Some("https://app.example.com/meta/complete".into()),
            meta_path_prefix: TEST_META_PATH_PREFIX.into(),
        }
    }
}

pub struct Stack {
    pub aws: aws_config::SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub meta: MetaEmulator,
    /// Function configuration, as the template would set it.
    pub env: HashMap<String, String>,
    /// Where the Meta-facing routes live (`/segment`; see [`StackOptions`]).
    pub meta_path_prefix: String,
}

/// Refuses to run anywhere but against a local emulator.
pub fn emulator_endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost") => {
            url
        }
        _ => panic!(
            "AWS_ENDPOINT_URL must point at a local moto server (http://127.0.0.1:PORT). \
             Run the tests with ./scripts/test, which starts one."
        ),
    }
}

/// The private media bucket of uploads (see [`crate::media_bucket`]).
async fn media_bucket(aws: &aws_config::SdkConfig, opts: &StackOptions) -> String {
    let name = format!("{}-media", opts.prefix.to_ascii_lowercase());
    crate::media_bucket::create(aws, &name, frontend_origins(opts)).await;
    name
}

/// The origin of the frontend and every allowed return origin.
fn frontend_origins(opts: &StackOptions) -> Vec<String> {
    std::iter::once(opts.frontend_url.as_str())
        .chain(opts.allowed_return_origins.split(','))
        .filter_map(|u| url::Url::parse(u.trim()).ok())
        .map(|u| u.origin().ascii_serialization())
        .collect()
}

/// The template's tables, named under the prefix; the functions' table
/// variables.
async fn create_tables(
    dynamodb: &aws_sdk_dynamodb::Client,
    opts: &StackOptions,
) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = HashMap::new();

    for spec in template::tables(&template::template_path()) {
        let name = format!("{}-{}", opts.prefix, spec.logical_id);
        template::create_table(dynamodb, &spec, &name).await;
        if let Some(var) = template::env_var_for(&spec.logical_id) {
            env.insert(var.into(), name);
        }
    }
    env
}

/// The KMS key that seals tokens; its id.
async fn create_token_key(kms: &aws_sdk_kms::Client, opts: &StackOptions) -> String {
    let key = kms
        .create_key()
        .description(format!("{} token key", opts.prefix))
        .send()
        .await
        .expect("create the KMS key");
    key.key_metadata()
        .expect("key metadata")
        .key_id()
        .to_string()
}

/// The Meta secret (app secrets, webhook verify token); its id.
async fn create_meta_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    opts: &StackOptions,
    apps: &MetaApps,
) -> String {
    let secret_id = format!("{}-meta", opts.prefix);
    secrets
        .create_secret()
        .name(&secret_id)
        .secret_string(
            serde_json::json!({
                "facebook_app_secret": apps.facebook_app_secret,
                "instagram_app_secret": apps.instagram_app_secret,
                "webhook_verify_token": format!("{}-verify", opts.prefix),
            })
            .to_string(),
        )
        .send()
        .await
        .expect("create the Meta secret");
    secret_id
}

impl Stack {
    pub async fn start(opts: StackOptions) -> Self {
        emulator_endpoint();
        let aws = shared::aws_config().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
        let kms = aws_sdk_kms::Client::new(&aws);
        let secrets = aws_sdk_secretsmanager::Client::new(&aws);
        let mut env = create_tables(&dynamodb, &opts).await;
        let key_id = create_token_key(&kms, &opts).await;

        let apps = MetaApps::default();
        let secret_id = create_meta_secret(&secrets, &opts, &apps).await;
        let meta = MetaEmulator::start(apps.clone(), opts.meta_port).await;

        let bucket = media_bucket(&aws, &opts).await;
        for (k, v) in [
            ("MEDIA_BUCKET", bucket),
            ("TOKEN_KEY_ID", key_id),
            ("META_SECRET_ID", secret_id),
            ("FACEBOOK_APP_ID", apps.facebook_app_id.clone()),
            ("INSTAGRAM_APP_ID", apps.instagram_app_id.clone()),
            ("GRAPH_API_VERSION", "v25.0".into()),
            ("PUBLIC_BASE_URL", opts.public_base_url.clone()),
            ("FRONTEND_URL", opts.frontend_url.clone()),
            (
                "ALLOWED_RETURN_ORIGINS",
                opts.allowed_return_origins.clone(),
            ),
            ("STATE_TTL_SECONDS", "600".into()),
            ("EVENT_RETENTION_DAYS", "14".into()),
        ] {
            env.insert(k.into(), v);
        }
        if let Some(c) = &opts.complete_redirect_uri {
            env.insert("COMPLETE_REDIRECT_URI".into(), c.clone());
        }
        for (k, v) in meta.env() {
            env.insert(k.into(), v);
        }
        Self {
            aws,
            dynamodb,
            kms,
            meta,
            env,
            meta_path_prefix: opts.meta_path_prefix,
        }
    }

    /// `path` of a Meta-facing route (`/webhook`, `/meta/...`) as Meta calls
    /// it: under the prefix.
    pub fn meta_path(&self, path: &str) -> String {
        format!("{}{path}", self.meta_path_prefix)
    }

    pub fn var(&self, name: &str) -> &str {
        self.env.get(name).map(String::as_str).unwrap_or_default()
    }

    pub fn env_reader(&self) -> EnvReader {
        EnvReader::from_map(self.env.clone())
    }

    pub fn authorize(&self, clock: Clock) -> Authorize {
        let config = AuthorizeConfig::from_env(self.env_reader()).expect("authorize config");
        Authorize::new(config, self.dynamodb.clone(), clock).expect("an HTTPS client")
    }

    pub fn webhook(&self, clock: Clock) -> webhook::Webhook {
        let config = webhook::WebhookConfig::from_env(self.env_reader()).expect("webhook config");
        webhook::Webhook::new(
            config,
            self.dynamodb.clone(),
            aws_sdk_secretsmanager::Client::new(&self.aws),
            clock,
        )
    }

    pub fn refresher(&self, clock: Clock) -> refresh::Refresher<KmsDataKeys> {
        let config = refresh::RefreshConfig::from_env(self.env_reader()).expect("refresh config");
        let keys = KmsDataKeys::new(self.kms.clone(), &config.token_key_id);
        refresh::Refresher::new(
            config,
            self.dynamodb.clone(),
            aws_sdk_secretsmanager::Client::new(&self.aws),
            keys,
            clock,
        )
        .expect("an HTTPS client")
    }

    /// The connections API; deletes are finished by the next refresh run.
    pub fn connections(&self, clock: Clock) -> connections::Connections {
        self.connections_nudging(clock, connections::Nudge::None)
    }

    /// The connections API nudging refresh after a delete as `nudge` says
    /// (an invocation through [`crate::lambda_api::LambdaApi`] in tests).
    pub fn connections_nudging(
        &self,
        clock: Clock,
        nudge: connections::Nudge,
    ) -> connections::Connections {
        let config = connections::ConnectionsConfig::from_env(self.env_reader())
            .expect("connections config");
        connections::Connections::new(config, self.dynamodb.clone(), nudge, clock)
    }

    pub fn callback(&self, clock: Clock) -> Callback<KmsDataKeys> {
        let config = CallbackConfig::from_env(self.env_reader()).expect("callback config");
        let keys = KmsDataKeys::new(self.kms.clone(), &config.token_key_id);
        Callback::new(
            config,
            self.dynamodb.clone(),
            aws_sdk_secretsmanager::Client::new(&self.aws),
            keys,
            clock,
        )
        .expect("an HTTPS client")
    }
}
