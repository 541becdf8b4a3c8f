use std::convert::Infallible;

use authorize::{Authorize, AuthorizeConfig};
use lambda_http::{run, service_fn, Error, Request};
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
    let handler = &handler;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(handler.handle(req).await)
    }))
    .await
}
