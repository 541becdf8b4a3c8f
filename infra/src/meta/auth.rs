//! What every emulated endpoint shares: Meta's error shapes, the call
//! counter with its delays, failures and gates, issuing and checking tokens
//! and `appsecret_proof`.

#![allow(clippy::result_large_err)]

use super::*;

pub(super) fn graph_error(status: u16, code: i64, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "emulated"}})),
    )
        .into_response()
}

/// Counts the call, waits the configured delay, and returns a forced failure if set.
pub(super) async fn enter(s: &Shared, endpoint: &str) -> Option<Response> {
    let (delay, failure, gate) = {
        let mut i = s.lock().unwrap();
        *i.calls.entry(endpoint.into()).or_default() += 1;
        (
            i.delay,
            i.failures.get(endpoint).cloned(),
            i.gates.get(endpoint).cloned(),
        )
    };
    if let Some(gate) = gate {
        gate.pass().await;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    failure.map(|(status, body)| {
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body,
        )
            .into_response()
    })
}

pub(super) fn issue(i: &mut Inner, prefix: &str, kind: Kind, grant: Grant) -> String {
    let t = secret(prefix);
    i.issued.push(t.clone());
    i.tokens.insert(
        t.clone(),
        Token {
            kind,
            grant,
            valid: true,
        },
    );
    t
}

pub(super) fn bearer_or_query(headers: &HeaderMap, q: &HashMap<String, String>) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| q.get("access_token").cloned())
}

pub(super) fn token_of(
    i: &Inner,
    token: Option<&String>,
    kinds: &[&str],
) -> Result<Token, Response> {
    let t = token
        .and_then(|t| i.tokens.get(t))
        .filter(|t| t.valid)
        .ok_or_else(|| {
            graph_error(
                400,
                190,
                "Invalid OAuth access token - Cannot parse access token",
            )
        })?;
    let name = match &t.kind {
        Kind::IgShort => "ig_short",
        Kind::IgLong => "ig_long",
        Kind::FbShort => "fb_short",
        Kind::FbLong => "fb_long",
        Kind::Page(_) => "page",
    };
    if kinds.contains(&name) {
        Ok(t.clone())
    } else {
        Err(graph_error(
            400,
            190,
            "Invalid OAuth access token for this endpoint",
        ))
    }
}

/// The app has "Require App Secret" on: every call with a user or Page
/// token carries the token's `appsecret_proof`.
pub(super) fn check_proof(i: &Inner, q: &HashMap<String, String>) -> Result<(), Response> {
    let Some(token) = q.get("access_token") else {
        return Ok(());
    };
    let Some(proof) = q.get("appsecret_proof") else {
        return Err(graph_error(
            400,
            100,
            "API calls from the server require an appsecret_proof argument",
        ));
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(i.apps.facebook_app_secret.as_bytes())
        .expect("any key");
    mac.update(token.as_bytes());
    if hex::encode(mac.finalize().into_bytes()) == *proof {
        Ok(())
    } else {
        Err(graph_error(
            400,
            100,
            "Invalid appsecret_proof provided in the API argument",
        ))
    }
}

pub(super) fn ig_oauth_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error_type": "OAuthException", "code": 400, "error_message": message})),
    )
        .into_response()
}

/// Holds an endpoint's calls until released, and tells how many arrived:
/// a test orders concurrent calls with it instead of with delays.
#[derive(Clone)]
pub struct Gate {
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Gate {
    pub(super) fn new() -> Self {
        Self {
            arrived: Arc::new(tokio::sync::watch::channel(0).0),
            open: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Waits until `n` calls are held at the gate.
    pub async fn arrivals(&self, n: usize) {
        let mut rx = self.arrived.subscribe();
        let _ = rx.wait_for(|a| *a >= n).await;
    }

    /// Lets every held call (and every later one) through.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    pub(super) async fn pass(&self) {
        self.arrived.send_modify(|a| *a += 1);
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}
