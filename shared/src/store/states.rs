//! Pending OAuth states, keyed by the hash of the state.

use aws_sdk_dynamodb::types::ReturnValue;
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;

use super::{epoch, get_s, get_time, s, Item, StoreError};
use crate::oauth_state::{Mode, OAuthState, PkceVerifier};
use crate::provider::Provider;

#[derive(Clone)]
pub struct StateStore {
    client: Client,
    table: String,
}

impl StateStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub async fn put(&self, state: &OAuthState) -> Result<(), StoreError> {
        let mut item = Item::from([
            ("state_hash".into(), s(&state.state_hash)),
            ("user_id".into(), s(&state.user_id)),
            ("provider".into(), s(state.provider.as_str())),
            ("mode".into(), s(state.mode.as_str())),
            ("redirect_uri".into(), s(&state.redirect_uri)),
            ("return_to".into(), s(state.return_to.as_str())),
            ("created_at".into(), epoch(state.created_at)),
            // The TTL attribute; DynamoDB deletes late, so `consume` checks it too.
            ("expires_at".into(), epoch(state.expires_at)),
        ]);
        if let Some(b) = &state.binding_hash {
            item.insert("binding_hash".into(), s(b));
        }
        // Needed in clear for the code exchange; the item is deleted when the
        // state is consumed, and expires with it otherwise.
        if let Some(v) = &state.pkce_verifier {
            item.insert("code_verifier".into(), s(v.secret()));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(state_hash)")
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }

    /// Deletes the state if it exists, has not expired, and was made for this
    /// provider and mode, returning it. Atomic: of two concurrent calls, at
    /// most one gets `Some`. `None` for unknown, used, expired or mismatched.
    pub async fn consume(
        &self,
        state_hash: &str,
        provider: Provider,
        mode: Mode,
        now: OffsetDateTime,
    ) -> Result<Option<OAuthState>, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("state_hash", s(state_hash))
            .condition_expression(
                "attribute_exists(state_hash) AND expires_at > :now AND provider = :p AND #m = :m",
            )
            .expression_attribute_names("#m", "mode")
            .expression_attribute_values(":now", epoch(now))
            .expression_attribute_values(":p", s(provider.as_str()))
            .expression_attribute_values(":m", s(mode.as_str()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.attributes.as_ref().and_then(parse)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(StoreError::from_sdk(e)),
        }
    }
}

fn parse(item: &Item) -> Option<OAuthState> {
    Some(OAuthState {
        state_hash: get_s(item, "state_hash")?,
        user_id: get_s(item, "user_id")?,
        provider: Provider::parse(&get_s(item, "provider")?)?,
        mode: Mode::parse(&get_s(item, "mode")?)?,
        redirect_uri: get_s(item, "redirect_uri")?,
        return_to: url::Url::parse(&get_s(item, "return_to")?).ok()?,
        binding_hash: get_s(item, "binding_hash"),
        pkce_verifier: get_s(item, "code_verifier").map(PkceVerifier::from_stored),
        created_at: get_time(item, "created_at")?,
        expires_at: get_time(item, "expires_at")?,
    })
}
