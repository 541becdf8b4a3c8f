use admin::{Admin, AdminConfig};
use lambda_http::Error;
use shared::vault::KmsDataKeys;
use shared::Clock;

// One event at a time per environment: a current-thread runtime starts no
// worker threads (tasks a handler spawns still run concurrently on it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start::<AdminConfig>().await?;
    let keys = KmsDataKeys::new(
        shared::aws_sdk_kms::Client::new(&aws),
        &config.outbound.endpoint_key_id,
    );
    let dynamodb = shared::aws_sdk_dynamodb::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    Admin::new(config, &dynamodb, sqs, keys, Clock::system())
        .serve()
        .await
}
