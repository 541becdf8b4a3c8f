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
const CREDENTIAL_WORDS: [&str; 3] = ["access_token", "appsecret_proof", "appsecret_time"];

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
    let carries_credential = |s: &str| {
        let s = s.to_ascii_lowercase();
        CREDENTIAL_WORDS.iter().any(|w| s.contains(w))
    };
    if params
        .iter()
        .any(|(k, v)| carries_credential(k) || carries_credential(v))
    {
        return Err(Refusal::Credential);
    }
    Ok(segments)
}

/// The Graph host a provider's connections call.
pub fn graph_base(provider: Provider, urls: &crate::config::MetaUrls) -> &str {
    match provider {
        Provider::Instagram => &urls.instagram_graph,
        Provider::Facebook => &urls.graph,
    }
}

/// The URL of an accepted path: `<provider's Graph host>/<version>/<path>`.
pub fn target_url(base: &str, version: &str, segments: &[&str]) -> Url {
    let mut url = Url::parse(base).expect("Meta base URLs are validated at start");
    {
        let mut path = url.path_segments_mut().expect("an http(s) base URL");
        path.pop_if_empty().push(version);
        for s in segments {
            path.push(s);
        }
    }
    url
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
mod tests {
    use super::*;

    const IG: Subject<'static> = Subject {
        provider: Provider::Instagram,
        account_id: "17841400000000001",
        page_id: None,
    };
    const FB: Subject<'static> = Subject {
        provider: Provider::Facebook,
        account_id: "17841400000000021",
        page_id: Some("p1"),
    };

    fn ok(s: &Subject<'_>, method: &str, path: &str) -> bool {
        check(s, method, path, &[]).is_ok()
    }

    #[test]
    fn accepts_the_calls_products_make() {
        for path in [
            "me",
            "me/messages",
            "me/media",
            "17841400000000001/media",
            "17841400000000001/insights",
            "17841400000000001/media_publish",
            "18000000000000001",
            "18000000000000001/comments",
            "18000000000000002/replies",
        ] {
            assert!(ok(&IG, "GET", path), "{path}");
            assert!(ok(&IG, "post", path), "{path}");
            assert!(ok(&IG, "DELETE", path), "{path}");
        }
        assert!(ok(&FB, "POST", "p1/messages"));
        assert!(ok(&FB, "GET", "17841400000000021/media"));
        assert_eq!(
            check(
                &IG,
                "GET",
                "me/media",
                &[("fields", "id,caption,media_url")]
            ),
            Ok(vec!["me", "media"])
        );
    }

    #[test]
    fn refuses_other_methods() {
        for m in ["PUT", "PATCH", "HEAD", "OPTIONS", "", "GETX"] {
            assert_eq!(check(&IG, m, "me", &[]), Err(Refusal::Method), "{m}");
        }
    }

    #[test]
    fn refuses_paths_of_the_wrong_shape() {
        for path in [
            "",
            "/me",
            "me/",
            "me//media",
            "./me",
            "me/.",
            "me/..",
            "../me",
            "me/a/b/c/d",
            "me/%2F",
            "me%2Fmedia",
            "me%5Cmedia",
            "me\\media",
            "me/media?x=1",
            "me/media#x",
            "me media",
            "https://evil.com/me",
            "https:",
            "//evil.com",
            "@evil.com",
            "me/\u{0}",
            "me/médias",
        ] {
            assert_eq!(
                check(&IG, "GET", path, &[]),
                Err(Refusal::Shape),
                "{path:?}"
            );
        }
        assert_eq!(
            check(&IG, "GET", &format!("me/{}", "a".repeat(129)), &[]),
            Err(Refusal::Shape)
        );
    }

    #[test]
    fn refuses_other_first_segments() {
        for path in [
            "evil",
            "graph.facebook.com",
            "v25.0/me",
            "p1",
            "ME",
            "17841400000000001x",
        ] {
            assert_eq!(
                check(&IG, "GET", path, &[]),
                Err(Refusal::FirstSegment),
                "{path}"
            );
        }
        // Another connection's Page id is not this one's.
        assert_eq!(
            check(&FB, "GET", "p2/messages", &[]),
            Err(Refusal::FirstSegment)
        );
    }

    #[test]
    fn refuses_the_services_own_endpoints_anywhere() {
        for path in [
            "me/subscribed_apps",
            "me/permissions",
            "me/oauth",
            "me/oauth/access_token",
            "17841400000000001/subscribed_apps",
            "me/access_token",
            "me/refresh_access_token",
            "me/debug_token",
            "me/Subscribed_Apps",
            "18000000000000001/permissions_x",
        ] {
            assert!(
                matches!(check(&IG, "GET", path, &[]), Err(Refusal::Reserved(_))),
                "{path}"
            );
        }
        assert!(matches!(
            check(&FB, "DELETE", "p1/subscribed_apps", &[]),
            Err(Refusal::Reserved("subscribed_apps"))
        ));
    }

    #[test]
    fn refuses_credentials_in_parameters() {
        for params in [
            vec![("access_token", "x")],
            vec![("fields", "id,access_token")],
            vec![("fields", "ACCESS_TOKEN")],
            vec![("appsecret_proof", "x")],
            vec![("appsecret_time", "1")],
            vec![("fields", "id"), ("x", "access_token{id}")],
        ] {
            assert_eq!(
                check(&FB, "GET", "p1", &params),
                Err(Refusal::Credential),
                "{params:?}"
            );
        }
    }

    #[test]
    fn accepted_paths_stay_on_the_provider_graph_host() {
        let urls = crate::config::MetaUrls {
            facebook: "https://www.facebook.com".into(),
            graph: "https://graph.facebook.com".into(),
            instagram: "https://www.instagram.com".into(),
            instagram_api: "https://api.instagram.com".into(),
            instagram_graph: "https://graph.instagram.com".into(),
        };
        let segs = check(&IG, "GET", "me/media", &[]).unwrap();
        let url = target_url(graph_base(Provider::Instagram, &urls), "v25.0", &segs);
        assert_eq!(url.as_str(), "https://graph.instagram.com/v25.0/me/media");
        let segs = check(&FB, "POST", "p1/messages", &[]).unwrap();
        let url = target_url(graph_base(Provider::Facebook, &urls), "v25.0", &segs);
        assert_eq!(url.as_str(), "https://graph.facebook.com/v25.0/p1/messages");
        // A base with a path prefix (the local emulator's) keeps it.
        let url = target_url("http://127.0.0.1:9/graph.instagram.com", "v25.0", &["me"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/graph.instagram.com/v25.0/me"
        );
    }

    #[test]
    fn logged_paths_hide_ids() {
        assert_eq!(path_template(&["me", "messages"]), "me/messages");
        assert_eq!(path_template(&["17841400000000001", "media"]), "{id}/media");
        assert_eq!(
            path_template(&["18000000000000002", "replies"]),
            "{id}/replies"
        );
    }
}

#[cfg(test)]
#[path = "policy_fuzz.rs"]
mod fuzz;
