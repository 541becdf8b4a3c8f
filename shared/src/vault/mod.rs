//! The token vault: envelope encryption with KMS.
//!
//! Per token: KMS `GenerateDataKey` (AES-256) under an encryption context of
//! non-secret ids, then AES-256-GCM locally with a fresh 96-bit nonce and the
//! same ids as associated data. A sealed token copied onto another row (other
//! user, provider or account) fails to open twice over: KMS refuses to unwrap
//! the key under the other context, and GCM refuses the other AAD.

use std::collections::BTreeMap;
use std::future::Future;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::provider::Provider;

mod kms;
pub use kms::{KmsDataKeys, KmsUsage};

/// The envelope format version written today.
pub const SCHEME_VERSION: u8 = 1;
const PURPOSE: &str = "connection-token";

/// Whose token this is: bound into the encryption context and the AAD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenOwner {
    pub user_id: String,
    pub provider: Provider,
    pub account_id: String,
}

impl TokenOwner {
    /// The owner of a connection's token.
    pub fn of(conn: &crate::connection::Connection) -> Self {
        Self {
            user_id: conn.user_id.clone(),
            provider: conn.provider,
            account_id: conn.account_id.clone(),
        }
    }

    /// The KMS encryption context (logged by CloudTrail: ids only, no secrets).
    pub fn encryption_context(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("purpose".to_string(), PURPOSE.to_string()),
            ("user_id".to_string(), self.user_id.clone()),
            ("provider".to_string(), self.provider.as_str().to_string()),
            ("account_id".to_string(), self.account_id.clone()),
        ])
    }
}

/// What a sealed secret is bound to: its KMS encryption context, also the
/// GCM associated data. A connection's token ([`TokenOwner`]); an outbound
/// webhook endpoint's secret (`outbound::endpoint::EndpointSecretOwner`),
/// each with its own `purpose`.
pub trait SealContext {
    /// The KMS encryption context (logged by CloudTrail: ids only).
    fn encryption_context(&self) -> BTreeMap<String, String>;

    /// The GCM associated data: the context as canonical JSON, plus the version.
    fn aad(&self, version: u8) -> Vec<u8> {
        let mut ctx = self.encryption_context();
        ctx.insert("v".into(), version.to_string());
        // Canonical: the map's keys in order, compact (as `serde_json::to_vec`).
        let object: serde_json::Map<String, serde_json::Value> =
            ctx.into_iter().map(|(k, v)| (k, v.into())).collect();
        serde_json::Value::Object(object).to_string().into_bytes()
    }
}

impl SealContext for TokenOwner {
    fn encryption_context(&self) -> BTreeMap<String, String> {
        TokenOwner::encryption_context(self)
    }
}

/// A token at rest. Everything here is safe to store; nothing is safe to log
/// beyond `key_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedToken {
    pub version: u8,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedToken")
            .field("version", &self.version)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("key service failed: {0}")]
    Kms(String),
    #[error("token could not be opened (tampered, moved to another row, or wrong key)")]
    Unopenable,
    #[error("unknown envelope version {0}")]
    UnknownVersion(u8),
}

/// A fresh data key: plaintext (zeroized on drop) and its KMS-wrapped form.
pub struct DataKey {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub wrapped: Vec<u8>,
    pub key_id: String,
}

/// Where data keys come from: KMS in production, a stand-in in unit tests.
pub trait DataKeys: Send + Sync {
    fn generate(
        &self,
        context: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<DataKey, VaultError>> + Send;

    fn unwrap_key(
        &self,
        wrapped: &[u8],
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<Zeroizing<Vec<u8>>, VaultError>> + Send;

    /// KMS requests made and failed since the last call (and resets the
    /// counts): what a function reports as metrics after an invocation.
    fn take_usage(&self) -> KmsUsage {
        KmsUsage::default()
    }
}

/// Seals and opens tokens.
#[derive(Clone)]
pub struct TokenVault<K> {
    keys: K,
}

impl<K: DataKeys> TokenVault<K> {
    pub fn new(keys: K) -> Self {
        Self { keys }
    }

    /// KMS requests since the last call ([`DataKeys::take_usage`]).
    pub fn take_usage(&self) -> KmsUsage {
        self.keys.take_usage()
    }

    /// Emits `metrics` with the KMS requests made since the last time
    /// (`KmsCalls`, `KmsErrors`): one EMF document.
    pub fn emit_with_usage(&self, metrics: crate::metrics::Metrics) {
        self.take_usage().add_to(metrics).emit();
    }

    pub async fn seal(
        &self,
        token: &SecretString,
        owner: &impl SealContext,
    ) -> Result<SealedToken, VaultError> {
        let key = self.keys.generate(&owner.encryption_context()).await?;
        let cipher = cipher(&key.plaintext)?;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let aad = owner.aad(SCHEME_VERSION);
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: token.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Unopenable)?;
        Ok(SealedToken {
            version: SCHEME_VERSION,
            key_id: key.key_id,
            wrapped_key: key.wrapped,
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    pub async fn open(
        &self,
        sealed: &SealedToken,
        owner: &impl SealContext,
    ) -> Result<SecretString, VaultError> {
        if sealed.version != SCHEME_VERSION {
            return Err(VaultError::UnknownVersion(sealed.version));
        }
        let nonce: [u8; 12] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::Unopenable)?;
        let key = self
            .keys
            .unwrap_key(
                &sealed.wrapped_key,
                &sealed.key_id,
                &owner.encryption_context(),
            )
            .await?;
        let aad = owner.aad(sealed.version);
        let plaintext = Zeroizing::new(
            cipher(&key)?
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| VaultError::Unopenable)?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| VaultError::Unopenable)?;
        Ok(SecretString::from(text.to_string()))
    }
}

fn cipher(key: &[u8]) -> Result<Aes256Gcm, VaultError> {
    let key = Key::<Aes256Gcm>::try_from(key).map_err(|_| VaultError::Unopenable)?;
    Ok(Aes256Gcm::new(&key))
}

/// An in-memory key service for unit tests (feature `testing`: never in a
/// deployed binary). Like KMS it refuses to unwrap a key under any other
/// encryption context.
#[cfg(any(test, feature = "testing"))]
pub mod fake {
    use super::*;
    use std::sync::Mutex;

    /// (wrapped key, encryption context, plaintext key).
    type IssuedKey = (Vec<u8>, BTreeMap<String, String>, Vec<u8>);

    #[derive(Default)]
    pub struct FakeDataKeys {
        keys: Mutex<Vec<IssuedKey>>,
        /// Unwraps under any context (a careless key service).
        ignores_context: bool,
    }

    impl FakeDataKeys {
        /// A key service that ignores the encryption context.
        #[cfg(test)]
        pub(crate) fn ignoring_context() -> Self {
            Self {
                ignores_context: true,
                ..Self::default()
            }
        }
    }

    impl DataKeys for FakeDataKeys {
        async fn generate(
            &self,
            context: &BTreeMap<String, String>,
        ) -> Result<DataKey, VaultError> {
            let mut plaintext = vec![0u8; 32];
            rand::rng().fill_bytes(&mut plaintext);
            let mut wrapped = vec![0u8; 16];
            rand::rng().fill_bytes(&mut wrapped);
            self.keys
                .lock()
                .unwrap()
                .push((wrapped.clone(), context.clone(), plaintext.clone()));
            Ok(DataKey {
                plaintext: Zeroizing::new(plaintext),
                wrapped,
                key_id: "fake-key".into(),
            })
        }

        async fn unwrap_key(
            &self,
            wrapped: &[u8],
            _key_id: &str,
            context: &BTreeMap<String, String>,
        ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
            self.keys
                .lock()
                .unwrap()
                .iter()
                .find(|(w, c, _)| w == wrapped && (self.ignores_context || c == context))
                .map(|(_, _, k)| Zeroizing::new(k.clone()))
                .ok_or(VaultError::Unopenable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeDataKeys;
    use super::*;

    fn owner(user: &str, account: &str) -> TokenOwner {
        TokenOwner {
            user_id: user.into(),
            provider: Provider::Instagram,
            account_id: account.into(),
        }
    }

    #[test]
    fn the_associated_data_is_the_context_as_canonical_json() {
        // Tokens already sealed were bound to these exact bytes.
        let aad = SealContext::aad(&owner("u\"1", "a1"), 1);
        let expected = format!(
            r#"{{"account_id":"a1","provider":"instagram","purpose":"{PURPOSE}","user_id":"u\"1","v":"1"}}"#
        );
        assert_eq!(String::from_utf8(aad).unwrap(), expected);
    }

    #[tokio::test]
    async fn round_trip() {
        let vault = TokenVault::new(FakeDataKeys::default());
        let token = SecretString::from("IGAAtoken-123".to_string());
        let sealed = vault.seal(&token, &owner("u1", "a1")).await.unwrap();
        assert_eq!(sealed.version, SCHEME_VERSION);
        assert_eq!(sealed.nonce.len(), 12);
        assert!(!sealed
            .ciphertext
            .windows(b"IGAAtoken".len())
            .any(|w| w == b"IGAAtoken"));
        let opened = vault.open(&sealed, &owner("u1", "a1")).await.unwrap();
        assert_eq!(opened.expose_secret(), "IGAAtoken-123");
        assert!(!format!("{sealed:?}").contains("ciphertext"));
    }

    #[tokio::test]
    async fn tampering_is_detected() {
        let vault = TokenVault::new(FakeDataKeys::default());
        let token = SecretString::from("tok".to_string());
        let sealed = vault.seal(&token, &owner("u1", "a1")).await.unwrap();
        for i in 0..sealed.ciphertext.len() {
            let mut bad = sealed.clone();
            bad.ciphertext[i] ^= 0x01;
            assert!(matches!(
                vault.open(&bad, &owner("u1", "a1")).await,
                Err(VaultError::Unopenable)
            ));
        }
        let mut bad = sealed.clone();
        bad.nonce[0] ^= 1;
        assert!(vault.open(&bad, &owner("u1", "a1")).await.is_err());
        let mut bad = sealed.clone();
        bad.version = 9;
        assert!(matches!(
            vault.open(&bad, &owner("u1", "a1")).await,
            Err(VaultError::UnknownVersion(9))
        ));
    }

    #[tokio::test]
    async fn a_token_moved_to_another_row_does_not_open() {
        let vault = TokenVault::new(FakeDataKeys::default());
        let token = SecretString::from("tok".to_string());
        let sealed = vault.seal(&token, &owner("u1", "a1")).await.unwrap();
        assert!(vault.open(&sealed, &owner("u2", "a1")).await.is_err());
        assert!(vault.open(&sealed, &owner("u1", "a2")).await.is_err());
        let mut fb = owner("u1", "a1");
        fb.provider = Provider::Facebook;
        assert!(vault.open(&sealed, &fb).await.is_err());
    }

    #[tokio::test]
    async fn gcm_also_binds_the_owner_when_the_key_service_does_not() {
        // A key service that ignores the context: the AAD alone must refuse.
        let vault = TokenVault::new(FakeDataKeys::ignoring_context());
        let token = SecretString::from("tok".to_string());
        let sealed = vault.seal(&token, &owner("u1", "a1")).await.unwrap();
        assert!(vault.open(&sealed, &owner("u1", "a1")).await.is_ok());
        // The key service does hand the key out under the other owner...
        let other = owner("u2", "a1").encryption_context();
        let keys = &vault.keys;
        let key = keys.unwrap_key(&sealed.wrapped_key, &sealed.key_id, &other);
        assert!(key.await.is_ok());
        // ...and the vault still refuses: the AAD names the owner.
        assert!(matches!(
            vault.open(&sealed, &owner("u2", "a1")).await,
            Err(VaultError::Unopenable)
        ));
    }
}
