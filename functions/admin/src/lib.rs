//! `admin`: the `/admin/endpoints...` routes of the outbound webhooks.
//! API Gateway lets only SigV4-signed calls through (`AWS_IAM`); the handler
//! also refuses a request that carries no IAM identity.

use lambda_http::http::{Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use shared::http;
use shared::outbound::config::OutboundConfig;
use shared::vault::{DataKeys, KmsDataKeys, TokenVault};
use shared::{Clock, EnvReader, FromEnv};

mod attempts;
mod endpoints;
#[cfg(test)]
mod handler_tests;
pub mod input;
pub mod replays;
mod store;

pub use store::{AdminStore, Stores};

#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub outbound: OutboundConfig,
    /// `EVENTS_TABLE`: what replays read.
    pub events_table: String,
    pub event_retention: time::Duration,
    /// `DELIVERY_QUEUE_URL`: where a replay job starts.
    pub queue_url: String,
}

impl FromEnv for AdminConfig {
    fn read(env: &mut EnvReader) -> Option<Self> {
        let retention = shared::config::event_retention(env);
        Some(Self {
            outbound: OutboundConfig::read(env),
            events_table: shared::config::table(env, "EVENTS_TABLE"),
            event_retention: time::Duration::try_from(retention)
                .unwrap_or(time::Duration::days(14)),
            queue_url: env.required("DELIVERY_QUEUE_URL"),
        })
    }
}

pub struct Admin<K = KmsDataKeys, S = Stores> {
    pub(crate) config: AdminConfig,
    pub(crate) store: S,
    pub(crate) vault: TokenVault<K>,
    pub(crate) clock: Clock,
}

/// The caller's IAM ARN, as API Gateway's `AWS_IAM` authorization found it.
pub fn iam_caller(req: &Request) -> Option<String> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => {
            ctx.authorizer.as_ref()?.iam.as_ref()?.user_arn.clone()
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

pub(crate) fn not_found() -> Response<Body> {
    http::error(StatusCode::NOT_FOUND, "not_found", "No such endpoint.")
}

pub(crate) fn server_error(e: impl std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, "admin request failed");
    http::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "Try again.",
    )
}

pub(crate) fn bad_request(code: &str) -> Response<Body> {
    http::error(StatusCode::BAD_REQUEST, code, "See docs/contract.md.")
}

impl<K: DataKeys> Admin<K> {
    pub fn new(
        config: AdminConfig,
        dynamodb: &shared::aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        keys: K,
        clock: Clock,
    ) -> Self {
        let store = Stores {
            endpoints: config.outbound.store(dynamodb),
            dynamodb: dynamodb.clone(),
            events_table: config.events_table.clone(),
            sqs,
            queue_url: config.queue_url.clone(),
        };
        Self::with_store(config, store, keys, clock)
    }
}

impl<K: DataKeys, S: AdminStore> Admin<K, S> {
    /// The handler over any store (the unit tests' is in memory).
    pub fn with_store(config: AdminConfig, store: S, keys: K, clock: Clock) -> Self {
        Self {
            config,
            store,
            vault: TokenVault::new(keys),
            clock,
        }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        if iam_caller(&req).is_none() {
            return http::error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Sign the request (SigV4).",
            );
        }
        let path = req.raw_http_path().to_string();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let body = req.body().as_ref().to_vec();
        match (req.method().clone(), segs.as_slice()) {
            (Method::POST, ["admin", "endpoints"]) => self.create(&body).await,
            (Method::GET, ["admin", "endpoints"]) => self.list().await,
            (Method::GET, ["admin", "endpoints", id]) => self.get(id).await,
            (Method::PATCH, ["admin", "endpoints", id]) => self.patch(id, &body).await,
            (Method::DELETE, ["admin", "endpoints", id]) => self.delete(id).await,
            (Method::POST, ["admin", "endpoints", id, "rotate-secret"]) => self.rotate(id).await,
            (Method::GET, ["admin", "endpoints", id, "attempts"]) => self.attempts(id, &req).await,
            (Method::POST, ["admin", "replays"]) => self.create_replay(&body).await,
            (Method::GET, ["admin", "replays", id]) => self.get_replay(id).await,
            _ => http::error(StatusCode::NOT_FOUND, "not_found", "No such route."),
        }
    }

    /// Serves on the Lambda Runtime API.
    pub async fn serve(self) -> Result<(), lambda_http::Error> {
        let this = std::sync::Arc::new(self);
        http::serve(move |req| {
            let this = this.clone();
            async move { this.handle(req).await }
        })
        .await
    }
}
