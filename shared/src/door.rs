//! A function deployed once per door (the Graph proxy, publishing): which
//! door this one is, and whether an invocation is an API Gateway event that
//! the backend door must refuse (CONTRACT.md, "Proxy amendments").

use serde_json::Value;

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
}
