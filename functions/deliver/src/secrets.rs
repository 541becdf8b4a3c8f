//! Endpoint secrets, opened through the vault (KMS) once per container and
//! kept in memory: a delivery needs no KMS call once its secret is open.

use std::collections::HashMap;
use std::sync::Mutex;

use secrecy::SecretString;
use shared::outbound::endpoint::{Endpoint, EndpointSecretOwner};
use shared::vault::{DataKeys, TokenVault, VaultError};
use time::OffsetDateTime;

/// More than 20 endpoints with two secrets each: a bound, not a working size.
const CAPACITY: usize = 64;

pub struct Secrets<K> {
    pub(crate) vault: TokenVault<K>,
    /// By the sealed secret's ciphertext (unique per sealing).
    opened: Mutex<HashMap<Vec<u8>, SecretString>>,
}

impl<K: DataKeys> Secrets<K> {
    pub fn new(vault: TokenVault<K>) -> Self {
        Self {
            vault,
            opened: Mutex::new(HashMap::new()),
        }
    }

    /// The secrets that sign a delivery to `endpoint` at `now`, newest first.
    pub async fn signing(
        &self,
        endpoint: &Endpoint,
        now: OffsetDateTime,
    ) -> Result<Vec<SecretString>, VaultError> {
        let mut out = Vec::new();
        for sealed in endpoint.signing_secrets(now) {
            let cached = self.opened.lock().unwrap().get(&sealed.ciphertext).cloned();
            let secret = match cached {
                Some(s) => s,
                None => {
                    let owner = EndpointSecretOwner(&endpoint.id);
                    let s = self.vault.open(sealed, &owner).await?;
                    let mut opened = self.opened.lock().unwrap();
                    if opened.len() >= CAPACITY {
                        opened.clear();
                    }
                    opened.insert(sealed.ciphertext.clone(), s.clone());
                    s
                }
            };
            out.push(secret);
        }
        Ok(out)
    }
}
