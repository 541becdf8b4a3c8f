use dm_bot::{handle, LambdaProxy};
use lambda_http::lambda_runtime::{self, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().json().without_time().init();
    let function = std::env::var("GRAPH_FUNCTION_ARN")
        .map_err(|_| "GRAPH_FUNCTION_ARN must name the Graph proxy function")?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let proxy = LambdaProxy {
        client: aws_sdk_lambda::Client::new(&aws),
        function,
    };
    let proxy = &proxy;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(handle(proxy, &event.payload).await)
    }))
    .await
}
