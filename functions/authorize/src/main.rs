use authorize::{Authorize, AuthorizeConfig};
use lambda_http::Error;
use shared::{Clock, EnvReader};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let config = AuthorizeConfig::from_env(EnvReader::from_env()).inspect_err(|e| {
        tracing::error!(error = %e, "refusing to start");
    })?;
    let aws = shared::aws_config().await;
    let handler = Authorize::new(
        config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        Clock::system(),
    );
    handler.serve().await
}
