// The runtime loop around the function makes a deeply nested future type.
#![recursion_limit = "256"]

use lambda_http::Error;
use publish::{PublishConfig, Publisher};
use shared::vault::KmsDataKeys;
use shared::{aws_sdk_dynamodb, aws_sdk_kms, aws_sdk_secretsmanager, Clock};

// One event at a time per environment: a current-thread runtime starts no
// worker threads (tasks a handler spawns still run concurrently on it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start::<PublishConfig>().await?;
    let bucket = &config.media_bucket;
    let media = (!bucket.is_empty()).then(|| publish::uploads::MediaBucket::new(&aws, bucket));
    let keys = KmsDataKeys::new(aws_sdk_kms::Client::new(&aws), &config.token_key_id);
    let publisher = shared::startup::built(Publisher::new(
        config,
        aws_sdk_dynamodb::Client::new(&aws),
        aws_sdk_secretsmanager::Client::new(&aws),
        keys,
        Clock::system(),
        media,
    ))?;
    publisher
        .serve(Some(&aws_sdk_lambda::Client::new(&aws)))
        .await
}
