//! The two doors, each its own Lambda function (`PUBLISH_DOOR`): the HTTP
//! routes (API Gateway payload 2.0, the user's JWT), and direct invocation
//! (the product's backend, IAM), which also takes the every-minute
//! schedule's event and the run's own continuations. An API Gateway event
//! sent by invocation is refused (`400 bad_request`), never read as a
//! user's call.

use lambda_http::http::StatusCode;
use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::continuation::{Continuation, Deadline};
use shared::http;
use shared::invoke::AsyncInvoke;
use shared::vault::DataKeys;
use shared::Provider;

use crate::{Action, Answer, PostsApi, Publisher, Request as PostsRequest};

/// Stop starting posts this long before the Lambda deadline.
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(20);
/// A run chains at most this many invocations for what it had no time for.
pub const CONTINUATION: Continuation = Continuation { max_rounds: 10 };

pub use shared::door::Door;
use shared::door::{api_gateway_response, backend_call, is_api_gateway_event};

fn unknown_provider() -> Answer {
    shared::door::unknown_provider().into()
}

fn invalid(message: &str) -> Answer {
    Answer::error(400, "invalid_request", message)
}

/// `/connections/{provider}/{account_id}/posts[/{post_id} | /uploads]` as
/// a request.
fn http_request(req: &Request, user_id: String) -> Result<PostsRequest, Answer> {
    let parts: Vec<&str> = req
        .raw_http_path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    let (provider, account_id, rest) = match parts.as_slice() {
        ["connections", p, a, "posts", rest @ ..] if rest.len() <= 1 => (*p, *a, rest),
        _ => {
            return Err(invalid(
                "The route is /connections/{provider}/{account_id}/posts.",
            ))
        }
    };
    let provider = Provider::parse(provider).ok_or_else(unknown_provider)?;
    let body = || {
        serde_json::from_slice(http::body_bytes(req))
            .map_err(|_| invalid("The body is not valid JSON."))
    };
    let action = match (req.method().as_str(), rest) {
        ("POST", []) => Action::Create {
            post: body()?,
            idempotency_key: req
                .headers()
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        },
        ("POST", ["uploads"]) => Action::Upload { upload: body()? },
        ("GET", []) => Action::List {
            status: http::query_param(req, "status"),
            cursor: http::query_param(req, "cursor"),
        },
        ("GET", [post_id]) => Action::Get {
            post_id: post_id.to_string(),
        },
        ("DELETE", [post_id]) => Action::Cancel {
            post_id: post_id.to_string(),
        },
        _ => {
            return Err(Answer::error(
                405,
                "method_not_allowed",
                "Not a method of this route.",
            ))
        }
    };
    Ok(PostsRequest {
        user_id,
        provider,
        account_id: account_id.to_string(),
        action,
    })
}

/// A direct invocation's payload (CONTRACT.md, "Publishing").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    pub action: String,
    pub provider: String,
    pub account_id: String,
    pub user_id: String,
    #[serde(default)]
    pub post_id: Option<String>,
    #[serde(default)]
    pub post: Option<Value>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub cursor: Option<String>,
    /// `{"kind", "content_type", "bytes"}` of an `upload`.
    #[serde(default)]
    pub upload: Option<Value>,
}

fn invoke_request(payload: Value) -> Result<PostsRequest, Answer> {
    let send = "{action, provider, account_id, user_id, ...}";
    let r: InvokeRequest = backend_call(payload, send).map_err(Answer::from)?;
    let provider = Provider::parse(&r.provider).ok_or_else(unknown_provider)?;
    let post_id = || {
        r.post_id
            .clone()
            .ok_or_else(|| invalid("post_id is required for this action."))
    };
    let action = match r.action.as_str() {
        "create" => Action::Create {
            post: r.post.clone().unwrap_or(Value::Null),
            idempotency_key: r.idempotency_key.clone(),
        },
        "get" => Action::Get {
            post_id: post_id()?,
        },
        "list" => Action::List {
            status: r.status.clone(),
            cursor: r.cursor.clone(),
        },
        "cancel" => Action::Cancel {
            post_id: post_id()?,
        },
        "upload" => Action::Upload {
            upload: r.upload.clone().unwrap_or(Value::Null),
        },
        _ => {
            return Err(invalid(
                "action must be create, get, list, cancel or upload.",
            ))
        }
    };
    Ok(PostsRequest {
        user_id: r.user_id,
        provider,
        account_id: r.account_id,
        action,
    })
}

/// The every-minute schedule's event (or the run's continuation).
pub fn is_run(payload: &Value) -> bool {
    payload.get("publish_continuation").is_some()
        || (payload.get("source").and_then(Value::as_str) == Some("aws.events")
            && payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event"))
}

fn round_of(payload: &Value) -> u64 {
    payload
        .pointer("/publish_continuation/round")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn http_response(answer: Answer) -> Response<Body> {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = if answer.status == 204 {
        http::no_content()
    } else {
        http::json(status, &answer.body)
    };
    if answer.replayed {
        resp.headers_mut().insert(
            "idempotent-replayed",
            lambda_http::http::HeaderValue::from_static("true"),
        );
    }
    resp
}

impl<K: DataKeys + Send + Sync + 'static, S: PostsApi> Publisher<K, S> {
    /// The HTTP door.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let Some(user_id) = http::user_id(&req) else {
            return http::unauthenticated();
        };
        match http_request(&req, user_id) {
            Ok(r) => http_response(self.answer(r).await),
            Err(answer) => http_response(answer),
        }
    }

    /// The invocation door: `{"status", "body", "replayed"}`.
    pub async fn handle_invocation(&self, payload: Value) -> Value {
        let answer = match invoke_request(payload) {
            Ok(r) => self.answer(r).await,
            Err(answer) => answer,
        };
        json!({"status": answer.status, "body": answer.body, "replayed": answer.replayed})
    }
}

impl<K: DataKeys + Send + Sync + 'static> Publisher<K> {
    /// One scheduled run, continued by invoking the function itself when
    /// it stopped before everything due was done.
    /// A run that could not read its index fails the invocation (the
    /// function's `Errors` alarm); what is due stays due.
    pub async fn scheduled(
        &self,
        payload: &Value,
        deadline: Deadline,
        itself: Option<AsyncInvoke>,
    ) -> Result<Value, shared::store::StoreError> {
        let round = round_of(payload);
        let summary = self.run(deadline).await?;
        self.inner.vault.emit_with_usage(summary.metrics());
        let left = summary.left_for_next_run;
        let payload = |n| json!({"publish_continuation": {"round": n}});
        CONTINUATION
            .carry_on_scheduled("publish", itself.as_ref(), round, left, payload)
            .await;
        Ok(serde_json::to_value(summary).unwrap_or(Value::Null))
    }

    /// Serves this function's door on the Lambda Runtime API.
    pub async fn serve(
        &self,
        lambda: Option<&aws_sdk_lambda::Client>,
    ) -> Result<(), lambda_http::Error> {
        let door = self.inner.config.door;
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
            let payload = event.payload;
            match door {
                Door::Invoke if is_run(&payload) => {
                    let deadline =
                        Deadline::of_invocation(event.context.deadline(), DEADLINE_MARGIN);
                    let itself =
                        lambda.map(|l| AsyncInvoke::new(l, &event.context.invoked_function_arn));
                    Ok::<_, lambda_http::Error>(self.scheduled(&payload, deadline, itself).await?)
                }
                Door::Invoke => Ok(self.handle_invocation(payload).await),
                Door::Http if is_api_gateway_event(&payload) => {
                    let req = lambda_http::request::from_str(&payload.to_string())?;
                    Ok(api_gateway_response(self.handle(req).await))
                }
                Door::Http => Err("the HTTP door takes API Gateway events only".into()),
            }
        }))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_gateway_event_is_never_a_backend_call() {
        let forged = json!({"version": "2.0", "routeKey": "POST /connections/{provider}/{account_id}/posts",
            "rawPath": "/connections/instagram/1/posts", "requestContext": {"authorizer": {"jwt": {"claims": {"sub": "victim"}}}}});
        let answer = invoke_request(forged).unwrap_err();
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (400, Some("bad_request"))
        );
    }

    #[test]
    fn invocations_become_requests_or_clear_errors() {
        let r = invoke_request(
            json!({"action": "cancel", "provider": "instagram", "account_id": "1",
            "user_id": "u1", "post_id": "post_1"}),
        )
        .unwrap();
        assert!(matches!(r.action, Action::Cancel { post_id } if post_id == "post_1"));
        for bad in [
            json!({"action": "create", "provider": "instagram", "account_id": "1"}),
            json!({"action": "create", "provider": "instagram", "account_id": "1", "user_id": ""}),
            json!({"action": "get", "provider": "instagram", "account_id": "1", "user_id": "u"}),
            json!({"action": "delete", "provider": "instagram", "account_id": "1", "user_id": "u"}),
            json!({"action": "get", "provider": "instagram", "account_id": "1", "user_id": "u", "post_id": "p", "x": 1}),
        ] {
            assert_eq!(
                invoke_request(bad.clone()).unwrap_err().status,
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_schedule_and_continuations_are_runs_and_nothing_else_is() {
        assert!(is_run(
            &json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
        ));
        assert!(is_run(&json!({"publish_continuation": {"round": 2}})));
        assert_eq!(round_of(&json!({"publish_continuation": {"round": 2}})), 2);
        assert!(!is_run(&json!({"action": "list", "provider": "instagram"})));
    }
}
