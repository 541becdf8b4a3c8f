//! Where the person lands after the flow: `return_to`, checked against open
//! redirects before it is ever stored.

use percent_decode::decode;
use url::{Origin, Url};

/// Why a `return_to` was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidReturnTo(pub &'static str);

const MAX_LEN: usize = 2048;

/// Resolves `return_to` into an absolute URL on an allowed origin.
///
/// Accepted: an absolute `http(s)` URL whose origin is allowed, or a path
/// starting with exactly one `/`, resolved against `frontend`. `None` gives
/// `frontend` itself. Everything a browser might read as another host is
/// refused rather than cleaned up.
pub fn resolve(
    return_to: Option<&str>,
    frontend: &Url,
    allowed: &[Origin],
) -> Result<Url, InvalidReturnTo> {
    let Some(raw) = return_to else {
        return Ok(frontend.clone());
    };
    if raw.is_empty() || raw.len() > MAX_LEN {
        return Err(InvalidReturnTo("return_to must be 1 to 2048 characters"));
    }
    // Browsers strip tabs and newlines and turn `\` into `/`, so `/\evil.com`
    // and `/\t/evil.com` become `//evil.com`. Refuse them outright.
    if raw
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Err(InvalidReturnTo(
            "return_to must not contain spaces, control characters or backslashes",
        ));
    }
    let url = if raw.starts_with('/') {
        resolve_path(raw, frontend)?
    } else {
        absolute(raw)?
    };
    if !allowed.contains(&url.origin()) {
        return Err(InvalidReturnTo("return_to origin is not allowed"));
    }
    // After resolution (`/.//x`, `/..//x`, `/%2e%2e//x`) or in an absolute URL
    // (`https://app//x`) the path may still start with `//`: a frontend router
    // that reuses the path would read it as another host.
    if resolves_to_two_slashes(url.path()) {
        return Err(InvalidReturnTo(
            "return_to path must start with exactly one / after resolution",
        ));
    }
    Ok(url)
}

/// A path: exactly one leading slash, also after percent-decoding
/// (`/%2F%2Fevil.com` becomes `//evil.com` in some routers), resolved
/// against the frontend.
fn resolve_path(raw: &str, frontend: &Url) -> Result<Url, InvalidReturnTo> {
    let decoded = decode(raw);
    if raw.starts_with("//")
        || decoded.starts_with("//")
        || decoded.starts_with("/\\")
        || decoded.chars().any(|c| c.is_control() || c == '\\')
    {
        return Err(InvalidReturnTo(
            "return_to path must start with exactly one /",
        ));
    }
    frontend
        .join(raw)
        .map_err(|_| InvalidReturnTo("return_to is not a valid path"))
}

/// An absolute `http(s)` URL without credentials (also none hidden before
/// an `@` the parser would read otherwise).
fn absolute(raw: &str) -> Result<Url, InvalidReturnTo> {
    let lower = raw.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(InvalidReturnTo(
            "return_to must be an absolute http(s) URL or a path",
        ));
    }
    let url = Url::parse(raw).map_err(|_| InvalidReturnTo("return_to is not a valid URL"))?;
    let after_scheme = &raw[raw.find("://").map_or(0, |i| i + 3)..];
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if !url.username().is_empty() || url.password().is_some() || authority.contains('@') {
        return Err(InvalidReturnTo("return_to must not carry credentials"));
    }
    Ok(url)
}

/// Whether `path`, as stored or as a router might read it (percent-decoded,
/// dot segments removed), starts with `//` (or holds a `\`, which browsers
/// read as `/`).
fn resolves_to_two_slashes(path: &str) -> bool {
    let decoded = decode(path);
    if path.starts_with("//") || decoded.starts_with("//") || decoded.contains('\\') {
        return true;
    }
    Url::parse("http://h/")
        .and_then(|root| root.join(&decoded))
        .map_or(true, |u| u.path().starts_with("//"))
}

mod percent_decode {
    /// Lossy percent-decoding, enough to see what a router might see.
    pub fn decode(s: &str) -> String {
        url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontend() -> Url {
        Url::parse("https://app.example.com/settings/integrations").unwrap()
    }

    fn allowed() -> Vec<Origin> {
        vec![
            frontend().origin(),
            Url::parse("https://admin.example.com").unwrap().origin(),
        ]
    }

    fn check(raw: &str) -> Result<String, InvalidReturnTo> {
        resolve(Some(raw), &frontend(), &allowed()).map(|u| u.to_string())
    }

    #[test]
    fn default_is_the_frontend() {
        assert_eq!(
            resolve(None, &frontend(), &allowed()).unwrap().as_str(),
            "https://app.example.com/settings/integrations"
        );
    }

    #[test]
    fn accepts_paths_and_allowed_origins() {
        assert_eq!(
            check("/done?tab=ig#top").unwrap(),
            "https://app.example.com/done?tab=ig#top"
        );
        assert_eq!(
            check("https://admin.example.com/x").unwrap(),
            "https://admin.example.com/x"
        );
        assert_eq!(
            check("HTTPS://APP.EXAMPLE.COM/y").unwrap(),
            "https://app.example.com/y"
        );
    }

    #[test]
    fn refuses_open_redirect_tricks() {
        for raw in [
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "/%2F%2Fevil.com",
            "/%2fevil.com",
            "/%5Cevil.com",
            "https://app.example.com@evil.com",
            "https://app.example.com:443@evil.com/",
            "https://user:pw@app.example.com/",
            "https://evil.com",
            "https://app.example.com.evil.com/",
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,hi",
            "/\tevil",
            "/\t/evil.com",
            "/\n/evil.com",
            "https://app.example.com/\r\nSet-Cookie:x=y",
            " https://app.example.com/",
            "evil.com",
            "",
            "https:evil.com",
            "https:/evil.com",
        ] {
            assert!(check(raw).is_err(), "{raw:?} was accepted");
        }
        assert!(check(&format!("/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn refuses_paths_that_resolve_to_two_slashes() {
        for raw in [
            "/.//evil.com",
            "/..//evil.com",
            "/%2e%2e//evil.com",
            "/%2E%2E//evil.com",
            "/%2e//evil.com",
            "/././/evil.com",
            "/a/..//evil.com",
            "/a/../..//evil.com",
            "/..%2F/evil.com",
            "https://app.example.com//evil.com",
            "https://app.example.com/.//evil.com",
            "https://app.example.com/..//evil.com",
            "https://app.example.com/%2e%2e//evil.com",
            "https://app.example.com/%2F%2Fevil.com",
            "https://admin.example.com//evil.com",
        ] {
            assert!(check(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn dot_segments_that_stay_on_one_slash_are_fine() {
        assert_eq!(check("/a/../done").unwrap(), "https://app.example.com/done");
        assert_eq!(check("/./done/").unwrap(), "https://app.example.com/done/");
        assert_eq!(
            check("https://app.example.com/a/b/../c").unwrap(),
            "https://app.example.com/a/c"
        );
    }
}
