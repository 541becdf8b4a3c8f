use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_http::lambda_runtime::{self, service_fn, Error, LambdaEvent};
use refresh::{RefreshConfig, Refresher};
use serde_json::Value;
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
    let refresher = &refresher;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // The Lambda deadline, as an Instant.
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
        let summary = refresher.run(Instant::now() + left).await?;
        Ok::<_, Error>(serde_json::to_value(summary)?)
    }))
    .await
}
