use connections::{Connections, ConnectionsConfig, Nudge};
use lambda_http::Error;
use shared::Clock;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start(ConnectionsConfig::from_env).await?;
    let nudge = if config.refresh_function.is_empty() {
        Nudge::None
    } else {
        Nudge::Lambda(
            aws_sdk_lambda::Client::new(&aws),
            config.refresh_function.clone(),
        )
    };
    let handler = Connections::new(
        config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        nudge,
        Clock::system(),
    );
    handler.serve().await
}
