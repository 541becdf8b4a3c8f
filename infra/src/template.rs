//! Creates the template's DynamoDB tables (keys, indexes, TTL, streams) in
//! the emulator, read from `template.yaml`.

use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use yaml_serde::Value;

/// `template.yaml` at the workspace root.
pub fn template_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("infra/ sits in the workspace")
        .join("template.yaml")
}

/// The whole template, parsed (CloudFormation's short forms such as `!Ref`
/// stay tagged values).
pub fn document(template: &Path) -> Value {
    let text = std::fs::read_to_string(template).expect("template.yaml is readable");
    yaml_serde::from_str(&text).expect("template.yaml parses")
}

pub use yaml_serde;

/// A table as the template declares it.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub logical_id: String,
    pub definition: Value,
}

/// Every `AWS::DynamoDB::Table` in the template.
pub fn tables(template: &Path) -> Vec<TableSpec> {
    let text = std::fs::read_to_string(template).expect("template.yaml is readable");
    let doc: Value = yaml_serde::from_str(&text).expect("template.yaml parses");
    let resources = doc
        .get("Resources")
        .and_then(Value::as_mapping)
        .expect("template has Resources");
    resources
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some("AWS::DynamoDB::Table"))
        .map(|(k, r)| TableSpec {
            logical_id: k.as_str().unwrap_or_default().to_string(),
            definition: r.get("Properties").cloned().unwrap_or(Value::Null),
        })
        .collect()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn keys(v: &Value) -> Vec<KeySchemaElement> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(s(k, "AttributeName"))
                .key_type(KeyType::from(s(k, "KeyType")))
                .build()
                .expect("key schema element")
        })
        .collect()
}

/// Creates `spec` as table `name`, with its TTL setting.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, spec: &TableSpec, name: &str) {
    let d = &spec.definition;
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attribute_definitions(d)))
        .set_key_schema(Some(keys(d.get("KeySchema").unwrap_or(&Value::Null))));
    for g in d
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        req = req.global_secondary_indexes(global_index(g));
    }
    if let Some(stream) = d.get("StreamSpecification") {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(s(stream, "StreamViewType")))
                .build()
                .expect("stream spec"),
        );
    }
    req.send().await.unwrap_or_else(|e| {
        panic!(
            "create table {name}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(e)
        )
    });
    if let Some(ttl) = d.get("TimeToLiveSpecification") {
        set_time_to_live(client, name, ttl).await;
    }
}

fn attribute_definitions(d: &Value) -> Vec<AttributeDefinition> {
    d.get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(s(a, "AttributeName"))
                .attribute_type(ScalarAttributeType::from(s(a, "AttributeType")))
                .build()
                .expect("attribute definition")
        })
        .collect::<Vec<_>>()
}

/// One of `GlobalSecondaryIndexes`.
fn global_index(g: &Value) -> GlobalSecondaryIndex {
    let projection = g.get("Projection").unwrap_or(&Value::Null);
    let mut p = Projection::builder()
        .projection_type(ProjectionType::from(s(projection, "ProjectionType")));
    for a in projection
        .get("NonKeyAttributes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        p = p.non_key_attributes(a.as_str().unwrap_or_default());
    }
    GlobalSecondaryIndex::builder()
        .index_name(s(g, "IndexName"))
        .set_key_schema(Some(keys(g.get("KeySchema").unwrap_or(&Value::Null))))
        .projection(p.build())
        .build()
        .expect("index")
}

async fn set_time_to_live(client: &aws_sdk_dynamodb::Client, name: &str, ttl: &Value) {
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(s(ttl, "AttributeName"))
                .enabled(ttl.get("Enabled").and_then(Value::as_bool).unwrap_or(false))
                .build()
                .expect("ttl spec"),
        )
        .send()
        .await
        .expect("ttl setting");
}

/// The environment variable that names a table in the functions.
pub fn env_var_for(logical_id: &str) -> Option<&'static str> {
    match logical_id {
        "StatesTable" => Some("STATES_TABLE"),
        "ConnectionsTable" => Some("CONNECTIONS_TABLE"),
        "EventsTable" => Some("EVENTS_TABLE"),
        "GraphTable" => Some("GRAPH_TABLE"),
        "PostsTable" => Some("POSTS_TABLE"),
        "EndpointsTable" => Some("ENDPOINTS_TABLE"),
        _ => None,
    }
}
