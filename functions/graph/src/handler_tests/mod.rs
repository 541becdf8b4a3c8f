//! The proxy's paths that end before Meta, without a server: the store in
//! memory ([`memory::Memory`]), a fixed clock, and Meta's URLs at a port
//! where nothing listens, so a call that reached Meta would answer `502`,
//! which no test here expects. What Meta answers, and what only DynamoDB
//! can show, stays in the integration tests (`tests/tests/graph*`).

mod memory;
mod paths;

use serde_json::{json, Value};
use shared::connection::Connection;
use shared::graph::policy::GraphMethod;
use shared::meta::proxy::GraphBody;
use shared::secrets::SecretsCache;
use shared::store::Stored;
use shared::time::{Duration, OffsetDateTime};
use shared::vault::KmsDataKeys;
use shared::{Clock, EnvReader, FromEnv, Provider};
use time::macros::datetime;

use crate::{Door, Graph, GraphConfig, ProxyAnswer, ProxyRequest};
use memory::Memory;

const NOW: OffsetDateTime = datetime!(2026-11-21 10:00 UTC);
const ACCOUNT: &str = "17841400000000001";

fn config() -> GraphConfig {
    let nowhere = "http://127.0.0.1:9";
    let vars = [
        ("CONNECTIONS_TABLE", "connections"),
        ("EVENTS_TABLE", "events"),
        ("GRAPH_TABLE", "graph"),
        ("TOKEN_KEY_ID", "alias/tokens"),
        ("META_SECRET_ID", "meta"),
        ("INSTAGRAM_APP_ID", "1000"),
        ("GRAPH_DOOR", "invoke"),
        ("META_FACEBOOK_URL", nowhere),
        ("META_GRAPH_URL", nowhere),
        ("META_INSTAGRAM_URL", nowhere),
        ("META_INSTAGRAM_API_URL", nowhere),
        ("META_INSTAGRAM_GRAPH_URL", nowhere),
    ];
    let vars = vars.map(|(k, v)| (k.to_string(), v.to_string()));
    GraphConfig::from_env(EnvReader::from_map(vars.into())).expect("a complete configuration")
}

/// The proxy over `store`. Its KMS client is never called: no test here
/// opens a token.
fn proxy(store: Memory) -> Graph<KmsDataKeys, Memory> {
    let kms = shared::aws_sdk_kms::Config::builder()
        .behavior_version(shared::aws_sdk_kms::config::BehaviorVersion::latest())
        .region(shared::aws_sdk_kms::config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let keys = KmsDataKeys::new(shared::aws_sdk_kms::Client::from_conf(kms), "alias/tokens");
    let secrets = SecretsCache::in_memory(json!({"instagram_app_secret": "s"}).to_string());
    Graph::with_store(config(), store, secrets, keys, Clock::fixed(NOW)).unwrap()
}

/// `user`'s Instagram connection to `account`, with a sealed token.
fn conn(user: &str, account: &str) -> Stored {
    let conn = Connection {
        version: 1,
        ..Connection::new(
            user,
            Provider::Instagram,
            account,
            "name",
            NOW - Duration::days(3),
        )
    };
    (conn, Some(shared::testing::sealed_token()))
}

/// A backend's request as `ada`.
fn request(method: GraphMethod, path: &str, body: Option<Value>) -> ProxyRequest {
    let body_len = body.as_ref().map_or(0, |b| b.to_string().len());
    ProxyRequest {
        door: Door::Invoke,
        user_id: "ada".into(),
        provider: Provider::Instagram,
        account_id: ACCOUNT.into(),
        method,
        path: path.into(),
        query: Vec::new(),
        body: body.map(GraphBody::Json),
        body_len,
        idempotency_key: None,
    }
}

/// The answer's status and error code.
fn said(answer: &ProxyAnswer) -> (u16, Option<&str>) {
    (answer.status, answer.body["error"].as_str())
}
