use std::convert::Infallible;

use lambda_http::{run, service_fn, Error, Request};
use shared::{Clock, EnvReader};
use webhook::{Webhook, WebhookConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = WebhookConfig::from_env(EnvReader::from_env()).inspect_err(|e| {
        tracing::error!(error = %e, "refusing to start");
    })?;
    let aws = shared::aws_config().await;
    let handler = Webhook::new(
        config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        shared::aws_sdk_secretsmanager::Client::new(&aws),
        Clock::system(),
    );
    let handler = &handler;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(handler.handle(req).await)
    }))
    .await
}
