use lambda_http::Error;
use refresh::{RefreshConfig, Refresher};
use shared::vault::KmsDataKeys;
use shared::{Clock, EnvReader};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = RefreshConfig::from_env(EnvReader::from_env()).inspect_err(|e| {
        tracing::error!(error = %e, "refusing to start");
    })?;
    let aws = shared::aws_config().await;
    let keys = KmsDataKeys::new(shared::aws_sdk_kms::Client::new(&aws), &config.token_key_id);
    let refresher = Refresher::new(
        config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        shared::aws_sdk_secretsmanager::Client::new(&aws),
        keys,
        Clock::system(),
    );
    refresher
        .serve(Some(&aws_sdk_lambda::Client::new(&aws)))
        .await
}
