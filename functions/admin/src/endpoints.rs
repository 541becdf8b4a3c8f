//! Create, list, read, change, delete an endpoint, and rotate its secret.
//! The secret is in the answer to a create or a rotation only.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use shared::http;
use shared::outbound::endpoint::{
    new_endpoint_id, DisabledReason, Endpoint, EndpointSecretOwner, ROTATION_OVERLAP,
};
use shared::outbound::signature::generate_secret;
use shared::outbound::store::Created;
use shared::vault::{DataKeys, SealedToken, VaultError};

use crate::input::{read, Changes};
use crate::{bad_request, not_found, server_error, Admin, AdminStore};

impl<K: DataKeys, S: AdminStore> Admin<K, S> {
    async fn seal(&self, id: &str) -> Result<(SecretString, SealedToken), VaultError> {
        let secret = generate_secret();
        let sealed = self.vault.seal(&secret, &EndpointSecretOwner(id)).await?;
        Ok((secret, sealed))
    }

    pub(crate) async fn create(&self, body: &[u8]) -> Response<Body> {
        let changes = match read(body, self.config.outbound.allow_loopback) {
            Ok(c) if c.url.is_some() => c,
            Ok(_) => return bad_request("invalid_url"),
            Err(e) => return bad_request(e.0),
        };
        let id = new_endpoint_id();
        let (secret, sealed) = match self.seal(&id).await {
            Ok(s) => s,
            Err(e) => return server_error(e),
        };
        let now = self.clock.now();
        let endpoint = Endpoint {
            id,
            url: changes.url.unwrap_or_default(),
            kinds: changes.kinds.flatten(),
            accounts: changes.accounts.flatten(),
            description: changes.description.unwrap_or_default(),
            disabled: (changes.enabled == Some(false)).then_some(DisabledReason::Manual),
            created_at: now,
            updated_at: now,
            failing_since: None,
            slow_since: None,
            secret: sealed,
            previous_secret: None,
        };
        match self.store.create(&endpoint).await {
            Ok(Created::Created) => {
                tracing::info!(endpoint = %endpoint.id, "endpoint created");
                with_secret(StatusCode::CREATED, &endpoint, &secret)
            }
            Ok(Created::TooMany) => http::error(
                StatusCode::CONFLICT,
                "too_many_endpoints",
                "At most 20 endpoints: delete one first.",
            ),
            Err(e) => server_error(e),
        }
    }

    pub(crate) async fn list(&self) -> Response<Body> {
        match self.store.list().await {
            Ok(all) => {
                let views: Vec<_> = all.iter().map(Endpoint::view).collect();
                http::json(StatusCode::OK, &json!({ "endpoints": views }))
            }
            Err(e) => server_error(e),
        }
    }

    pub(crate) async fn get(&self, id: &str) -> Response<Body> {
        match self.store.get(id).await {
            Ok(Some(e)) => http::json(StatusCode::OK, &e.view()),
            Ok(None) => not_found(),
            Err(e) => server_error(e),
        }
    }

    pub(crate) async fn patch(&self, id: &str, body: &[u8]) -> Response<Body> {
        let changes = match read(body, self.config.outbound.allow_loopback) {
            Ok(c) => c,
            Err(e) => return bad_request(e.0),
        };
        let mut endpoint = match self.store.get(id).await {
            Ok(Some(e)) => e,
            Ok(None) => return not_found(),
            Err(e) => return server_error(e),
        };
        let reenabled = apply(&mut endpoint, changes);
        endpoint.updated_at = self.clock.now();
        match self.store.save_settings(&endpoint, reenabled).await {
            Ok(true) => http::json(StatusCode::OK, &endpoint.view()),
            Ok(false) => not_found(),
            Err(e) => server_error(e),
        }
    }

    pub(crate) async fn delete(&self, id: &str) -> Response<Body> {
        match self.store.delete(id).await {
            Ok(true) => http::no_content(),
            Ok(false) => not_found(),
            Err(e) => server_error(e),
        }
    }

    /// A new secret; the current one keeps signing for 24 hours beside it.
    /// The write is conditioned on the secret read: a rotation racing
    /// another reads again (the secret it seals stays the same).
    pub(crate) async fn rotate(&self, id: &str) -> Response<Body> {
        let (secret, sealed) = match self.seal(id).await {
            Ok(s) => s,
            Err(e) => return server_error(e),
        };
        for _ in 0..ROTATION_TRIES {
            let endpoint = match self.store.get(id).await {
                Ok(Some(e)) => e,
                Ok(None) => return not_found(),
                Err(e) => return server_error(e),
            };
            let now = self.clock.now();
            let until = now + ROTATION_OVERLAP;
            match self
                .store
                .rotate_secret(&endpoint, &sealed, until, now)
                .await
            {
                Ok(true) => {
                    tracing::info!(endpoint = %id, "endpoint secret rotated");
                    let body = json!({ "secret": secret.expose_secret() });
                    return http::json(StatusCode::OK, &body);
                }
                Ok(false) => continue,
                Err(e) => return server_error(e),
            }
        }
        server_error("the secret changed under every try")
    }
}

/// How often a rotation reads again when another rotation came first.
const ROTATION_TRIES: usize = 3;

/// The changes onto the endpoint; `true` when it was disabled and is
/// enabled now (its failure streak starts afresh).
fn apply(e: &mut Endpoint, c: Changes) -> bool {
    if let Some(url) = c.url {
        e.url = url;
    }
    if let Some(kinds) = c.kinds {
        e.kinds = kinds;
    }
    if let Some(accounts) = c.accounts {
        e.accounts = accounts;
    }
    if let Some(d) = c.description {
        e.description = d;
    }
    match (c.enabled, e.disabled) {
        (Some(true), Some(_)) => {
            e.disabled = None;
            true
        }
        (Some(false), None) => {
            e.disabled = Some(DisabledReason::Manual);
            false
        }
        _ => false,
    }
}

fn with_secret(status: StatusCode, e: &Endpoint, secret: &SecretString) -> Response<Body> {
    let mut view = e.view();
    view["secret"] = json!(secret.expose_secret());
    http::json(status, &view)
}
