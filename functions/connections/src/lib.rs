//! `GET /connections` and `DELETE /connections/{provider}/{account_id}`.
//!
//! A delete removes the connection, its share of the account's ownership and
//! writes `connection.deleted` in one transaction. This function may not use
//! KMS, so the Meta side (unsubscribe, revoke) is finished by `refresh`,
//! which is nudged at once; the sealed token waits for it in a cleanup job
//! and is destroyed right after.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::config::StoreConfig;
use shared::connection::{Connection, Lifecycle};
use shared::invoke::AsyncInvoke;
use shared::logging::tag;
use shared::store::{ConnectionStore, Event};
use shared::{http, Clock, EnvReader, FromEnv, Provider};

#[derive(Clone, Debug)]
pub struct ConnectionsConfig {
    pub store: StoreConfig,
    /// The refresh function, invoked asynchronously after a delete.
    pub refresh_function: String,
}

impl FromEnv for ConnectionsConfig {
    fn read(env: &mut EnvReader) -> Self {
        Self {
            store: StoreConfig::read(env),
            refresh_function: env.optional("REFRESH_FUNCTION"),
        }
    }
}

/// How `refresh` learns there is a deleted connection to finish.
pub enum Nudge {
    /// Async Lambda invoke (in AWS).
    Lambda(AsyncInvoke),
    /// Nothing: the next scheduled run finishes it (tests, local stack).
    None,
}

pub struct Connections {
    config: ConnectionsConfig,
    store: ConnectionStore,
    nudge: Nudge,
    clock: Clock,
}

impl Connections {
    pub fn new(
        config: ConnectionsConfig,
        dynamodb: shared::aws_sdk_dynamodb::Client,
        nudge: Nudge,
        clock: Clock,
    ) -> Self {
        Self {
            store: config.store.connections(&dynamodb),
            config,
            nudge,
            clock,
        }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        let Some(user_id) = http::user_id(&req) else {
            return http::unauthenticated();
        };
        match *req.method() {
            Method::GET => self.list(&user_id).await,
            Method::DELETE => {
                let provider = http::path_param(&req, "provider", 1);
                let account = http::path_param(&req, "account_id", 2);
                self.delete(&user_id, provider.as_deref(), account.as_deref())
                    .await
            }
            _ => http::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Use GET or DELETE.",
            ),
        }
    }

    async fn list(&self, user_id: &str) -> Response<Body> {
        match self.store.list_for_user(user_id).await {
            Ok(mut conns) => {
                conns.sort_by(|a, b| {
                    (a.connected_at, &a.account_id).cmp(&(b.connected_at, &b.account_id))
                });
                let views: Vec<_> = conns.iter().map(Connection::view).collect();
                http::json(StatusCode::OK, &json!({ "connections": views }))
            }
            Err(e) => {
                tracing::error!(error = %e, "could not list connections");
                http::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "Try again.",
                )
            }
        }
    }

    async fn delete(
        &self,
        user_id: &str,
        provider: Option<&str>,
        account_id: Option<&str>,
    ) -> Response<Body> {
        let not_found = || http::error(StatusCode::NOT_FOUND, "not_found", "No such connection.");
        let (Some(provider), Some(account_id)) = (provider.and_then(Provider::parse), account_id)
        else {
            return not_found();
        };
        // Only the caller's own rows are ever read: another user's is absent.
        let (conn, token) = match self.store.get(user_id, provider, account_id).await {
            Ok(Some(found)) => found,
            Ok(None) => return not_found(),
            Err(e) => {
                tracing::error!(error = %e, "could not read a connection");
                return http::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "Try again.",
                );
            }
        };
        let now = self.clock.now();
        let event = Event::lifecycle(
            Lifecycle::Deleted,
            &conn,
            now,
            self.config.store.event_retention,
        );
        match self.store.delete(&conn, token.as_ref(), &event, now).await {
            Ok(true) => {
                tracing::info!(%provider, account_id, user = %tag(user_id), "connection deleted");
                if token.is_some() {
                    self.nudge_refresh().await;
                }
                http::no_content()
            }
            Ok(false) => not_found(),
            Err(e) => {
                tracing::error!(error = %e, "could not delete a connection");
                http::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "Try again.",
                )
            }
        }
    }

    async fn nudge_refresh(&self) {
        if let Nudge::Lambda(refresh) = &self.nudge {
            let payload = serde_json::json!({"source": "connections.delete"});
            if let Err(e) = refresh.send(&payload).await {
                // The scheduled run will finish it.
                tracing::warn!(error = %e, "could not nudge refresh");
            }
        }
    }
}

impl Connections {
    /// Serves this handler on the Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`):
    /// what `main` does once it has built the handler, and what the tests run
    /// against a local Runtime API.
    pub async fn serve(&self) -> Result<(), lambda_http::Error> {
        lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
            Ok::<_, std::convert::Infallible>(self.handle(req).await)
        }))
        .await
    }
}
