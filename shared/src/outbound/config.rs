//! The configuration `admin` and `deliver` share.

use crate::config::{table, EnvReader};

#[derive(Clone, Debug)]
pub struct OutboundConfig {
    /// `ENDPOINTS_TABLE`: endpoints, attempts and replays.
    pub endpoints_table: String,
    /// `ENDPOINT_KEY_ID`: the KMS key that seals endpoint secrets.
    pub endpoint_key_id: String,
    /// `DELIVERY_ALLOW_LOOPBACK=true`: local stack and tests only.
    pub allow_loopback: bool,
}

impl OutboundConfig {
    pub fn read(env: &mut EnvReader) -> Self {
        let allow_loopback = match env.optional("DELIVERY_ALLOW_LOOPBACK").as_str() {
            "" | "false" => false,
            "true" => true,
            other => {
                env.problem(format!(
                    "DELIVERY_ALLOW_LOOPBACK must be true or false, not {other:?}"
                ));
                false
            }
        };
        Self {
            endpoints_table: table(env, "ENDPOINTS_TABLE"),
            endpoint_key_id: env.required("ENDPOINT_KEY_ID"),
            allow_loopback,
        }
    }

    pub fn store(&self, client: &aws_sdk_dynamodb::Client) -> super::store::EndpointStore {
        super::store::EndpointStore::new(client.clone(), &self.endpoints_table)
    }
}
