//! A function deployed once per door (the Graph proxy, publishing): which
//! door this one is, and whether an invocation is an API Gateway event that
//! the backend door must refuse (CONTRACT.md, "Proxy amendments").

use lambda_http::{Body, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// Which door a function is: the template deploys one function per door,
/// each with its own resource policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// API Gateway's events, with the user's JWT.
    Http,
    /// The product's backend, by direct invocation.
    Invoke,
}

impl Door {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "http" => Some(Self::Http),
            "invoke" => Some(Self::Invoke),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Invoke => "invoke",
        }
    }
}

/// An API Gateway event (HTTP API 2.0 or REST 1.0), which only API Gateway
/// may deliver: never accepted at a backend door.
pub fn is_api_gateway_event(payload: &Value) -> bool {
    payload.get("requestContext").is_some()
        && (payload.get("routeKey").is_some() || payload.get("httpMethod").is_some())
}

/// Why a backend door refused an invocation before it became a request:
/// the status, the contract's error code and a message for the developer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn invalid(message: String) -> Self {
        Self {
            status: 400,
            code: "invalid_request",
            message,
        }
    }
}

/// A backend door's payload read as `T` (which must hold `user_id` as a
/// string), checked as every backend door
/// checks it (CONTRACT.md, "Proxy amendments"): never an API Gateway event
/// (`send` says what to send instead), of the documented shape (serde's
/// message says what is wrong, to the caller who sent it), naming its
/// owner. The door then reads its provider ([`unknown_provider`]).
pub fn backend_call<T: DeserializeOwned>(payload: Value, send: &str) -> Result<T, Refusal> {
    if is_api_gateway_event(&payload) {
        return Err(Refusal {
            status: 400,
            code: "bad_request",
            message: format!("This is the backend door: send {send}, not an API Gateway event."),
        });
    }
    let owner = payload.get("user_id").and_then(Value::as_str);
    let named = owner.is_some_and(|o| !o.is_empty());
    let call: T = serde_json::from_value(payload).map_err(|e| {
        Refusal::invalid(format!(
            "The invocation payload is not of the documented shape: {e}"
        ))
    })?;
    if !named {
        return Err(Refusal::invalid(
            "user_id must name the connection's owner.".into(),
        ));
    }
    Ok(call)
}

/// A provider this service does not know (or does not offer), at any door.
pub fn unknown_provider() -> Refusal {
    Refusal {
        status: 404,
        code: "unknown_provider",
        message: "This provider is not available.".into(),
    }
}

/// A handler's response as API Gateway (payload 2.0) takes it from a
/// Lambda function that it invokes directly (an HTTP door served with
/// `lambda_runtime` rather than `lambda_http`).
pub fn api_gateway_response(resp: Response<Body>) -> Value {
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
    use serde_json::json;

    #[test]
    fn doors_read_back_and_api_gateway_events_are_told_apart() {
        for door in [Door::Http, Door::Invoke] {
            assert_eq!(Door::parse(door.as_str()), Some(door));
        }
        assert_eq!(Door::parse("HTTP"), None);
        assert!(is_api_gateway_event(
            &json!({"requestContext": {}, "routeKey": "GET /x"})
        ));
        assert!(is_api_gateway_event(
            &json!({"requestContext": {}, "httpMethod": "GET"})
        ));
        assert!(!is_api_gateway_event(
            &json!({"provider": "instagram", "requestContext": {}})
        ));
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Call {
        user_id: String,
        provider: String,
    }

    #[test]
    fn a_backend_call_is_of_its_shape_and_names_its_owner() {
        let call = |v: Value| backend_call::<Call>(v, "{user_id, provider}");
        let got = call(json!({"user_id": "ada", "provider": "facebook"})).unwrap();
        assert_eq!(
            (got.user_id.as_str(), got.provider.as_str()),
            ("ada", "facebook")
        );
        let refused = |v: Value| {
            let r = call(v).unwrap_err();
            (r.status, r.code)
        };
        let event = json!({"requestContext": {}, "routeKey": "$default"});
        assert_eq!(refused(event), (400, "bad_request"));
        let extra = json!({"user_id": "ada", "provider": "instagram", "token": "x"});
        assert_eq!(refused(extra), (400, "invalid_request"));
        assert_eq!(
            refused(json!({"user_id": "", "provider": "instagram"})),
            (400, "invalid_request")
        );
        assert_eq!(
            refused(json!({"user_id": 7, "provider": "instagram"})),
            (400, "invalid_request")
        );
        assert_eq!(unknown_provider().status, 404);
    }

    #[test]
    fn a_response_reaches_api_gateway_with_its_status_headers_and_body() {
        let resp = crate::http::error(
            lambda_http::http::StatusCode::CONFLICT,
            "outcome_unknown",
            "x",
        );
        let got = api_gateway_response(resp);
        assert_eq!(got["statusCode"], 409);
        assert_eq!(got["headers"]["content-type"], "application/json");
        assert_eq!(got["isBase64Encoded"], false);
        let body: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"], "outcome_unknown");
    }
}
