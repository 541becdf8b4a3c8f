use authorize::{Authorize, AuthorizeConfig};
use lambda_http::Error;
use shared::aws_sdk_dynamodb::Client as DynamoDb;
use shared::Clock;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start::<AuthorizeConfig>().await?;
    Authorize::new(config, DynamoDb::new(&aws), Clock::system())
        .serve()
        .await
}
