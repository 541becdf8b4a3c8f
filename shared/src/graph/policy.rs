//! What the proxy may call: a plain decision, taken before anything else, so
//! a refused request never reaches Meta (CONTRACT.md, "What may be called").

use url::Url;

use crate::provider::Provider;

/// HTTP methods the proxy passes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GraphMethod {
    Get,
    Post,
    Delete,
}

impl GraphMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Some(Self::Get),
            "POST" => Some(Self::Post),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Delete => "DELETE",
        }
    }

    /// Whether a repeat can't do anything twice (only `GET` is retried).
    pub fn is_safe(self) -> bool {
        self == Self::Get
    }
}

/// Why a request was refused (all are `400 path_not_allowed`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the method must be GET, POST or DELETE")]
    Method,
    #[error("the path must be 1 to 4 segments of letters, digits, '_', '.' and '-'")]
    Shape,
    #[error(
        "the path must start with me, the connection's account or Page id, or a numeric object id"
    )]
    FirstSegment,
    #[error("the path names an endpoint the service keeps to itself ({0})")]
    Reserved(&'static str),
    #[error("the query or body must not carry access_token, appsecret_proof or appsecret_time")]
    Credential,
    #[error("the parameter {0} changes what Graph does and is not passed on")]
    Parameter(&'static str),
}

/// The connection a request acts for, as the policy needs it.
pub struct Subject<'a> {
    pub provider: Provider,
    pub account_id: &'a str,
    /// The Page of a `facebook` connection.
    pub page_id: Option<&'a str>,
}

const MAX_SEGMENTS: usize = 4;
const MAX_SEGMENT_LEN: usize = 128;

/// Endpoints that belong to the service (tokens, subscriptions, grants).
const RESERVED: [&str; 6] = [
    "oauth",
    "access_token",
    "refresh_access_token",
    "debug_token",
    "subscribed_apps",
    "permissions",
];

/// Parameter names and values that would expose or forge credentials
/// (`fields=access_token` would make Meta return a Page token).
pub const CREDENTIAL_WORDS: [&str; 3] = ["access_token", "appsecret_proof", "appsecret_time"];

/// Parameters that change what Graph does with a request (another method,
/// a batch of other calls, other objects, a JSONP wrapper, debug output):
/// never passed on (CONTRACT.md, "Proxy amendments").
const REFUSED_PARAMETERS: [&str; 8] = [
    "method",
    "batch",
    "suppress_http_code",
    "debug",
    "callback",
    "redirect",
    "ids",
    "include_headers",
];

fn carries_credential(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    CREDENTIAL_WORDS.iter().any(|w| s.contains(w))
}

/// Checks the parameters of a request: no credential in a name or a value,
/// no parameter that changes what Graph does.
pub fn check_params(params: &[(&str, &str)]) -> Result<(), Refusal> {
    for (name, value) in params {
        if carries_credential(name) || carries_credential(value) {
            return Err(Refusal::Credential);
        }
        let lower = name.trim().to_ascii_lowercase();
        if let Some(p) = REFUSED_PARAMETERS.iter().find(|p| **p == lower) {
            return Err(Refusal::Parameter(p));
        }
    }
    Ok(())
}

/// Checks a JSON body at any depth: no credential in a key or a string, and
/// no refused parameter among its top-level keys (Graph reads those as
/// parameters).
pub fn check_json_body(body: &serde_json::Value) -> Result<(), Refusal> {
    use serde_json::Value;
    fn walk(v: &Value) -> Result<(), Refusal> {
        match v {
            Value::String(s) if carries_credential(s) => Err(Refusal::Credential),
            Value::Object(map) => map.iter().try_for_each(|(k, v)| {
                if carries_credential(k) {
                    return Err(Refusal::Credential);
                }
                walk(v)
            }),
            Value::Array(items) => items.iter().try_for_each(walk),
            _ => Ok(()),
        }
    }
    walk(body)?;
    if let Value::Object(map) = body {
        let keys: Vec<(&str, &str)> = map.keys().map(|k| (k.as_str(), "")).collect();
        check_params(&keys)?;
    }
    Ok(())
}

/// Checks a request: method, path (without leading `/`) and every parameter
/// (query pairs, and form-body pairs or top-level JSON keys). `Ok` returns the
/// path's segments.
pub fn check<'p>(
    subject: &Subject<'_>,
    method: &str,
    path: &'p str,
    params: &[(&str, &str)],
) -> Result<Vec<&'p str>, Refusal> {
    GraphMethod::parse(method).ok_or(Refusal::Method)?;
    let segments: Vec<&str> = path.split('/').collect();
    if path.is_empty() || segments.len() > MAX_SEGMENTS {
        return Err(Refusal::Shape);
    }
    for seg in &segments {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if seg.is_empty()
            || seg.len() > MAX_SEGMENT_LEN
            || *seg == "."
            || *seg == ".."
            || !seg.chars().all(allowed)
        {
            return Err(Refusal::Shape);
        }
    }
    let first = segments[0];
    let numeric = first.bytes().all(|b| b.is_ascii_digit());
    if !(first == "me" || first == subject.account_id || numeric || Some(first) == subject.page_id)
    {
        return Err(Refusal::FirstSegment);
    }
    let lower = path.to_ascii_lowercase();
    if let Some(word) = RESERVED.iter().find(|w| lower.contains(*w)) {
        return Err(Refusal::Reserved(word));
    }
    check_params(params)?;
    Ok(segments)
}

/// The Graph host a provider's connections call.
pub fn graph_base(provider: Provider, urls: &crate::config::MetaUrls) -> &str {
    match provider {
        Provider::Instagram => &urls.instagram_graph,
        Provider::Facebook => &urls.graph,
    }
}

/// A Graph base URL that can't take a path. Never once the configuration is
/// checked at start (`META_*_URL`: absolute http(s) URLs).
#[derive(Debug, thiserror::Error)]
pub enum BaseUrlError {
    #[error("the Graph base URL does not parse: {0}")]
    Parse(#[from] url::ParseError),
    #[error("the Graph base URL cannot take a path")]
    NoPath,
}

/// The URL of an accepted path: `<provider's Graph host>/<version>/<path>`.
pub fn target_url(base: &str, version: &str, segments: &[&str]) -> Result<Url, BaseUrlError> {
    let mut url = Url::parse(base)?;
    {
        let mut path = url.path_segments_mut().map_err(|()| BaseUrlError::NoPath)?;
        path.pop_if_empty().push(version);
        for s in segments {
            path.push(s);
        }
    }
    Ok(url)
}

/// The path as logged: every numeric segment (ids) replaced by `{id}`.
pub fn path_template(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "policy_fuzz.rs"]
mod fuzz;
