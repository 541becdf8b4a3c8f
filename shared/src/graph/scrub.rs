//! What leaves the proxy carries no credential (CONTRACT.md, "Proxy
//! amendments"): every string of Meta's answer is scrubbed, and Meta's
//! paging links (absolute Graph URLs, which can embed the token and
//! `appsecret_proof`) become links the caller follows through the proxy.
//!
//! Two steps, both plain functions: [`rewrite_paging`] turns each
//! `paging.next` / `paging.previous` into a door-neutral [`PageLink`]
//! object `{"path", "query"}` (or drops a link that leads anywhere the proxy
//! would not go); [`scrub`] then removes `access_token` fields, credential
//! parameters inside any string, and any string that is the token. The HTTP
//! door renders the links as its own route with [`paging_as_routes`].

use serde_json::{json, Map, Value};
use url::Url;

use super::policy::{self, Subject, CREDENTIAL_WORDS};

/// What replaces a string that carried the token itself.
pub const REDACTED: &str = "[redacted]";

/// A page of a list answer, as the proxy's own call: a Graph path (no
/// version, no leading `/`) and its query, without credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageLink {
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl PageLink {
    /// Reads one of Meta's paging URLs: it must be on the connection's Graph
    /// host (`graph_base`, with any path prefix), under a version segment,
    /// and its path and remaining parameters must pass the proxy's policy.
    pub fn from_meta_url(url: &str, graph_base: &str, subject: &Subject<'_>) -> Option<Self> {
        let url = Url::parse(url).ok()?;
        let base = Url::parse(graph_base).ok()?;
        if url.scheme() != base.scheme()
            || url.host_str() != base.host_str()
            || url.port_or_known_default() != base.port_or_known_default()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return None;
        }
        let rest = url.path().strip_prefix(base.path().trim_end_matches('/'))?;
        let (version, path) = rest.strip_prefix('/')?.split_once('/')?;
        let is_version = version.len() > 1
            && version.starts_with('v')
            && version[1..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.');
        if !is_version {
            return None;
        }
        let query: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !is_credential_name(k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let params: Vec<(&str, &str)> = query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        policy::check(subject, "GET", path, &params).ok()?;
        Some(Self {
            path: path.to_string(),
            query,
        })
    }

    /// The invoke door's form: `{"path": ..., "query": {...}}`.
    pub fn to_json(&self) -> Value {
        let query: Map<String, Value> = self
            .query
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({"path": self.path, "query": query})
    }

    fn from_json(v: &Value) -> Option<Self> {
        let path = v.get("path")?.as_str()?.to_string();
        let query = v
            .get("query")?
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect::<Option<Vec<_>>>()?;
        Some(Self { path, query })
    }

    /// The HTTP door's form: the proxy route of the same connection.
    pub fn to_route(&self, provider: &str, account_id: &str) -> String {
        let mut route = format!("/connections/{provider}/{account_id}/graph/{}", self.path);
        if !self.query.is_empty() {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&self.query)
                .finish();
            route.push('?');
            route.push_str(&query);
        }
        route
    }
}

fn is_credential_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    CREDENTIAL_WORDS.contains(&name.trim())
}

/// Every `paging` object at any depth (field expansion nests them).
fn for_each_paging(value: &mut Value, f: &mut impl FnMut(&mut Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(paging)) = map.get_mut("paging") {
                f(paging);
            }
            map.values_mut().for_each(|v| for_each_paging(v, f));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| for_each_paging(v, f)),
        _ => {}
    }
}

/// Rewrites Meta's `paging.next` / `paging.previous` URLs, at any depth,
/// into [`PageLink`] objects; a link that leads off the connection's Graph
/// host or to anything the policy refuses is removed. `paging.cursors`
/// stays as Meta sent it. Returns how many links were dropped.
pub fn rewrite_paging(value: &mut Value, graph_base: &str, subject: &Subject<'_>) -> usize {
    let mut dropped = 0;
    for_each_paging(value, &mut |paging| {
        for name in ["next", "previous"] {
            let Some(link) = paging.get(name) else {
                continue;
            };
            let rewritten = link
                .as_str()
                .and_then(|url| PageLink::from_meta_url(url, graph_base, subject));
            match rewritten {
                Some(link) => {
                    paging.insert(name.into(), link.to_json());
                }
                None => {
                    paging.remove(name);
                    dropped += 1;
                }
            }
        }
    });
    dropped
}

/// The HTTP door's answer: each [`PageLink`] under `paging` becomes the
/// path of the proxy's own route for the same connection.
pub fn paging_as_routes(value: &mut Value, provider: &str, account_id: &str) {
    for_each_paging(value, &mut |paging| {
        for name in ["next", "previous"] {
            if let Some(link) = paging.get(name).and_then(PageLink::from_json) {
                paging.insert(
                    name.into(),
                    Value::String(link.to_route(provider, account_id)),
                );
            }
        }
    });
}

/// Removes every credential from an answer, at any depth: `access_token`
/// fields, `access_token` / `appsecret_proof` / `appsecret_time` parameters
/// inside any string (URLs), and the token itself wherever a string holds
/// it. Returns how many things were removed.
pub fn scrub(value: &mut Value, token: &str) -> usize {
    match value {
        Value::Object(map) => {
            let removed = usize::from(map.remove("access_token").is_some());
            removed + map.values_mut().map(|v| scrub(v, token)).sum::<usize>()
        }
        Value::Array(items) => items.iter_mut().map(|v| scrub(v, token)).sum(),
        Value::String(s) => match scrub_str(s, token) {
            Some(clean) => {
                *s = clean;
                1
            }
            None => 0,
        },
        _ => 0,
    }
}

/// A string without credentials, or `None` when it had none.
pub fn scrub_str(s: &str, token: &str) -> Option<String> {
    let mut out = std::borrow::Cow::Borrowed(s);
    if !token.is_empty() && out.contains(token) {
        out = out.replace(token, REDACTED).into();
    }
    let lower = out.to_ascii_lowercase();
    if CREDENTIAL_WORDS.iter().any(|w| lower.contains(w)) {
        out = without_credential_params(&out).into();
    }
    match out {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(o) if o == s => None,
        std::borrow::Cow::Owned(o) => Some(o),
    }
}

/// Drops credential parameters from every query-like part of a string
/// (`...?a=1&access_token=x#f`). A string with a credential word that is not
/// a parameter (a caption saying "access_token") keeps its words but loses
/// any `=value` after them.
fn without_credential_params(s: &str) -> String {
    let (head, fragment) = match s.split_once('#') {
        Some((h, f)) => (h, Some(f)),
        None => (s, None),
    };
    let (base, query) = match head.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (head, None),
    };
    let clean_query = |q: &str| {
        q.split('&')
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                let name = url::form_urlencoded::parse(name.as_bytes())
                    .next()
                    .map(|(k, _)| k.into_owned())
                    .unwrap_or_default();
                !is_credential_name(&name)
            })
            .collect::<Vec<_>>()
            .join("&")
    };
    let mut out = match query {
        Some(q) => {
            let q = clean_query(q);
            if q.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{q}")
            }
        }
        // No `?`: the string itself may be a bare query (`a=1&access_token=x`).
        None if base.contains('=') => clean_query(base),
        None => base.to_string(),
    };
    if let Some(f) = fragment {
        let f = if f.contains('=') {
            clean_query(f)
        } else {
            f.into()
        };
        out.push('#');
        out.push_str(&f);
    }
    out
}

#[cfg(test)]
#[path = "scrub_tests.rs"]
mod tests;
