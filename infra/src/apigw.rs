//! API Gateway HTTP API (payload format 2.0) events, built the way API
//! Gateway builds them, and turned into the `lambda_http::Request` a function
//! receives.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Map, Value};

/// The service's routes, as API Gateway route keys, and whether the JWT
/// authorizer guards them.
pub const ROUTES: &[(&str, &str, bool)] = &[
    ("POST", "/connect/{provider}", true),
    ("GET", "/oauth/{provider}/callback", false),
    ("POST", "/oauth/{provider}/complete", true),
    ("GET", "/connections", true),
    ("DELETE", "/connections/{provider}/{account_id}", true),
    ("GET", "/webhook", false),
    ("POST", "/webhook", false),
    ("POST", "/meta/deauthorize", false),
    ("POST", "/meta/data-deletion", false),
    ("GET", "/meta/data-deletion/{code}", false),
    (
        "GET",
        "/connections/{provider}/{account_id}/graph/{path+}",
        true,
    ),
    (
        "POST",
        "/connections/{provider}/{account_id}/graph/{path+}",
        true,
    ),
    (
        "DELETE",
        "/connections/{provider}/{account_id}/graph/{path+}",
        true,
    ),
];

/// A matched route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub template: &'static str,
    /// Guarded by the JWT authorizer.
    pub jwt: bool,
    pub params: Vec<(String, String)>,
}

impl Route {
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

/// The route a request matches, with its path parameters.
pub fn match_route(method: &str, path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    ROUTES.iter().find_map(|(m, template, auth)| {
        if *m != method {
            return None;
        }
        let tsegs: Vec<&str> = template.split('/').collect();
        // A greedy `{name+}` last segment takes one or more segments.
        let greedy = tsegs.last().is_some_and(|t| t.ends_with("+}"));
        if tsegs.len() != segs.len() && !(greedy && segs.len() > tsegs.len()) {
            return None;
        }
        let mut params = Vec::new();
        for (i, t) in tsegs.iter().enumerate() {
            let s = &segs[i];
            if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix("+}")) {
                let rest = segs[i..].join("/");
                if rest.is_empty() {
                    return None;
                }
                params.push((name.to_string(), percent_decode(&rest)));
                break;
            }
            if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                if s.is_empty() {
                    return None;
                }
                params.push((name.to_string(), percent_decode(s)));
            } else if t != s {
                return None;
            }
        }
        Some(Route {
            method: m,
            template,
            jwt: *auth,
            params,
        })
    })
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// One HTTP request as API Gateway would hand it to a function.
#[derive(Clone, Debug, Default)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub raw_query: String,
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<String>,
    pub body: Option<Vec<u8>>,
    /// Force `isBase64Encoded` (API Gateway does so for non-text bodies).
    pub base64: bool,
    /// JWT claims the authorizer verified (`sub`, ...).
    pub claims: Vec<(String, String)>,
}

impl ApiRequest {
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Self {
            method: method.to_string(),
            path: path.to_string(),
            raw_query: query.to_string(),
            ..Self::default()
        }
    }

    pub fn get(path_and_query: &str) -> Self {
        Self::new("GET", path_and_query)
    }

    pub fn post(path_and_query: &str) -> Self {
        Self::new("POST", path_and_query)
    }

    pub fn user(mut self, sub: &str) -> Self {
        self.claims.push(("sub".into(), sub.into()));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn cookie(mut self, pair: &str) -> Self {
        self.cookies.push(pair.to_string());
        self
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self.header("content-type", "application/json")
    }

    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }

    /// The payload 2.0 event JSON.
    pub fn event(&self) -> Value {
        let (route_key, path_params) = match match_route(&self.method, &self.path) {
            Some(route) => (route.key(), route.params),
            None => ("$default".to_string(), Vec::new()),
        };
        // API Gateway joins repeated headers with commas and lower-cases names.
        let mut headers = Map::new();
        for (k, v) in &self.headers {
            let k = k.to_ascii_lowercase();
            let joined = match headers.get(&k).and_then(Value::as_str) {
                Some(prev) => format!("{prev},{v}"),
                None => v.clone(),
            };
            headers.insert(k, Value::String(joined));
        }
        headers
            .entry("host")
            .or_insert_with(|| json!("api.example.com"));
        let mut query = Map::new();
        for (k, v) in url::form_urlencoded::parse(self.raw_query.as_bytes()) {
            let joined = match query.get(k.as_ref()).and_then(Value::as_str) {
                Some(prev) => format!("{prev},{v}"),
                None => v.into_owned(),
            };
            query.insert(k.into_owned(), Value::String(joined));
        }
        let text_body = self
            .body
            .as_ref()
            .filter(|_| !self.base64)
            .and_then(|b| String::from_utf8(b.clone()).ok());
        let (body, is_b64) = match (&self.body, text_body) {
            (None, _) => (Value::Null, false),
            (Some(_), Some(t)) => (Value::String(t), false),
            (Some(b), None) => (Value::String(STANDARD.encode(b)), true),
        };
        let authorizer = if self.claims.is_empty() {
            Value::Null
        } else {
            let claims: Map<String, Value> = self
                .claims
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({"jwt": {"claims": claims, "scopes": null}})
        };
        let mut ev = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": self.path,
            "rawQueryString": self.raw_query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": "api.example.com",
                "domainPrefix": "api",
                "http": {
                    "method": self.method,
                    "path": self.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": "local"
                },
                "requestId": "local-request",
                "routeKey": route_key,
                "stage": "$default",
                "time": "21/Nov/2026:10:00:00 +0000",
                "timeEpoch": 1_795_260_000_000u64
            },
            "isBase64Encoded": is_b64
        });
        let obj = ev.as_object_mut().expect("object");
        if !self.cookies.is_empty() {
            obj.insert("cookies".into(), json!(self.cookies));
        }
        if !query.is_empty() {
            obj.insert("queryStringParameters".into(), Value::Object(query));
        }
        if !path_params.is_empty() {
            let p: Map<String, Value> = path_params
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            obj.insert("pathParameters".into(), Value::Object(p));
        }
        if !body.is_null() {
            obj.insert("body".into(), body);
        }
        if !authorizer.is_null() {
            obj["requestContext"]
                .as_object_mut()
                .expect("object")
                .insert("authorizer".into(), authorizer);
        }
        ev
    }

    /// The request as `lambda_http` hands it to a handler in AWS.
    pub fn into_request(self) -> Request {
        lambda_http::request::from_str(&self.event().to_string()).expect("valid payload 2.0 event")
    }
}

/// Reading a handler's response the way a browser or frontend would.
pub trait ResponseExt {
    fn header_str(&self, name: &str) -> Option<String>;
    fn set_cookies(&self) -> Vec<String>;
    fn body_json(&self) -> Value;
    fn body_text(&self) -> String;
    fn location(&self) -> url::Url;
}

impl ResponseExt for Response<Body> {
    fn header_str(&self, name: &str) -> Option<String> {
        self.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }

    fn body_json(&self) -> Value {
        serde_json::from_slice(self.body().as_ref()).unwrap_or(Value::Null)
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(self.body().as_ref()).into_owned()
    }

    fn location(&self) -> url::Url {
        url::Url::parse(&self.header_str("location").expect("a Location header"))
            .expect("an absolute Location")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::RequestExt;

    #[test]
    fn routes_match_with_parameters() {
        let r = match_route("POST", "/connect/instagram").unwrap();
        assert_eq!(r.key(), "POST /connect/{provider}");
        assert!(r.jwt);
        assert_eq!(
            r.params,
            vec![("provider".to_string(), "instagram".to_string())]
        );
        assert!(match_route("GET", "/connect/instagram").is_none());
        assert!(match_route("GET", "/nope").is_none());
    }

    #[test]
    fn events_become_requests_with_claims_cookies_and_query() {
        let req = ApiRequest::get("/oauth/instagram/callback?code=abc&state=s%20t")
            .cookie("oauth_binding=xyz")
            .user("user-1")
            .into_request();
        assert_eq!(req.uri().path(), "/oauth/instagram/callback");
        assert_eq!(
            req.query_string_parameters_ref().unwrap().first("state"),
            Some("s t")
        );
        assert_eq!(
            req.path_parameters_ref().unwrap().first("provider"),
            Some("instagram")
        );
        assert_eq!(req.headers().get("cookie").unwrap(), "oauth_binding=xyz");
        assert_eq!(shared::http::user_id(&req).as_deref(), Some("user-1"));
    }

    #[test]
    fn binary_bodies_travel_base64() {
        let mut r = ApiRequest::post("/webhook").body(vec![0xff, 0x00, 0x41]);
        assert_eq!(r.event()["isBase64Encoded"], json!(true));
        r.base64 = true;
        let req = ApiRequest::post("/webhook").body(b"{}".to_vec());
        let mut forced = req.clone();
        forced.base64 = true;
        assert_eq!(forced.event()["body"], json!("e30="));
        assert_eq!(forced.into_request().body().as_ref(), b"{}");
    }
}
