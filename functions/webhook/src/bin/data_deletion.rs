//! The `data-deletion` function: finishes data-deletion requests
//! asynchronously (see `webhook::deletion`).

use lambda_http::Error;
use shared::Clock;
use webhook::deletion::{DeletionConfig, DeletionJob};

// One event at a time per environment: a current-thread runtime starts no
// worker threads (tasks a handler spawns still run concurrently on it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start::<DeletionConfig>().await?;
    let job = DeletionJob::new(
        &config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        Clock::system(),
    );
    job.serve(&aws_sdk_lambda::Client::new(&aws)).await
}
