//! The two doors into the proxy: the HTTP route (API Gateway payload 2.0,
//! the user's JWT) and direct invocation (the product's backend, IAM). Both
//! become one [`ProxyRequest`] and leave as one [`ProxyAnswer`].

use lambda_http::http::header::{CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::{HeaderName, HeaderValue, StatusCode};
use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shared::http;
use shared::meta::proxy::GraphBody;
use shared::vault::DataKeys;

use crate::{Caller, Graph, ProxyAnswer, ProxyRequest, MAX_BODY_BYTES};

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
    #[serde(default)]
    pub user_id: Option<String>,
}

fn invalid(message: &str) -> ProxyAnswer {
    ProxyAnswer {
        status: 400,
        headers: Vec::new(),
        body: json!({"error": "invalid_request", "message": message}),
        replayed: false,
    }
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

impl<K: DataKeys> Graph<K> {
    /// The HTTP door.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let Some(user_id) = http::user_id(&req) else {
            refused_at_the_door("http", req.method().as_str(), 401, "unauthenticated");
            return http::unauthenticated();
        };
        let answer = match self.http_request(&req, user_id) {
            Ok(r) => self.proxy(r).await,
            Err(answer) => {
                refused_at_the_door(
                    "http",
                    req.method().as_str(),
                    answer.status,
                    error_of(&answer),
                );
                answer
            }
        };
        http_response(&answer)
    }

    fn http_request(&self, req: &Request, user_id: String) -> Result<ProxyRequest, ProxyAnswer> {
        let Some((provider, account_id, path)) = graph_path(req.raw_http_path()) else {
            return Err(invalid(
                "The route is /connections/{provider}/{account_id}/graph/{path}.",
            ));
        };
        let raw = http::body_bytes(req);
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let body = if raw.is_empty() || raw.len() > MAX_BODY_BYTES {
            None
        } else if content_type.starts_with("application/json") {
            Some(GraphBody::Json(
                serde_json::from_slice(raw).map_err(|_| invalid("The body is not valid JSON."))?,
            ))
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            let text = std::str::from_utf8(raw).map_err(|_| invalid("The form is not UTF-8."))?;
            Some(GraphBody::Form(pairs(text)))
        } else {
            return Err(invalid(
                "Send the body as application/json or application/x-www-form-urlencoded.",
            ));
        };
        Ok(ProxyRequest {
            caller: Caller::User(user_id),
            provider,
            account_id,
            method: req.method().as_str().to_string(),
            path,
            query: pairs(req.uri().query().unwrap_or_default()),
            body,
            body_len: raw.len(),
            idempotency_key: req
                .headers()
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        })
    }

    /// The invocation door: `{"status", "headers", "body", "replayed"}`.
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
                refused_at_the_door("invoke", &method, answer.status, error_of(&answer));
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

    /// Serves both doors on the Lambda Runtime API: an API Gateway event is
    /// the HTTP door, anything else a direct invocation.
    pub async fn serve(&self) -> Result<(), lambda_http::Error> {
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
            let payload = event.payload;
            if is_api_gateway_event(&payload) {
                let req = lambda_http::request::from_str(&payload.to_string())?;
                let resp = self.handle(req).await;
                Ok::<_, lambda_http::Error>(api_gateway_response(resp))
            } else {
                Ok(self.handle_invocation(payload).await)
            }
        }))
        .await
    }
}

fn error_of(answer: &ProxyAnswer) -> &str {
    answer
        .body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The log line of a call refused before it became a proxy request (no
/// caller, a body or payload that can't be read): every call writes one.
/// Nothing of the request but its method is logged.
fn refused_at_the_door(door: &str, method: &str, status: u16, error: &str) {
    tracing::info!(door, method, status, error, "graph call");
}

fn invoke_request(payload: Value) -> Result<ProxyRequest, ProxyAnswer> {
    let body_len = payload.get("body").map_or(0, |b| b.to_string().len());
    let r: InvokeRequest = serde_json::from_value(payload).map_err(|e| {
        // serde's message names the field, never a value.
        invalid(&format!(
            "The invocation payload is not of the documented shape: {e}"
        ))
    })?;
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
        caller: Caller::Backend { user_id: r.user_id },
        provider: r.provider,
        account_id: r.account_id,
        method: r.method,
        path: r.path.trim_start_matches('/').to_string(),
        query,
        body: r.body.filter(|b| !b.is_null()).map(GraphBody::Json),
        body_len,
        idempotency_key: r.idempotency_key,
    })
}

fn is_api_gateway_event(payload: &Value) -> bool {
    payload.get("requestContext").is_some() && payload.get("routeKey").is_some()
}

fn http_response(answer: &ProxyAnswer) -> Response<Body> {
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

/// A response as API Gateway (payload 2.0) takes it from a Lambda.
fn api_gateway_response(resp: Response<Body>) -> Value {
    let headers: Map<String, Value> = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), Value::String(v.to_str().ok()?.to_string()))))
        .collect();
    let body = match resp.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    json!({
        "statusCode": resp.status().as_u16(),
        "headers": headers,
        "body": body,
        "isBase64Encoded": false,
    })
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
            "body": {"recipient": {"id": "2"}}, "idempotency_key": "evt-1"}),
        )
        .unwrap();
        assert_eq!(r.path, "me/messages");
        assert_eq!(r.caller, Caller::Backend { user_id: None });
        assert!(r.query.contains(&("limit".into(), "5".into())));
        assert_eq!(r.idempotency_key.as_deref(), Some("evt-1"));
        assert!(matches!(r.body, Some(GraphBody::Json(_))));

        for bad in [
            json!({"provider": "instagram"}),
            json!({"provider": "instagram", "account_id": "1", "method": "GET", "path": "me", "surprise": 1}),
            json!({"provider": "instagram", "account_id": "1", "method": "GET", "path": "me", "query": {"a": [1]}}),
            json!("not an object"),
        ] {
            let answer = invoke_request(bad.clone()).unwrap_err();
            assert_eq!(answer.status, 400, "{bad}");
            assert_eq!(answer.body["error"], "invalid_request");
        }
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
