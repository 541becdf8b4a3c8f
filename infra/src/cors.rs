//! CORS as API Gateway applies the HTTP API's `CorsConfiguration`, read from
//! `template.yaml` itself (so the local gateway and the deployed API cannot
//! drift): a preflight (`OPTIONS` with `Access-Control-Request-Method`) is
//! answered by the gateway, without calling a function; an answer to an
//! allowed origin carries `Access-Control-Allow-Origin`, `-Allow-Credentials`
//! and `-Expose-Headers`. Origins are the deployment's (`AllowedOrigins` in
//! AWS; the local stack's own and `--allow-origin`).

use std::path::Path;

use yaml_serde::Value;

/// The HTTP API's CORS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    pub origins: Vec<String>,
    pub allow_headers: Vec<String>,
    pub allow_methods: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: u64,
    pub allow_credentials: bool,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

impl Cors {
    /// `HttpApi`'s `CorsConfiguration` in `template`, for `origins`.
    pub fn from_template(template: &Path, origins: Vec<String>) -> Self {
        let doc = crate::template::document(template);
        let c = &doc["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"];
        Self {
            origins,
            allow_headers: strings(&c["AllowHeaders"]),
            allow_methods: strings(&c["AllowMethods"]),
            expose_headers: strings(&c["ExposeHeaders"]),
            max_age: c["MaxAge"].as_u64().unwrap_or(0),
            allow_credentials: c["AllowCredentials"].as_bool().unwrap_or(false),
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// The headers of the gateway's own `204` to a preflight from `origin`
    /// (none for an origin not allowed: the browser then refuses).
    pub fn preflight(&self, origin: &str) -> Vec<(&'static str, String)> {
        if !self.allows(origin) {
            return vec![];
        }
        let mut h = self.origin_headers(origin);
        h.push(("access-control-allow-methods", self.allow_methods.join(",")));
        h.push(("access-control-allow-headers", self.allow_headers.join(",")));
        h.push(("access-control-max-age", self.max_age.to_string()));
        h
    }

    /// The headers added to a function's answer to a request from `origin`.
    pub fn answer(&self, origin: &str) -> Vec<(&'static str, String)> {
        if !self.allows(origin) {
            return vec![];
        }
        let mut h = self.origin_headers(origin);
        if !self.expose_headers.is_empty() {
            h.push((
                "access-control-expose-headers",
                self.expose_headers.join(","),
            ));
        }
        h
    }

    fn origin_headers(&self, origin: &str) -> Vec<(&'static str, String)> {
        let mut h = vec![("access-control-allow-origin", origin.to_string())];
        if self.allow_credentials {
            h.push(("access-control-allow-credentials", "true".to_string()));
        }
        h
    }
}

/// `resp` with `headers` set (a value that is not a header value is left
/// out).
pub fn with_headers(
    mut resp: axum::response::Response,
    headers: Vec<(&'static str, String)>,
) -> axum::response::Response {
    for (name, value) in headers {
        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "http://localhost:3000";

    fn cors() -> Cors {
        Cors::from_template(&crate::template::template_path(), vec![APP.into()])
    }

    fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_preflight_from_the_frontend_may_send_an_idempotency_key() {
        let h = cors().preflight(APP);
        assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
        assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
        let allowed = header(&h, "access-control-allow-headers").unwrap();
        for name in ["authorization", "content-type", "idempotency-key"] {
            assert!(allowed.split(',').any(|a| a == name), "{name}: {allowed}");
        }
        let methods = header(&h, "access-control-allow-methods").unwrap();
        assert!(methods.contains("POST") && methods.contains("DELETE"));
        assert_eq!(header(&h, "access-control-max-age"), Some("600"));
    }

    #[test]
    fn the_frontend_may_read_the_proxy_headers_of_an_answer() {
        let h = cors().answer(APP);
        assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
        let exposed = header(&h, "access-control-expose-headers").unwrap();
        for name in [
            "retry-after",
            "idempotent-replayed",
            "x-app-usage",
            "x-business-use-case-usage",
        ] {
            assert!(exposed.split(',').any(|e| e == name), "{name}: {exposed}");
        }
    }

    #[test]
    fn another_origin_gets_no_cors_header() {
        assert!(cors().preflight("https://evil.example").is_empty());
        assert!(cors().answer("https://evil.example").is_empty());
        assert!(cors().answer("null").is_empty());
    }
}
