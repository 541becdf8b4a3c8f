// The runtime loop around the proxy makes a deeply nested future type.
#![recursion_limit = "256"]

use graph::{Graph, GraphConfig};
use lambda_http::Error;
use shared::vault::KmsDataKeys;
use shared::{Clock, EnvReader};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = GraphConfig::from_env(EnvReader::from_env()).inspect_err(|e| {
        tracing::error!(error = %e, "refusing to start");
    })?;
    let aws = shared::aws_config().await;
    let keys = KmsDataKeys::new(shared::aws_sdk_kms::Client::new(&aws), &config.token_key_id);
    let graph = Graph::new(
        config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        shared::aws_sdk_secretsmanager::Client::new(&aws),
        keys,
        Clock::system(),
    );
    graph.serve().await
}
