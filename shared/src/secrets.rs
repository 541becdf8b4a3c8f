//! Meta app secrets from Secrets Manager, cached in-process for minutes so a
//! rotation reaches running containers without a deploy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::provider::Provider;

pub const CACHE_FOR: Duration = Duration::from_secs(300);
/// At most one forced re-read (after a signature mismatch) per this interval,
/// so forged requests can't turn into a flood of Secrets Manager calls.
pub const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(30);

#[derive(Clone, Deserialize)]
pub struct AppSecrets {
    #[serde(default = "empty")]
    pub facebook_app_secret: SecretString,
    #[serde(default = "empty")]
    pub instagram_app_secret: SecretString,
    #[serde(default = "empty")]
    pub webhook_verify_token: SecretString,
}

fn empty() -> SecretString {
    SecretString::from(String::new())
}

impl AppSecrets {
    pub fn app_secret(&self, provider: Provider) -> &SecretString {
        match provider {
            Provider::Instagram => &self.instagram_app_secret,
            Provider::Facebook => &self.facebook_app_secret,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret could not be read: {0}")]
    Read(String),
    #[error("secret is not the expected JSON object")]
    Malformed,
}

/// When the secrets were read, and what they were.
type Cached = (Instant, Arc<AppSecrets>);

/// Reads the secret when first asked (the webhook asks as it starts, without
/// waiting: `Webhook::serve`) and keeps it for [`CACHE_FOR`]. The lock is
/// held during a read, so a request arriving meanwhile waits for that read
/// rather than starting another.
#[derive(Clone)]
pub struct SecretsCache {
    source: Source,
    cached: Arc<Mutex<Option<Cached>>>,
    last_forced: Arc<Mutex<Option<Instant>>>,
}

/// Where the secret's JSON text is read.
#[derive(Clone)]
enum Source {
    SecretsManager {
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
    },
    /// Held in memory, and replaced by [`SecretsCache::rotate_in_memory`]:
    /// what a handler's unit tests read, with no server.
    Memory(Arc<std::sync::Mutex<String>>),
}

impl SecretsCache {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self::of(Source::SecretsManager {
            client,
            secret_id: secret_id.into(),
        })
    }

    /// A cache whose secret is `json`, held in memory (the same JSON object
    /// Secrets Manager holds; read and checked the same way).
    pub fn in_memory(json: impl Into<String>) -> Self {
        Self::of(Source::Memory(Arc::new(std::sync::Mutex::new(json.into()))))
    }

    /// Replaces an in-memory secret, as a rotation replaces the stored one:
    /// the cache still serves the old one until it reads again. No effect
    /// on a cache that reads Secrets Manager.
    pub fn rotate_in_memory(&self, json: impl Into<String>) {
        if let Source::Memory(text) = &self.source {
            *text.lock().unwrap_or_else(|p| p.into_inner()) = json.into();
        }
    }

    fn of(source: Source) -> Self {
        Self {
            source,
            cached: Arc::new(Mutex::new(None)),
            last_forced: Arc::new(Mutex::new(None)),
        }
    }

    /// Re-reads the secret now (a rotation may have happened), unless that
    /// was done within [`RELOAD_AT_MOST_EVERY`]: then `Ok(None)`.
    pub async fn reload_rate_limited(&self) -> Result<Option<Arc<AppSecrets>>, SecretsError> {
        {
            let mut last = self.last_forced.lock().await;
            if last.is_some_and(|at| at.elapsed() < RELOAD_AT_MOST_EVERY) {
                return Ok(None);
            }
            *last = Some(Instant::now());
        }
        *self.cached.lock().await = None;
        self.get().await.map(Some)
    }

    pub async fn get(&self) -> Result<Arc<AppSecrets>, SecretsError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, secrets)) = cached.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return Ok(secrets.clone());
            }
        }
        let text = self.source.read().await?;
        // The error of serde_json could quote the secret: drop it.
        let secrets: AppSecrets =
            serde_json::from_str(&text).map_err(|_| SecretsError::Malformed)?;
        let secrets = Arc::new(secrets);
        *cached = Some((Instant::now(), secrets.clone()));
        Ok(secrets)
    }
}

impl Source {
    /// The secret's JSON text.
    async fn read(&self) -> Result<String, SecretsError> {
        match self {
            Self::SecretsManager { client, secret_id } => {
                let out = client
                    .get_secret_value()
                    .secret_id(secret_id)
                    .send()
                    .await
                    .map_err(|e| {
                        SecretsError::Read(
                            aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                        )
                    })?;
                out.secret_string()
                    .map(str::to_string)
                    .ok_or(SecretsError::Malformed)
            }
            Self::Memory(text) => Ok(text.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        }
    }
}
