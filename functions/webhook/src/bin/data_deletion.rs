//! The `data-deletion` function: finishes data-deletion requests
//! asynchronously (see `webhook::deletion`).

use lambda_http::Error;
use shared::{Clock, EnvReader};
use webhook::deletion::{DeletionConfig, DeletionJob};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = DeletionConfig::from_env(EnvReader::from_env()).inspect_err(|e| {
        tracing::error!(error = %e, "refusing to start");
    })?;
    let aws = shared::aws_config().await;
    let job = DeletionJob::new(
        &config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        Clock::system(),
    );
    job.serve(&aws_sdk_lambda::Client::new(&aws)).await
}
