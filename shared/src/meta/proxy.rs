//! Graph calls made for the product through the proxy: the token in the
//! `Authorization` header (never in a URL), `appsecret_proof` for Facebook,
//! one attempt per call (the proxy decides what may be retried).

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::{appsecret_proof, MetaClient};

/// The answer headers the proxy hands back (usage and tracing).
pub const PASSED_HEADERS: [&str; 3] = ["x-app-usage", "x-business-use-case-usage", "x-fb-trace-id"];

/// A request body, as the caller sent it.
#[derive(Clone, Debug, PartialEq)]
pub enum GraphBody {
    Json(Value),
    Form(Vec<(String, String)>),
}

/// One call to a Graph host.
pub struct GraphCall<'a> {
    pub method: reqwest::Method,
    pub url: Url,
    pub query: &'a [(String, String)],
    pub body: Option<&'a GraphBody>,
    pub token: &'a SecretString,
    /// Adds `appsecret_proof` (Facebook hosts).
    pub app_secret: Option<&'a SecretString>,
}

/// What Meta answered.
#[derive(Debug)]
pub struct GraphAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub latency: Duration,
}

impl GraphAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Meta could not be reached, or did not answer in time.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// Nothing reached Meta (no connection): safe to try again.
    #[error("meta unreachable: {0}")]
    NotSent(String),
    /// The request may have reached Meta, but no complete answer came back
    /// in time: whether Meta acted is unknown.
    #[error("meta did not answer in time: {0}")]
    NoAnswer(String),
}

impl Unreachable {
    fn from_send(e: reqwest::Error) -> Self {
        // `without_url`: the URL carries `appsecret_proof`.
        let sent = !e.is_connect() && (e.is_timeout() || e.is_request() || e.is_body());
        let e = e.without_url().to_string();
        if sent {
            Self::NoAnswer(e)
        } else {
            Self::NotSent(e)
        }
    }

    /// Whether Meta may have acted on the request.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::NoAnswer(_))
    }
}

impl MetaClient {
    /// Sends one call and returns Meta's answer, whatever its status.
    pub async fn graph_call(&self, call: &GraphCall<'_>) -> Result<GraphAnswer, Unreachable> {
        let mut query: Vec<(String, String)> = call.query.to_vec();
        if let Some(secret) = call.app_secret {
            query.push((
                "appsecret_proof".into(),
                appsecret_proof(secret, call.token),
            ));
        }
        let mut req = self
            .http
            .request(call.method.clone(), call.url.clone())
            .bearer_auth(call.token.expose_secret());
        if !query.is_empty() {
            req = req.query(&query);
        }
        req = match call.body {
            Some(GraphBody::Json(v)) => req.json(v),
            Some(GraphBody::Form(pairs)) => req.form(pairs),
            None => req,
        };
        let started = Instant::now();
        let resp = req.send().await.map_err(Unreachable::from_send)?;
        let status = resp.status().as_u16();
        let headers = PASSED_HEADERS
            .iter()
            .filter_map(|h| {
                let v = resp.headers().get(*h)?.to_str().ok()?;
                Some((h.to_string(), v.to_string()))
            })
            .collect();
        let body = resp
            .bytes()
            .await
            // Meta answered a status: it acted, but the answer is lost.
            .map_err(|e| Unreachable::NoAnswer(e.without_url().to_string()))?
            .to_vec();
        Ok(GraphAnswer {
            status,
            headers,
            body,
            latency: started.elapsed(),
        })
    }
}
