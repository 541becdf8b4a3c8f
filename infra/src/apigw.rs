//! API Gateway HTTP API (payload format 2.0) events, built the way API
//! Gateway builds them, and turned into the `lambda_http::Request` a function
//! receives.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Map, Value};

/// Which API a route is on, and who may call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// The frontend API, behind the JWT authorizer.
    Jwt,
    /// The public API, open (the OAuth callback, the data-deletion status page).
    Open,
    /// Meta's API (`MetaApi`): only under the stage named `MetaPathSecret`.
    Meta,
    /// The frontend API, `AWS_IAM` authorization (SigV4): the outbound
    /// webhooks' `/admin` routes.
    Iam,
}

/// The service's routes, as API Gateway route keys, and their door.
pub const ROUTES: &[(&str, &str, Door)] = &[
    ("POST", "/connect/{provider}", Door::Jwt),
    ("GET", "/oauth/{provider}/callback", Door::Open),
    ("POST", "/oauth/{provider}/complete", Door::Jwt),
    ("GET", "/connections", Door::Jwt),
    ("DELETE", "/connections/{provider}/{account_id}", Door::Jwt),
    ("GET", "/webhook", Door::Meta),
    ("POST", "/webhook", Door::Meta),
    ("POST", "/meta/deauthorize", Door::Meta),
    ("POST", "/meta/data-deletion", Door::Meta),
    // The status page people open: public, never under Meta's prefix.
    ("GET", "/meta/data-deletion/{code}", Door::Open),
    (
        "GET",
        "/connections/{provider}/{account_id}/graph/{path+}",
        Door::Jwt,
    ),
    (
        "POST",
        "/connections/{provider}/{account_id}/graph/{path+}",
        Door::Jwt,
    ),
    (
        "DELETE",
        "/connections/{provider}/{account_id}/graph/{path+}",
        Door::Jwt,
    ),
    (
        "POST",
        "/connections/{provider}/{account_id}/posts",
        Door::Jwt,
    ),
    (
        "GET",
        "/connections/{provider}/{account_id}/posts",
        Door::Jwt,
    ),
    (
        "POST",
        "/connections/{provider}/{account_id}/posts/uploads",
        Door::Jwt,
    ),
    (
        "GET",
        "/connections/{provider}/{account_id}/posts/{post_id}",
        Door::Jwt,
    ),
    (
        "DELETE",
        "/connections/{provider}/{account_id}/posts/{post_id}",
        Door::Jwt,
    ),
    ("POST", "/admin/endpoints", Door::Iam),
    ("GET", "/admin/endpoints", Door::Iam),
    ("GET", "/admin/endpoints/{id}", Door::Iam),
    ("PATCH", "/admin/endpoints/{id}", Door::Iam),
    ("DELETE", "/admin/endpoints/{id}", Door::Iam),
    ("POST", "/admin/endpoints/{id}/rotate-secret", Door::Iam),
    ("GET", "/admin/endpoints/{id}/attempts", Door::Iam),
    ("POST", "/admin/replays", Door::Iam),
    ("GET", "/admin/replays/{id}", Door::Iam),
];

/// A matched route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub template: &'static str,
    /// Guarded by the JWT authorizer.
    pub jwt: bool,
    pub door: Door,
    /// The stage a Meta route was reached under (`/<MetaPathSecret>`), or "".
    pub stage: String,
    pub params: Vec<(String, String)>,
}

impl Route {
    /// API Gateway's route key (without the stage, so never the secret).
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

/// The route a request matches, with its path parameters, the way the
/// deployed APIs would: frontend routes at their path, Meta's routes only
/// under `meta_prefix` (`/<MetaPathSecret>`, the stage of `MetaApi`).
/// `None` is API Gateway's own 404: no function is called.
pub fn match_route_under(method: &str, path: &str, meta_prefix: &str) -> Option<Route> {
    match path
        .strip_prefix(meta_prefix)
        .filter(|_| !meta_prefix.is_empty())
    {
        Some(rest) if rest.starts_with('/') => {
            let mut route = match_door(method, rest, |d| d == Door::Meta)?;
            route.stage = meta_prefix.to_string();
            Some(route)
        }
        _ => match_door(method, path, |d| d != Door::Meta),
    }
}

/// The route a request matches, for building its event: any route at its
/// path, or a Meta route under any one-segment stage.
pub fn match_route(method: &str, path: &str) -> Option<Route> {
    if let Some(route) = match_door(method, path, |_| true) {
        return Some(route);
    }
    let rest = path.strip_prefix('/')?;
    let (stage, rest) = rest.split_once('/')?;
    let mut route = match_door(method, &format!("/{rest}"), |d| d == Door::Meta)?;
    route.stage = format!("/{stage}");
    Some(route)
}

fn match_door(method: &str, path: &str, doors: impl Fn(Door) -> bool) -> Option<Route> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    ROUTES.iter().find_map(|(m, template, door)| {
        if *m != method || !doors(*door) {
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
            jwt: *door == Door::Jwt,
            door: *door,
            stage: String::new(),
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
    /// The caller's ARN, as `AWS_IAM` authorization found it.
    pub iam_caller: Option<String>,
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

    /// A SigV4-signed request from `arn` (an `AWS_IAM` route).
    pub fn iam(mut self, arn: &str) -> Self {
        self.iam_caller = Some(arn.to_string());
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
        let (route_key, path_params, stage) = self.route_and_stage();
        let headers = self.event_headers();
        let query = self.query_parameters();
        let (body, is_b64) = self.event_body();
        let authorizer = self.authorizer();
        let mut ev = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": self.path,
            "rawQueryString": self.raw_query,
            "headers": headers,
            "requestContext": self.request_context(&route_key, &stage),
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

    /// The route key, path parameters and stage name.
    fn route_and_stage(&self) -> (String, Vec<(String, String)>, String) {
        match match_route(&self.method, &self.path) {
            Some(route) => {
                // A named stage (Meta's): its name, without the slash.
                let stage = match route.stage.strip_prefix('/') {
                    Some(name) => name.to_string(),
                    None => "$default".to_string(),
                };
                (route.key(), route.params, stage)
            }
            None => ("$default".to_string(), Vec::new(), "$default".to_string()),
        }
    }

    /// API Gateway joins repeated headers with commas and lower-cases names.
    fn event_headers(&self) -> Map<String, Value> {
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
        headers
    }

    fn query_parameters(&self) -> Map<String, Value> {
        let mut query = Map::new();
        for (k, v) in url::form_urlencoded::parse(self.raw_query.as_bytes()) {
            let joined = match query.get(k.as_ref()).and_then(Value::as_str) {
                Some(prev) => format!("{prev},{v}"),
                None => v.into_owned(),
            };
            query.insert(k.into_owned(), Value::String(joined));
        }
        query
    }

    /// The body (text, or base64) and whether it is base64.
    fn event_body(&self) -> (Value, bool) {
        let text_body = self
            .body
            .as_ref()
            .filter(|_| !self.base64)
            .and_then(|b| String::from_utf8(b.clone()).ok());
        match (&self.body, text_body) {
            (None, _) => (Value::Null, false),
            (Some(_), Some(t)) => (Value::String(t), false),
            (Some(b), None) => (Value::String(STANDARD.encode(b)), true),
        }
    }

    fn authorizer(&self) -> Value {
        if let Some(arn) = &self.iam_caller {
            json!({"iam": {"accessKey": "AKIAEXAMPLE", "accountId": "123456789012",
                "callerId": "AIDAEXAMPLE", "userArn": arn, "userId": "AIDAEXAMPLE"}})
        } else if self.claims.is_empty() {
            Value::Null
        } else {
            let claims: Map<String, Value> = self
                .claims
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({"jwt": {"claims": claims, "scopes": null}})
        }
    }

    fn request_context(&self, route_key: &str, stage: &str) -> Value {
        json!({
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
            "stage": stage,
            "time": "21/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1_795_260_000_000u64
        })
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
    fn meta_routes_exist_only_under_the_prefix() {
        let prefix = "/s3cr3t-0123456789abcdef0123456789ab";
        let under = |m: &str, p: &str| match_route_under(m, p, prefix);
        // Under the prefix: Meta's routes, with the stage.
        let r = under("POST", &format!("{prefix}/webhook")).unwrap();
        assert_eq!(
            (r.key().as_str(), r.stage.as_str()),
            ("POST /webhook", prefix)
        );
        assert!(under("POST", &format!("{prefix}/meta/deauthorize")).is_some());
        // The data-deletion status page is public, at its path only.
        let r = under("GET", "/meta/data-deletion/ABC").unwrap();
        assert_eq!((r.door, r.stage.as_str()), (Door::Open, ""));
        assert_eq!(r.params, vec![("code".to_string(), "ABC".to_string())]);
        // Anywhere else, API Gateway answers 404 itself: no function runs.
        for (m, p) in [
            ("POST", "/webhook".to_string()),
            ("GET", "/webhook".to_string()),
            ("POST", "/meta/data-deletion".to_string()),
            ("GET", format!("{prefix}/meta/data-deletion/ABC")),
            ("POST", "/wrong-guess/webhook".to_string()),
            ("POST", format!("{prefix}x/webhook")),
            ("POST", format!("{}/webhook", &prefix[..prefix.len() - 1])),
            ("POST", format!("{prefix}/connect/instagram")),
            ("GET", format!("{prefix}/connections")),
        ] {
            assert!(under(m, &p).is_none(), "{m} {p}");
        }
        // The frontend's routes stay where they are.
        assert_eq!(under("POST", "/connect/instagram").unwrap().door, Door::Jwt);
        assert!(under("GET", "/oauth/instagram/callback").is_some());
    }

    #[test]
    fn a_meta_route_under_a_stage_is_the_event_api_gateway_sends() {
        let prefix = "/s3cr3t-0123456789abcdef0123456789ab";
        let api = ApiRequest::post(&format!("{prefix}/meta/data-deletion"));
        let event = api.event();
        assert_eq!(event["routeKey"], "POST /meta/data-deletion");
        assert_eq!(event["requestContext"]["stage"], &prefix[1..]);
        let req = api.into_request();
        assert_eq!(req.uri().path(), format!("{prefix}/meta/data-deletion"));
        // The public status page: no stage, its code a path parameter.
        let event = ApiRequest::get("/meta/data-deletion/ABC").event();
        assert_eq!(event["routeKey"], "GET /meta/data-deletion/{code}");
        assert_eq!(event["requestContext"]["stage"], "$default");
        assert_eq!(event["pathParameters"]["code"], "ABC");
        // Without a stage, as before.
        let event = ApiRequest::post("/webhook").event();
        assert_eq!(event["requestContext"]["stage"], "$default");
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
