//! Asynchronous Lambda invocations: how one function hands work to another
//! (connections → refresh, webhook → data-deletion) or to its next run.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde_json::Value;

/// A function to invoke with `InvocationType::Event` (fire and forget: Lambda
/// queues the payload and retries it).
#[derive(Clone, Debug)]
pub struct AsyncInvoke {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl AsyncInvoke {
    pub fn new(client: &aws_sdk_lambda::Client, function: &str) -> Self {
        Self {
            client: client.clone(),
            function: function.to_string(),
        }
    }

    /// `None` when no function is named (a local run or a test): the caller
    /// then finishes the work some other way.
    pub fn named(client: &aws_sdk_lambda::Client, function: &str) -> Option<Self> {
        (!function.is_empty()).then(|| Self::new(client, function))
    }

    /// Queues `payload` for the function; the error is Lambda's, for the log.
    pub async fn send(&self, payload: &Value) -> Result<(), String> {
        self.client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload.to_string().into_bytes()))
            .send()
            .await
            .map(drop)
            .map_err(|e| aws_sdk_lambda::error::DisplayErrorContext(e).to_string())
    }
}
