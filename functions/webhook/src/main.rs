use lambda_http::Error;
use shared::invoke::AsyncInvoke;
use shared::Clock;
use webhook::{Launch, Webhook, WebhookConfig};

// One event at a time per environment: a current-thread runtime starts no
// worker threads (tasks a handler spawns still run concurrently on it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start::<WebhookConfig>().await?;
    // In AWS the template names the data-deletion function; without one (a
    // local run) the job runs in this process.
    let lambda = aws_sdk_lambda::Client::new(&aws);
    let launch = AsyncInvoke::named(&lambda, &config.data_deletion_function)
        .map_or(Launch::InProcess, Launch::Lambda);
    let handler = Webhook::new(
        config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        shared::aws_sdk_secretsmanager::Client::new(&aws),
        Clock::system(),
    )
    .with_launch(launch);
    handler.serve().await
}
