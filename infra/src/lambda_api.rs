//! A local Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`)
//! that records every asynchronous invocation the functions make and can be
//! told to fail, so tests see what AWS would be asked to run (the data-deletion
//! job, the refresh nudge, a job's next round) and what a function does when
//! Lambda refuses. The real SDK client talks to it: nothing is mocked above
//! the wire.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use shared::invoke::AsyncInvoke;

/// One invocation as Lambda received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    pub function: String,
    /// `X-Amz-Invocation-Type` (`Event` for an asynchronous one).
    pub invocation_type: String,
    pub payload: Value,
}

#[derive(Default)]
struct Inner {
    accepted: Vec<Invocation>,
    refused: usize,
    failing: bool,
}

/// The double; dropped with its server.
pub struct LambdaApi {
    inner: Arc<Mutex<Inner>>,
    endpoint: String,
    server: tokio::task::JoinHandle<()>,
}

impl LambdaApi {
    /// Starts it on a free loopback port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Lambda API");
        let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            inner,
            endpoint,
            server,
        }
    }

    /// A client of this API built on `aws` (credentials and region), without
    /// retries, so one refused call is one refusal.
    pub fn client(&self, aws: &aws_config::SdkConfig) -> aws_sdk_lambda::Client {
        let config = aws_sdk_lambda::config::Builder::from(aws)
            .endpoint_url(&self.endpoint)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_lambda::Client::from_conf(config)
    }

    /// `function` invoked asynchronously through this API.
    pub fn function(&self, aws: &aws_config::SdkConfig, function: &str) -> AsyncInvoke {
        AsyncInvoke::new(&self.client(aws), function)
    }

    /// From now on, every invocation is refused (503 ServiceException) or
    /// accepted again.
    pub fn fail(&self, failing: bool) {
        self.inner.lock().unwrap().failing = failing;
    }

    /// The invocations accepted so far, oldest first.
    pub fn accepted(&self) -> Vec<Invocation> {
        self.inner.lock().unwrap().accepted.clone()
    }

    /// How many invocations were refused.
    pub fn refused(&self) -> usize {
        self.inner.lock().unwrap().refused
    }
}

impl Drop for LambdaApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn invoke(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let mut inner = inner.lock().unwrap();
    if inner.failing {
        inner.refused += 1;
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"Type":"Service","message":"Lambda is unavailable (test double)"}"#,
        )
            .into_response();
        resp.headers_mut()
            .insert("x-amzn-errortype", "ServiceException".parse().unwrap());
        return resp;
    }
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_string();
    let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let asynchronous = invocation_type == "Event";
    inner.accepted.push(Invocation {
        function: name,
        invocation_type,
        payload,
    });
    if asynchronous {
        StatusCode::ACCEPTED.into_response()
    } else {
        (StatusCode::OK, "null").into_response()
    }
}
