use authorize::{Authorize, AuthorizeConfig};
use lambda_http::Error;
use shared::aws_sdk_dynamodb::Client as DynamoDb;
use shared::Clock;

// One event at a time per environment: a current-thread runtime starts no
// worker threads (tasks a handler spawns still run concurrently on it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start::<AuthorizeConfig>().await?;
    shared::startup::built(Authorize::new(config, DynamoDb::new(&aws), Clock::system()))?
        .serve()
        .await
}
