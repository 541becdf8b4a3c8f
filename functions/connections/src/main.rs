use connections::{Connections, ConnectionsConfig, Nudge};
use lambda_http::Error;
use shared::{Clock, EnvReader};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = ConnectionsConfig::from_env(EnvReader::from_env()).inspect_err(|e| {
        tracing::error!(error = %e, "refusing to start");
    })?;
    let aws = shared::aws_config().await;
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
