//! The two doors into the proxy, each its own Lambda function
//! (CONTRACT.md, "Proxy amendments": the backend door is its own door): the
//! HTTP route (API Gateway payload 2.0, the user's JWT) and direct invocation
//! (the product's backend, IAM). Each reads only its own shape, and both
//! become one [`ProxyRequest`] and leave as one [`ProxyAnswer`].

use lambda_http::http::header::{CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::{HeaderName, HeaderValue, StatusCode};
use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shared::graph::policy::GraphMethod;
use shared::graph::scrub::paging_as_routes;
use shared::http;
use shared::meta::proxy::GraphBody;
use shared::vault::DataKeys;
use shared::Provider;

use crate::{Graph, ProxyAnswer, ProxyRequest, ProxyStore, MAX_BODY_BYTES};

pub use shared::door::Door;
use shared::door::{api_gateway_response, backend_call, is_api_gateway_event};

/// A direct invocation's payload (CONTRACT.md, "Backend").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    pub provider: String,
    pub account_id: String,
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: Option<Map<String, Value>>,
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The owner the backend acts for: required.
    pub user_id: String,
}

fn invalid(message: &str) -> ProxyAnswer {
    ProxyAnswer::error(400, "invalid_request", message)
}

fn unknown_provider() -> ProxyAnswer {
    shared::door::unknown_provider().into()
}

fn bad_method() -> ProxyAnswer {
    ProxyAnswer::error(
        400,
        "path_not_allowed",
        "the method must be GET, POST or DELETE",
    )
}

/// `key=value` pairs of a raw query string (or form body), decoded.
fn pairs(raw: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The Graph path of `/connections/{provider}/{account_id}/graph/{path+}`,
/// raw (still percent-encoded, which the policy refuses).
fn graph_path(raw_path: &str) -> Option<(String, String, String)> {
    let mut parts = raw_path.trim_start_matches('/').splitn(5, '/');
    let (c, provider, account, g) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (c == "connections" && g == "graph").then(|| {
        (
            provider.to_string(),
            account.to_string(),
            parts.next().unwrap_or_default().to_string(),
        )
    })
}

fn http_body(req: &Request) -> Result<Option<GraphBody>, ProxyAnswer> {
    let raw = http::body_bytes(req);
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if raw.is_empty() || raw.len() > MAX_BODY_BYTES {
        Ok(None)
    } else if content_type.starts_with("application/json") {
        let json =
            serde_json::from_slice(raw).map_err(|_| invalid("The body is not valid JSON."))?;
        Ok(Some(GraphBody::Json(json)))
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let text = std::str::from_utf8(raw).map_err(|_| invalid("The form is not UTF-8."))?;
        Ok(Some(GraphBody::Form(pairs(text))))
    } else {
        Err(invalid(
            "Send the body as application/json or application/x-www-form-urlencoded.",
        ))
    }
}

/// The HTTP door's request, parsed once.
fn http_request(req: &Request, user_id: String) -> Result<ProxyRequest, ProxyAnswer> {
    let Some((provider, account_id, path)) = graph_path(req.raw_http_path()) else {
        return Err(invalid(
            "The route is /connections/{provider}/{account_id}/graph/{path}.",
        ));
    };
    let provider = Provider::parse(&provider).ok_or_else(unknown_provider)?;
    let method = GraphMethod::parse(req.method().as_str()).ok_or_else(bad_method)?;
    Ok(ProxyRequest {
        door: Door::Http,
        user_id,
        provider,
        account_id,
        method,
        path,
        query: pairs(req.uri().query().unwrap_or_default()),
        body: http_body(req)?,
        body_len: http::body_bytes(req).len(),
        idempotency_key: req
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    })
}

impl<K: DataKeys, S: ProxyStore> Graph<K, S> {
    /// The HTTP door.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let Some(user_id) = http::user_id(&req) else {
            refused_at_the_door(Door::Http, req.method().as_str(), 401, "unauthenticated");
            return http::unauthenticated();
        };
        let request = match http_request(&req, user_id) {
            Ok(r) => r,
            Err(answer) => {
                refused_at_the_door(
                    Door::Http,
                    req.method().as_str(),
                    answer.status,
                    answer.error_code(),
                );
                return http_response(answer);
            }
        };
        let (provider, account_id) = (request.provider, request.account_id.clone());
        let mut answer = self.proxy(request).await;
        // Meta's paging, as this door's own route for the same connection.
        paging_as_routes(&mut answer.body, provider.as_str(), &account_id);
        http_response(answer)
    }

    /// The invocation door: `{"status", "headers", "body", "replayed"}`.
    /// Only ever the backend shape: an API Gateway event sent by invocation
    /// is refused (`400 bad_request`), never read as a user's call.
    pub async fn handle_invocation(&self, payload: Value) -> Value {
        let method = payload
            .get("method")
            .and_then(Value::as_str)
            .filter(|m| m.len() <= 10 && m.bytes().all(|b| b.is_ascii_alphabetic()))
            .unwrap_or("")
            .to_ascii_uppercase();
        let answer = match invoke_request(payload) {
            Ok(r) => self.proxy(r).await,
            Err(answer) => {
                refused_at_the_door(Door::Invoke, &method, answer.status, answer.error_code());
                answer
            }
        };
        let headers: Map<String, Value> = answer
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "status": answer.status,
            "headers": headers,
            "body": answer.body,
            "replayed": answer.replayed,
        })
    }

    /// Serves this function's one door on the Lambda Runtime API: the HTTP
    /// door takes only API Gateway's events (anything else fails the
    /// invocation), the invoke door only the backend shape.
    pub async fn serve(&self) -> Result<(), lambda_http::Error> {
        let door = self.config.door;
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
            let payload = event.payload;
            match door {
                Door::Invoke => Ok(self.handle_invocation(payload).await),
                Door::Http if is_api_gateway_event(&payload) => {
                    let req = lambda_http::request::from_str(&payload.to_string())?;
                    let resp = self.handle(req).await;
                    Ok::<_, lambda_http::Error>(api_gateway_response(resp))
                }
                Door::Http => {
                    refused_at_the_door(Door::Http, "", 400, "bad_request");
                    Err("the HTTP door takes API Gateway events only".into())
                }
            }
        }))
        .await
    }
}

/// The log line of a call refused before it became a proxy request (no
/// caller, a body or payload that can't be read): every call writes one.
/// Nothing of the request but its method is logged.
fn refused_at_the_door(door: Door, method: &str, status: u16, error: &str) {
    tracing::info!(door = door.as_str(), method, status, error, "graph call");
}

fn invoke_request(payload: Value) -> Result<ProxyRequest, ProxyAnswer> {
    let body_len = payload.get("body").map_or(0, |b| b.to_string().len());
    let send = "{provider, account_id, user_id, method, path, ...}";
    let r: InvokeRequest = backend_call(payload, send).map_err(ProxyAnswer::from)?;
    let provider = Provider::parse(&r.provider).ok_or_else(unknown_provider)?;
    let method = GraphMethod::parse(&r.method).ok_or_else(bad_method)?;
    let query = r
        .query
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(_) | Value::Bool(_) => Ok((k, v.to_string())),
            _ => Err(invalid(
                "Query values must be strings, numbers or booleans.",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ProxyRequest {
        door: Door::Invoke,
        user_id: r.user_id,
        provider,
        account_id: r.account_id,
        method,
        path: r.path.trim_start_matches('/').to_string(),
        query,
        body: r.body.filter(|b| !b.is_null()).map(GraphBody::Json),
        body_len,
        idempotency_key: r.idempotency_key,
    })
}

/// Whether a payload has API Gateway's shape (an HTTP API or REST event).
fn http_response(answer: ProxyAnswer) -> Response<Body> {
    let mut resp = http::json(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY),
        &answer.body,
    );
    let headers = resp.headers_mut();
    for (k, v) in &answer.headers {
        let (Ok(name), Ok(value)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v))
        else {
            continue;
        };
        if name == RETRY_AFTER || k.starts_with("x-") {
            headers.insert(name, value);
        }
    }
    if answer.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_path_is_what_follows_graph() {
        assert_eq!(
            graph_path("/connections/instagram/1784/graph/me/media"),
            Some(("instagram".into(), "1784".into(), "me/media".into()))
        );
        assert_eq!(
            graph_path("/connections/facebook/1/graph/p1/messages/x/y"),
            Some(("facebook".into(), "1".into(), "p1/messages/x/y".into()))
        );
        assert_eq!(
            graph_path("/connections/instagram/1/graph/"),
            Some(("instagram".into(), "1".into(), "".into()))
        );
        assert_eq!(graph_path("/connections/instagram/1"), None);
        assert_eq!(graph_path("/other/instagram/1/graph/me"), None);
    }

    #[test]
    fn invocations_become_requests_or_clear_errors() {
        let r = invoke_request(
            json!({"provider": "instagram", "account_id": "1", "method": "POST",
            "path": "/me/messages", "query": {"limit": 5, "fields": "id"},
            "body": {"recipient": {"id": "2"}}, "idempotency_key": "evt-1", "user_id": "u1"}),
        )
        .unwrap();
        assert_eq!(r.path, "me/messages");
        assert_eq!((r.door, r.user_id.as_str()), (Door::Invoke, "u1"));
        assert_eq!(
            (r.provider, r.method),
            (Provider::Instagram, GraphMethod::Post)
        );
        assert!(r.query.contains(&("limit".into(), "5".into())));
        assert_eq!(r.idempotency_key.as_deref(), Some("evt-1"));
        assert!(matches!(r.body, Some(GraphBody::Json(_))));

        for bad in [
            json!({"provider": "instagram"}),
            json!({"provider": "instagram", "account_id": "1", "method": "GET", "path": "me", "user_id": "u", "surprise": 1}),
            json!({"provider": "instagram", "account_id": "1", "method": "GET", "path": "me", "user_id": "u", "query": {"a": [1]}}),
            json!({"provider": "instagram", "account_id": "1", "method": "GET", "path": "me"}),
            json!({"provider": "instagram", "account_id": "1", "method": "GET", "path": "me", "user_id": ""}),
            json!({"provider": "instagram", "account_id": "1", "method": "GET", "path": "me", "user_id": null}),
            json!("not an object"),
        ] {
            let answer = invoke_request(bad.clone()).unwrap_err();
            assert_eq!(answer.status, 400, "{bad}");
            assert_eq!(answer.body["error"], "invalid_request");
        }
    }

    #[test]
    fn an_api_gateway_event_is_never_a_backend_call() {
        let forged = json!({"version": "2.0", "routeKey": "GET /connections/{provider}/{account_id}/graph/{path+}",
            "rawPath": "/connections/instagram/1/graph/me", "requestContext": {"authorizer": {"jwt": {"claims": {"sub": "victim"}}}}});
        let answer = invoke_request(forged).unwrap_err();
        assert_eq!((answer.status, answer.error_code()), (400, "bad_request"));
        let rest = json!({"httpMethod": "GET", "path": "/x", "requestContext": {}});
        assert_eq!(
            invoke_request(rest).unwrap_err().error_code(),
            "bad_request"
        );
    }

    #[test]
    fn doors_are_told_apart() {
        assert!(is_api_gateway_event(
            &json!({"version": "2.0", "routeKey": "GET /x", "requestContext": {}})
        ));
        assert!(!is_api_gateway_event(
            &json!({"provider": "instagram", "account_id": "1", "method": "GET", "path": "me"})
        ));
    }
}
