use lambda_http::Error;
use refresh::{RefreshConfig, Refresher};
use shared::vault::KmsDataKeys;
use shared::Clock;

// One event at a time per environment: a current-thread runtime starts no
// worker threads (tasks a handler spawns still run concurrently on it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start::<RefreshConfig>().await?;
    let keys = KmsDataKeys::new(shared::aws_sdk_kms::Client::new(&aws), &config.token_key_id);
    let refresher = shared::startup::built(Refresher::new(
        config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        shared::aws_sdk_secretsmanager::Client::new(&aws),
        keys,
        Clock::system(),
    ))?;
    refresher
        .serve(Some(&aws_sdk_lambda::Client::new(&aws)))
        .await
}
