use lambda_http::Error;
use shared::{Clock, EnvReader};
use webhook::{Launch, Webhook, WebhookConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = WebhookConfig::from_env(EnvReader::from_env()).inspect_err(|e| {
        tracing::error!(error = %e, "refusing to start");
    })?;
    let aws = shared::aws_config().await;
    // In AWS the template names the data-deletion function; without one (a
    // local run) the job runs in this process.
    let launch = if config.data_deletion_function.is_empty() {
        Launch::InProcess
    } else {
        Launch::Lambda(
            aws_sdk_lambda::Client::new(&aws),
            config.data_deletion_function.clone(),
        )
    };
    let handler = Webhook::new(
        config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        shared::aws_sdk_secretsmanager::Client::new(&aws),
        Clock::system(),
    )
    .with_launch(launch);
    handler.serve().await
}
