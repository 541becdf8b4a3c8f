use connections::{Connections, ConnectionsConfig, Nudge};
use lambda_http::Error;
use shared::invoke::AsyncInvoke;
use shared::Clock;

// One event at a time per environment: a current-thread runtime starts no
// worker threads (tasks a handler spawns still run concurrently on it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (config, aws) = shared::startup::start::<ConnectionsConfig>().await?;
    let lambda = aws_sdk_lambda::Client::new(&aws);
    let nudge =
        AsyncInvoke::named(&lambda, &config.refresh_function).map_or(Nudge::None, Nudge::Lambda);
    let handler = Connections::new(
        config,
        shared::aws_sdk_dynamodb::Client::new(&aws),
        nudge,
        Clock::system(),
    );
    handler.serve().await
}
