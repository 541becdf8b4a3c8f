//! Data keys from AWS KMS, with the requests counted for metrics.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::{DataKey, DataKeys, VaultError};

/// KMS requests counted by [`KmsDataKeys`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KmsUsage {
    /// `GenerateDataKey` and `Decrypt` requests sent.
    pub calls: u64,
    /// Those that failed for a reason other than a ciphertext that doesn't
    /// open (KMS unreachable, throttled, access denied, a disabled key).
    pub errors: u64,
}

impl KmsUsage {
    /// Adds the counts as `KmsCalls` and `KmsErrors` to `metrics`.
    pub fn add_to(self, metrics: crate::metrics::Metrics) -> crate::metrics::Metrics {
        metrics
            .count("KmsCalls", self.calls)
            .count("KmsErrors", self.errors)
    }
}

/// Data keys from AWS KMS.
#[derive(Clone)]
pub struct KmsDataKeys {
    client: aws_sdk_kms::Client,
    key_id: String,
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
    errors: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl KmsDataKeys {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
            calls: Default::default(),
            errors: Default::default(),
        }
    }

    /// Counts one request, and an error that was KMS's own.
    fn counted<T>(&self, result: Result<T, VaultError>) -> Result<T, VaultError> {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(1, Relaxed);
        if let Err(VaultError::Kms(_)) = result {
            self.errors.fetch_add(1, Relaxed);
        }
        result
    }
}

fn kms_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_kms::error::SdkError<E, R>,
) -> VaultError {
    VaultError::Kms(aws_sdk_kms::error::DisplayErrorContext(e).to_string())
}

fn plaintext_of(
    blob: Option<aws_sdk_kms::primitives::Blob>,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    blob.map(|b| Zeroizing::new(b.into_inner()))
        .ok_or_else(|| VaultError::Kms("no plaintext key returned".into()))
}

impl DataKeys for KmsDataKeys {
    async fn generate(&self, context: &BTreeMap<String, String>) -> Result<DataKey, VaultError> {
        let sent = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .send()
            .await;
        self.counted(sent.map_err(kms_error).and_then(|out| {
            Ok(DataKey {
                plaintext: plaintext_of(out.plaintext)?,
                wrapped: out
                    .ciphertext_blob
                    .ok_or_else(|| VaultError::Kms("no wrapped key returned".into()))?
                    .into_inner(),
                key_id: out.key_id.unwrap_or_else(|| self.key_id.clone()),
            })
        }))
    }

    async fn unwrap_key(
        &self,
        wrapped: &[u8],
        key_id: &str,
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let sent = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped))
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .send()
            .await;
        let opened = sent.map_err(|e| match e.as_service_error() {
            Some(se) if se.is_invalid_ciphertext_exception() => VaultError::Unopenable,
            _ => kms_error(e),
        });
        self.counted(opened.and_then(|out| plaintext_of(out.plaintext)))
    }

    fn take_usage(&self) -> KmsUsage {
        use std::sync::atomic::Ordering::Relaxed;
        KmsUsage {
            calls: self.calls.swap(0, Relaxed),
            errors: self.errors.swap(0, Relaxed),
        }
    }
}
