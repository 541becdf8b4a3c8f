// The runtime loop around the proxy makes a deeply nested future type.
#![recursion_limit = "256"]

use graph::{Graph, GraphConfig};
use lambda_http::Error;
use shared::vault::KmsDataKeys;
use shared::{aws_sdk_dynamodb, aws_sdk_kms, aws_sdk_secretsmanager, Clock};

// One event at a time per environment: a current-thread runtime starts no
// worker threads (tasks a handler spawns still run concurrently on it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start::<GraphConfig>().await?;
    let keys = KmsDataKeys::new(aws_sdk_kms::Client::new(&aws), &config.token_key_id);
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    shared::startup::built(Graph::new(
        config,
        aws_sdk_dynamodb::Client::new(&aws),
        secrets,
        keys,
        Clock::system(),
    ))?
    .serve()
    .await
}
