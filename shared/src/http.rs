//! HTTP helpers for API Gateway (payload 2.0) handlers: JSON bodies, errors,
//! redirects, cookies, the caller's identity and security headers.

use lambda_http::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use url::Url;

/// `Cache-Control: no-store`, `Referrer-Policy: no-referrer` and friends:
/// every response here follows from a secret, a state or a code.
pub fn secure_headers(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `status` with `body` (of `content_type`, if any) and [`secure_headers`].
fn respond(status: StatusCode, content_type: Option<&'static str>, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Some(t) = content_type {
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(t));
    }
    secure_headers(resp)
}

/// The `500` given when an answer could not be written.
const UNWRITABLE: &str =
    r#"{"error":"server_error","message":"The answer could not be written. Try again."}"#;

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(body) => respond(status, Some("application/json"), Body::Text(body)),
        Err(e) => {
            tracing::error!(error = %e, "an answer did not serialize");
            let body = Body::Text(UNWRITABLE.into());
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("application/json"),
                body,
            )
        }
    }
}

/// A plain-text answer.
pub fn text(status: StatusCode, body: String) -> Response<Body> {
    respond(status, Some("text/plain; charset=utf-8"), Body::Text(body))
}

/// `{"error": code, "message": text}`, the contract's error shape.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": code, "message": message }),
    )
}

pub fn no_content() -> Response<Body> {
    respond(StatusCode::NO_CONTENT, None, Body::Empty)
}

/// A `302` to `location`.
pub fn redirect(location: &Url) -> Response<Body> {
    let mut resp = respond(StatusCode::FOUND, None, Body::Empty);
    match HeaderValue::from_str(location.as_str()) {
        Ok(value) => {
            resp.headers_mut().insert(LOCATION, value);
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "a redirect URL is not a header value");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The answer could not be written. Try again.",
            )
        }
    }
}

/// `url` with `params` appended to its query, keeping what was there and the
/// fragment, each pair form-encoded.
pub fn with_query(url: &Url, params: &[(&str, &str)]) -> Url {
    let mut url = url.clone();
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in params {
            pairs.append_pair(k, v);
        }
    }
    url
}

/// The caller's user id: the JWT `sub` claim that the HTTP API authorizer
/// already verified. `None` when there is none.
pub fn user_id(req: &Request) -> Option<String> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx
            .authorizer
            .as_ref()?
            .jwt
            .as_ref()?
            .claims
            .get("sub")
            .filter(|s| !s.is_empty())
            .cloned(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Serves an HTTP handler on the Lambda Runtime API
/// (`AWS_LAMBDA_RUNTIME_API`): what each function's `serve` does once its
/// handler is built, and what the tests run against a local Runtime API.
pub async fn serve<F, Fut>(handle: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Response<Body>> + Send,
{
    lambda_http::run(lambda_http::service_fn(move |req: Request| {
        let answer = handle(req);
        async move { Ok::<_, std::convert::Infallible>(answer.await) }
    }))
    .await
}

pub fn unauthenticated() -> Response<Body> {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Sign in first: no user was found in the request.",
    )
}

/// The value of cookie `name` from the request's `Cookie` header(s).
pub fn cookie(req: &Request, name: &str) -> Option<String> {
    cookies(req, name).into_iter().next()
}

/// Every non-empty value sent under cookie `name`: a browser sends several
/// when cookies of one name were set for different paths or domains (one of
/// them possibly planted by a sibling subdomain).
pub fn cookies(req: &Request, name: &str) -> Vec<String> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// A `Set-Cookie` value for a secure, HttpOnly, `SameSite=Lax` cookie.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age_secs: u64) -> String {
    format!("{name}={value}; Max-Age={max_age_secs}; Path={path}; HttpOnly; Secure; SameSite=Lax")
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(name: &str, path: &str) -> String {
    format!(
        "{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path={path}; HttpOnly; Secure; SameSite=Lax"
    )
}

/// Adds a `Set-Cookie`; `Err` when `value` holds what a header may not.
pub fn add_set_cookie(
    resp: &mut Response<Body>,
    value: &str,
) -> Result<(), lambda_http::http::header::InvalidHeaderValue> {
    resp.headers_mut()
        .append(SET_COOKIE, HeaderValue::from_str(value)?);
    Ok(())
}

/// A path parameter set by API Gateway, falling back to the `n`-th segment
/// of the raw path so the handler also works behind a plain proxy.
pub fn path_param(req: &Request, name: &str, segment: usize) -> Option<String> {
    if let Some(v) = req.path_parameters_ref().and_then(|p| p.first(name)) {
        return Some(v.to_string());
    }
    req.raw_http_path()
        .split('/')
        .filter(|s| !s.is_empty())
        .nth(segment)
        .map(str::to_string)
}

pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_string)
}

/// The request body as bytes (API Gateway's base64 already undone).
pub fn body_bytes(req: &Request) -> &[u8] {
    req.body().as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_does_not_serialize_is_a_500_with_the_error_shape() {
        // JSON keys must be strings: serde_json refuses a map keyed by pairs.
        let unwritable = std::collections::BTreeMap::from([((1, 2), "x")]);
        let resp = json(StatusCode::OK, &unwritable);
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
        let Body::Text(text) = resp.body() else {
            panic!("a text body")
        };
        let body: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(body["error"], "server_error");
    }

    #[test]
    fn with_query_appends_and_keeps_existing_query_and_fragment() {
        let u = Url::parse("https://app.example.com/x?tab=a#frag").unwrap();
        let out = with_query(&u, &[("status", "connected"), ("account_id", "1 2&3")]);
        assert_eq!(
            out.as_str(),
            "https://app.example.com/x?tab=a&status=connected&account_id=1+2%263#frag"
        );
        let u = Url::parse("https://app.example.com").unwrap();
        let out = with_query(&u, &[("account_id", "1"), ("account_id", "2")]);
        assert_eq!(
            out.as_str(),
            "https://app.example.com/?account_id=1&account_id=2"
        );
    }

    #[test]
    fn cookies_are_found_among_others() {
        let req = lambda_http::http::Request::builder()
            .header(COOKIE, "a=1; oauth_binding=xyz; b=2")
            .body(Body::Empty)
            .unwrap();
        let req: Request = req;
        assert_eq!(cookie(&req, "oauth_binding").as_deref(), Some("xyz"));
        assert_eq!(cookie(&req, "missing"), None);
        let req: Request = lambda_http::http::Request::builder()
            .header(COOKIE, "f_1=planted; g=1; f_1=genuine")
            .body(Body::Empty)
            .unwrap();
        assert_eq!(cookies(&req, "f_1"), ["planted", "genuine"]);
    }

    #[test]
    fn cookie_attributes() {
        assert_eq!(
            set_cookie("n", "v", "/oauth/instagram", 600),
            "n=v; Max-Age=600; Path=/oauth/instagram; HttpOnly; Secure; SameSite=Lax"
        );
        assert!(clear_cookie("n", "/p").contains("Max-Age=0"));
    }
}
