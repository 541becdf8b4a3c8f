use lambda_http::Error;
use shared::Clock;
use webhook::{Launch, Webhook, WebhookConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start(WebhookConfig::from_env).await?;
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
