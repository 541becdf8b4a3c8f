use callback::{Callback, CallbackConfig};
use lambda_http::Error;
use shared::vault::KmsDataKeys;
use shared::{Clock, EnvReader};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = CallbackConfig::from_env(EnvReader::from_env()).inspect_err(|e| {
        tracing::error!(error = %e, "refusing to start");
    })?;
    let aws = shared::aws_config().await;
    let keys = KmsDataKeys::new(shared::aws_sdk_kms::Client::new(&aws), &config.token_key_id);
    let handler = Callback::new(
        config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        shared::aws_sdk_secretsmanager::Client::new(&aws),
        keys,
        Clock::system(),
    );
    handler.serve().await
}
