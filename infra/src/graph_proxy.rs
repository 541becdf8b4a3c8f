//! The Graph proxy wired to the local stack, with its KMS calls counted (one
//! decryption per connection per five minutes is a promise worth checking).

use aws_sdk_kms::config::Builder as KmsConfig;
use graph::{Door, Graph, GraphConfig};
use shared::vault::KmsDataKeys;
use shared::Clock;
use shared::FromEnv;

use crate::calls::Calls;
use crate::stack::Stack;

/// A proxy (one warm container of the HTTP door's function) and the counter
/// of its KMS calls.
pub fn graph(stack: &Stack, clock: Clock) -> (Graph<KmsDataKeys>, Calls) {
    graph_door(stack, clock, Door::Http)
}

/// A warm container of one door's function (`GRAPH_DOOR`).
pub fn graph_door(stack: &Stack, clock: Clock, door: Door) -> (Graph<KmsDataKeys>, Calls) {
    let mut config = GraphConfig::from_env(stack.env_reader()).expect("graph config");
    config.door = door;
    let kms_calls = Calls::default();
    let kms = aws_sdk_kms::Client::from_conf(
        KmsConfig::from(&stack.aws)
            .interceptor(kms_calls.clone())
            .build(),
    );
    let keys = KmsDataKeys::new(kms, &config.token_key_id);
    let graph = Graph::new(
        config,
        stack.dynamodb.clone(),
        aws_sdk_secretsmanager::Client::new(&stack.aws),
        keys,
        clock,
    )
    .expect("an HTTPS client");
    (graph, kms_calls)
}

/// The example DM bot's proxy, plugged in directly (in AWS it invokes the
/// `GraphFunctionArn` with IAM).
pub struct InProcess<'a>(pub &'a Graph<KmsDataKeys>);

impl dm_bot::GraphProxy for InProcess<'_> {
    async fn invoke(
        &self,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, dm_bot::ProxyError> {
        Ok(self.0.handle_invocation(payload).await)
    }
}

/// An events-table item as a DynamoDB Streams `INSERT` record.
pub fn stream_record(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    sequence: usize,
) -> serde_json::Value {
    use aws_sdk_dynamodb::types::AttributeValue;
    let image: serde_json::Map<String, serde_json::Value> = item
        .iter()
        .filter_map(|(k, v)| match v {
            AttributeValue::S(s) => Some((k.clone(), serde_json::json!({"S": s}))),
            AttributeValue::N(n) => Some((k.clone(), serde_json::json!({"N": n}))),
            _ => None,
        })
        .collect();
    serde_json::json!({"eventName": "INSERT",
        "dynamodb": {"SequenceNumber": sequence.to_string(), "NewImage": image}})
}
