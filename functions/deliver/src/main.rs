// The runtime loop around the function makes a deeply nested future type.
#![recursion_limit = "256"]

use std::sync::Arc;

use deliver::{Deliver, DeliverConfig};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::outbound::resolver::Lookup;
use shared::vault::KmsDataKeys;
use shared::Clock;

// One event at a time per environment: a current-thread runtime starts no
// worker threads (tasks a handler spawns still run concurrently on it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start::<DeliverConfig>().await?;
    let keys = KmsDataKeys::new(
        shared::aws_sdk_kms::Client::new(&aws),
        &config.outbound.endpoint_key_id,
    );
    let deliver = Arc::new(shared::startup::built(Deliver::new(
        config,
        &shared::aws_sdk_dynamodb::Client::new(&aws),
        aws_sdk_sqs::Client::new(&aws),
        keys,
        Lookup::System,
        Clock::system(),
    ))?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let deliver = deliver.clone();
        async move { Ok::<Value, Error>(deliver.handle(event.payload).await) }
    }))
    .await
}
