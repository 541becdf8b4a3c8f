//! `GET /connections` and `DELETE /connections/{provider}/{account_id}`.
//!
//! A delete removes the connection, its share of the account's ownership and
//! writes `connection.deleted` in one transaction, which also keeps the Meta
//! user → account link (a tombstone, for the event retention) so a later
//! data-deletion request of the person still covers the account. This
//! function may not use
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
use shared::store::{ConnectionStore, Event, UserConnections};
use shared::{http, Clock, EnvReader, FromEnv, Provider};

#[derive(Clone, Debug)]
pub struct ConnectionsConfig {
    pub store: StoreConfig,
    /// The refresh function, invoked asynchronously after a delete.
    pub refresh_function: String,
}

impl FromEnv for ConnectionsConfig {
    fn read(env: &mut EnvReader) -> Option<Self> {
        Some(Self {
            store: StoreConfig::read(env),
            refresh_function: env.optional("REFRESH_FUNCTION"),
        })
    }
}

/// How `refresh` learns there is a deleted connection to finish.
pub enum Nudge {
    /// Async Lambda invoke (in AWS).
    Lambda(AsyncInvoke),
    /// Nothing: the next scheduled run finishes it (tests, local stack).
    None,
}

pub struct Connections<S = ConnectionStore> {
    config: ConnectionsConfig,
    store: S,
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
        let store = config.store.connections(&dynamodb);
        Self::with_store(config, store, nudge, clock)
    }
}

impl<S: UserConnections> Connections<S> {
    /// The handler over any store (an in-memory one in unit tests).
    pub fn with_store(config: ConnectionsConfig, store: S, nudge: Nudge, clock: Clock) -> Self {
        Self {
            config,
            store,
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

impl<S: UserConnections> Connections<S> {
    /// Serves this handler on the Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`):
    /// what `main` does once it has built the handler, and what the tests run
    /// against a local Runtime API.
    pub async fn serve(&self) -> Result<(), lambda_http::Error> {
        http::serve(|req| self.handle(req)).await
    }
}

#[cfg(test)]
mod tests {
    //! The handler's decisions with an in-memory store: no server. The
    //! DynamoDB side (the delete's transaction, the owner claim) is tested
    //! against moto in `tests/tests/refresh.rs`.

    use std::sync::Mutex;

    use serde_json::Value;
    use shared::store::{StoreError, Stored};
    use shared::vault::SealedToken;
    use time::{macros::datetime, Duration, OffsetDateTime};

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-21 10:00 UTC);

    /// Connections in memory, with the failure a test is about.
    #[derive(Default)]
    struct Memory {
        rows: Mutex<Vec<Stored>>,
        events: Mutex<Vec<Event>>,
        fault: Option<Fault>,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Fault {
        /// Every call fails, as in a store outage.
        Down,
        /// `delete` finds the row gone (deleted meanwhile by another request).
        GoneMeanwhile,
    }

    impl Memory {
        fn with(rows: Vec<Stored>, fault: Option<Fault>) -> Self {
            Self {
                rows: Mutex::new(rows),
                fault,
                ..Self::default()
            }
        }

        fn check(&self) -> Result<(), StoreError> {
            match self.fault {
                Some(Fault::Down) => Err(StoreError("the table is down".into())),
                _ => Ok(()),
            }
        }
    }

    impl UserConnections for Memory {
        async fn list_for_user(&self, user_id: &str) -> Result<Vec<Connection>, StoreError> {
            self.check()?;
            let rows = self.rows.lock().unwrap();
            let mine = rows.iter().filter(|(c, _)| c.user_id == user_id);
            Ok(mine.map(|(c, _)| c.clone()).collect())
        }

        async fn get(
            &self,
            user_id: &str,
            provider: Provider,
            account_id: &str,
        ) -> Result<Option<Stored>, StoreError> {
            self.check()?;
            let rows = self.rows.lock().unwrap();
            Ok(rows
                .iter()
                .find(|(c, _)| shared::testing::is_connection(c, user_id, provider, account_id))
                .cloned())
        }

        async fn delete(
            &self,
            conn: &Connection,
            _token: Option<&SealedToken>,
            event: &Event,
            _now: OffsetDateTime,
        ) -> Result<bool, StoreError> {
            self.check()?;
            if self.fault == Some(Fault::GoneMeanwhile) {
                return Ok(false);
            }
            self.rows.lock().unwrap().retain(|(c, _)| c != conn);
            self.events.lock().unwrap().push(event.clone());
            Ok(true)
        }
    }

    fn conn(user: &str, account: &str, connected_at: OffsetDateTime) -> Stored {
        let username = format!("name.{account}");
        let conn = Connection {
            webhooks_subscribed: true,
            token_expires_at: Some(connected_at + Duration::days(60)),
            version: 1,
            ..Connection::new(user, Provider::Instagram, account, &username, connected_at)
        };
        (conn, Some(shared::testing::sealed_token()))
    }

    fn handler(store: Memory) -> Connections<Memory> {
        let config = ConnectionsConfig {
            store: StoreConfig {
                connections_table: "connections".into(),
                events_table: "events".into(),
                event_retention: std::time::Duration::from_secs(86_400),
            },
            refresh_function: String::new(),
        };
        Connections::with_store(config, store, Nudge::None, Clock::fixed(NOW))
    }

    /// An API Gateway (HTTP API, v2) request, signed in as `user` if any.
    fn request(method: &str, path: &str, user: Option<&str>) -> Request {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut event = serde_json::json!({
            "version": "2.0",
            "routeKey": format!("{method} {path}"),
            "rawPath": path,
            "rawQueryString": "",
            "headers": {},
            "requestContext": {
                "accountId": "1", "apiId": "unit", "domainName": "api.example.com",
                "domainPrefix": "api", "requestId": "r", "routeKey": "-", "stage": "$default",
                "time": "21/Nov/2026:10:00:00 +0000", "timeEpoch": 0,
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "unit"}
            },
            "isBase64Encoded": false
        });
        if let [_, provider, account] = segments[..] {
            event["pathParameters"] = json!({"provider": provider, "account_id": account});
        }
        if let Some(user) = user {
            event["requestContext"]["authorizer"] = json!({"jwt": {"claims": {"sub": user}}});
        }
        lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
    }

    async fn call(h: &Connections<Memory>, req: Request) -> (StatusCode, Value) {
        let resp = h.handle(req).await;
        let body = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
            Body::Binary(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
            Body::Empty => Value::Null,
            _ => Value::Null,
        };
        (resp.status(), body)
    }

    #[tokio::test]
    async fn the_list_is_the_callers_only_oldest_first_and_never_carries_a_token() {
        let h = handler(Memory::with(
            vec![
                conn("ada", "2", NOW - Duration::days(1)),
                conn("bob", "3", NOW - Duration::days(9)),
                conn("ada", "1", NOW - Duration::days(5)),
            ],
            None,
        ));
        let (status, body) = call(&h, request("GET", "/connections", Some("ada"))).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<&str> = body["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["account_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["1", "2"]);
        assert!(!body.to_string().contains("never shown"));
        assert_eq!(body["connections"][0]["status"], "active");
    }

    #[tokio::test]
    async fn a_delete_removes_the_callers_connection_with_its_event() {
        let h = handler(Memory::with(vec![conn("ada", "1", NOW)], None));
        let del = request("DELETE", "/connections/instagram/1", Some("ada"));
        assert_eq!(call(&h, del).await.0, StatusCode::NO_CONTENT);
        assert!(h.store.rows.lock().unwrap().is_empty());
        let events = h.store.events.lock().unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["connection.deleted"]);
        assert_eq!(events[0].occurred_at, NOW);
    }

    #[tokio::test]
    async fn another_users_or_an_unknown_connection_is_not_found_and_stays() {
        let h = handler(Memory::with(vec![conn("bob", "1", NOW)], None));
        for path in [
            "/connections/instagram/1",
            "/connections/instagram/9",
            "/connections/tiktok/1",
        ] {
            let (status, body) = call(&h, request("DELETE", path, Some("ada"))).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::NOT_FOUND, Some("not_found"))
            );
        }
        assert_eq!(h.store.rows.lock().unwrap().len(), 1);
        assert!(h.store.events.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_connection_deleted_meanwhile_is_not_found() {
        let h = handler(Memory::with(
            vec![conn("ada", "1", NOW)],
            Some(Fault::GoneMeanwhile),
        ));
        let del = request("DELETE", "/connections/instagram/1", Some("ada"));
        assert_eq!(call(&h, del).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_store_outage_is_a_server_error_and_deletes_nothing() {
        let h = handler(Memory::with(vec![conn("ada", "1", NOW)], Some(Fault::Down)));
        for req in [
            request("GET", "/connections", Some("ada")),
            request("DELETE", "/connections/instagram/1", Some("ada")),
        ] {
            let (status, body) = call(&h, req).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(body["error"], "server_error");
        }
        assert_eq!(h.store.rows.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn no_user_is_unauthenticated_and_other_methods_are_refused() {
        let h = handler(Memory::with(vec![conn("ada", "1", NOW)], None));
        let (status, body) = call(&h, request("GET", "/connections", None)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
        );
        let (status, _) = call(&h, request("POST", "/connections", Some("ada"))).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
