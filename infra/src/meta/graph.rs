//! The Graph calls a product makes with a connection (META_PLATFORM.md,
//! "Graph calls a product makes"), emulated on both hosts for the proxy: the
//! token from the `Authorization` header, `appsecret_proof` on the Facebook
//! host, usage headers on every answer, and throttling per account on demand.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{KeyInit, Mac};
use serde_json::{json, Value};

use super::{enter, graph_error, token_of, Grant, Inner, Kind, Shared};

/// Emulated Graph state the tests can set and read.
pub(super) struct GraphState {
    /// Account or Page id → (Meta error code, minutes until access returns).
    pub throttled: std::collections::HashMap<String, (i64, i64)>,
    /// Every message sent through `POST .../messages`: (sender id, body).
    pub sent: Vec<(String, Value)>,
    /// `x-app-usage` `call_count` reported on every answer.
    pub app_call_count: u32,
    /// Answers carry `access_token` fields (as a misbehaving Meta might).
    pub leak_tokens: bool,
    /// How many media each account has (`GET .../media` pages through them).
    pub media_count: usize,
    pub next_id: u64,
    /// Every object served (media, comments, replies) → the account it
    /// belongs to: Meta serves an object only to a token of its account.
    pub objects: std::collections::HashMap<String, String>,
    /// The content-publishing flow (containers, media, the daily limit).
    pub publishing: super::publishing::Publishing,
}

impl Default for GraphState {
    fn default() -> Self {
        Self {
            throttled: Default::default(),
            sent: Vec::new(),
            app_call_count: 0,
            leak_tokens: false,
            media_count: 3,
            next_id: 0,
            objects: Default::default(),
            publishing: Default::default(),
        }
    }
}

/// Who a token acts for on the Graph hosts.
struct Actor {
    /// The Instagram account (both providers).
    account_id: String,
    /// The Page (facebook).
    page_id: Option<String>,
    token: String,
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

fn query_map(uri: &Uri) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn actor(i: &Inner, host: &str, headers: &HeaderMap, uri: &Uri) -> Result<Actor, Response> {
    let token = bearer(headers);
    if token.is_none() && query_map(uri).contains_key("access_token") {
        // The proxy must never put a token in a URL.
        return Err(graph_error(400, 100, "emulator: token in the query string"));
    }
    let kinds: &[&str] = if host == "instagram" {
        &["ig_long"]
    } else {
        &["page"]
    };
    let t = token_of(i, token.as_ref(), kinds)?;
    let token = token.unwrap_or_default();
    match (&t.kind, &t.grant) {
        (Kind::IgLong, Grant::Instagram(p)) => Ok(Actor {
            account_id: p.account_id.clone(),
            page_id: None,
            token,
        }),
        (Kind::Page(page), Grant::Facebook(person)) => {
            let proof = query_map(uri).get("appsecret_proof").cloned();
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(i.apps.facebook_app_secret.as_bytes())
                    .expect("any key");
            mac.update(token.as_bytes());
            if proof.as_deref() != Some(hex::encode(mac.finalize().into_bytes()).as_str()) {
                return Err(graph_error(
                    400,
                    100,
                    "appsecret_proof is required and must match",
                ));
            }
            let account_id = person
                .pages
                .iter()
                .find(|p| &p.id == page)
                .and_then(|p| p.instagram.clone())
                .map(|(id, _)| id)
                .unwrap_or_default();
            Ok(Actor {
                account_id,
                page_id: Some(page.clone()),
                token,
            })
        }
        _ => Err(graph_error(400, 190, "Invalid OAuth access token")),
    }
}

fn with_usage(i: &mut Inner, actor: &Actor, status: StatusCode, mut body: Value) -> Response {
    let actor_id = actor.page_id.as_deref().unwrap_or(&actor.account_id);
    let g = &mut i.graph;
    g.next_id += 1;
    if g.leak_tokens {
        // What a careless Meta answer could carry: token fields, the
        // caller's own token as a value, and URLs with credentials in them.
        body["access_token"] = json!("EAAleaked");
        body["nested"] = json!({"access_token": "EAAleaked2"});
        body["echo"] = json!([actor.token]);
        body["debug_link"] = json!(format!(
            "https://graph.example/v1/x?access_token={}&appsecret_proof=proof&ok=1",
            actor.token
        ));
    }
    let regain = g.throttled.get(actor_id).map_or(0, |t| t.1);
    let usage = json!({actor_id: [{"type": "instagram", "call_count": if regain > 0 { 100 } else { 12 },
        "total_cputime": 5, "total_time": 7, "estimated_time_to_regain_access": regain}]});
    let app = json!({"call_count": g.app_call_count, "total_time": 1, "total_cputime": 1});
    (
        status,
        [
            ("x-business-use-case-usage", usage.to_string()),
            ("x-app-usage", app.to_string()),
            ("x-fb-trace-id", format!("emu{}", g.next_id)),
        ],
        Json(body),
    )
        .into_response()
}

/// Where a call arrived, to build Meta's absolute paging URLs.
struct Here<'a> {
    /// `host:port` of the emulator.
    origin: &'a str,
    /// `instagram` or `facebook`.
    host: &'a str,
    version: &'a str,
}

/// One page of an account's media, paged as Meta pages: `limit` (default
/// 25), `after` / `before` cursors, and `paging.next` / `previous` as
/// absolute Graph URLs carrying the caller's token (and, on the Facebook
/// host, its `appsecret_proof`) like Meta's do.
fn media_page(
    here: &Here<'_>,
    actor: &Actor,
    q: &std::collections::HashMap<String, String>,
    g: &mut GraphState,
) -> Value {
    let count = g.media_count;
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let cursor = |c: &str| c.strip_prefix("QVFI").and_then(|n| n.parse::<usize>().ok());
    let start = match (q.get("after"), q.get("before")) {
        (Some(a), _) => cursor(a).map_or(0, |n| n + 1),
        (None, Some(b)) => cursor(b).unwrap_or(0).saturating_sub(limit),
        (None, None) => 0,
    }
    .min(count);
    let end = (start + limit).min(count);
    let data: Vec<Value> = (start..end).map(|k| {
        let n = k + 1;
        // The account's own media: ids derived from its id, known as its.
        let id = format!("{}{n:04}", actor.account_id);
        g.objects.insert(id.clone(), actor.account_id.clone());
        json!({"id": id, "caption": format!("Post {n}"), "media_type": "IMAGE",
            "media_url": format!("https://cdn.example.com/{n}.jpg"), "permalink": format!("https://instagram.com/p/{n}"),
            "timestamp": "2026-11-20T10:00:00+0000"})
    }).collect();
    let link = |name: &str, at: usize| {
        let mut url = url::Url::parse(&format!(
            "http://{}/graph.{}.com/{}/{}/media",
            here.origin, here.host, here.version, actor.account_id
        ))
        .expect("a URL");
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("access_token", &actor.token);
            if let Some(proof) = q.get("appsecret_proof") {
                pairs.append_pair("appsecret_proof", proof);
            }
            if let Some(fields) = q.get("fields") {
                pairs.append_pair("fields", fields);
            }
            pairs.append_pair("limit", &limit.to_string());
            pairs.append_pair(name, &format!("QVFI{at}"));
        }
        url.to_string()
    };
    let mut paging = json!({"cursors": {
        "before": format!("QVFI{start}"), "after": format!("QVFI{}", end.saturating_sub(1))}});
    if end < count {
        paging["next"] = json!(link("after", end - 1));
    }
    if start > 0 {
        paging["previous"] = json!(link("before", start));
    }
    json!({"data": data, "paging": paging})
}

/// Every Graph call no other route serves, on either host.
pub(super) async fn fallback(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let (host, rest) = if let Some(r) = path.strip_prefix("/graph.instagram.com/") {
        ("instagram", r)
    } else if let Some(r) = path.strip_prefix("/graph.facebook.com/") {
        ("facebook", r)
    } else {
        return (StatusCode::NOT_FOUND, "emulated Meta: no such host or path").into_response();
    };
    let mut segs = rest.split('/');
    let version = segs.next().unwrap_or_default().to_string();
    if !version.starts_with('v') {
        return graph_error(400, 2500, "Unknown path components");
    }
    let segs: Vec<String> = segs.map(str::to_string).collect();
    if let Some(r) = enter(&s, "graph").await {
        return r;
    }
    if segs.last().map(String::as_str) == Some("media_publish") {
        if let Some(r) = enter(&s, "media_publish").await {
            return r;
        }
    }
    if method == Method::POST && segs.last().map(String::as_str) == Some("media") {
        if let Err(refused) = super::publishing::fetch_media(&s, &uri, &body).await {
            return refused;
        }
    }
    let call = Call {
        host,
        version: &version,
        segs: &segs,
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let (response, stall) = answer(&s, &call);
    if let Some(gate) = stall {
        // Meta acted; its answer is late (a timed-out publish).
        gate.pass().await;
    }
    response
}

/// Meta's answer for an object that does not exist or is not the token's
/// account's (error 100, subcode 33), whichever it is.
fn no_such_object(method: &Method, id: &str) -> Response {
    let message = format!(
        "Unsupported {} request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
        method.as_str().to_ascii_lowercase()
    );
    let body = json!({"error": {"message": message, "type": "GraphMethodException", "code": 100,
        "error_subcode": 33, "fbtrace_id": "emulated"}});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// One Graph call, as it arrived.
struct Call<'a> {
    host: &'a str,
    version: &'a str,
    segs: &'a [String],
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a Bytes,
}

/// The answer to a Graph call, and a gate to hold it at (after Meta acted).
fn answer(s: &Shared, call: &Call<'_>) -> (Response, Option<super::Gate>) {
    let Call {
        host,
        version: _,
        segs,
        method,
        uri,
        headers,
        body,
    } = *call;
    let mut i = s.lock().unwrap();
    let actor = match actor(&i, host, headers, uri) {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let actor_id = actor
        .page_id
        .clone()
        .unwrap_or_else(|| actor.account_id.clone());
    if let Some((code, _)) = i.graph.throttled.get(&actor_id).copied() {
        let body = json!({"error": {"message": "Application request limit reached", "type": "OAuthException",
            "code": code, "is_transient": true, "fbtrace_id": "emulated"}});
        return (
            with_usage(&mut i, &actor, StatusCode::BAD_REQUEST, body),
            None,
        );
    }
    let first = segs.first().map(String::as_str).unwrap_or_default();
    let own = first == "me" || first == actor.account_id || Some(first) == actor.page_id.as_deref();
    let params = super::publishing::params(uri, body);
    match super::publishing::answer(
        &mut i,
        &actor.account_id,
        method.as_str(),
        own,
        &segs.iter().map(String::as_str).collect::<Vec<_>>(),
        &params,
    ) {
        Some(super::publishing::Answer::Ok(answer, stall)) => {
            return (with_usage(&mut i, &actor, StatusCode::OK, answer), stall)
        }
        Some(super::publishing::Answer::Error(r)) => return (r, None),
        None => {}
    }
    // Any other object: only its own account's token reads or acts on it.
    if !own && i.graph.objects.get(first) != Some(&actor.account_id) {
        return (no_such_object(method, first), None);
    }
    match respond(&mut i.graph, call, &actor, own) {
        Ok(answer) => (with_usage(&mut i, &actor, StatusCode::OK, answer), None),
        Err(refused) => (refused, None),
    }
}

/// What Meta answers to a call the token may make (`own`: on its own
/// account or Page; else on an object of its account's).
fn respond(
    g: &mut GraphState,
    call: &Call<'_>,
    actor: &Actor,
    own: bool,
) -> Result<Value, Response> {
    let Call {
        host,
        version,
        segs,
        method,
        uri,
        headers,
        body,
    } = *call;
    let first = segs.first().map(String::as_str).unwrap_or_default();
    let rest: Vec<&str> = segs.iter().skip(1).map(String::as_str).collect();
    let next = g.next_id + 1;
    let answer = match (method.as_str(), own, rest.as_slice()) {
        ("GET", true, ["media"]) => {
            let here = Here {
                origin: headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1"),
                host,
                version,
            };
            media_page(&here, actor, &query_map(uri), g)
        }
        ("GET", true, ["insights"]) => json!({"data": [{"name": "reach", "period": "day",
            "values": [{"value": 42, "end_time": "2026-11-21T08:00:00+0000"}], "title": "Reach", "id": "x"}]}),
        ("POST", true, ["messages"]) => send_message(g, actor, body, next)?,
        ("GET", true, []) if host == "instagram" => {
            json!({"id": actor.account_id, "username": "emulated"})
        }
        ("GET", false, []) => json!({"id": first, "caption": "A post", "media_type": "IMAGE"}),
        ("GET", false, ["comments"]) => {
            let comment = format!("{first}0001");
            g.objects.insert(comment.clone(), actor.account_id.clone());
            json!({"data": [{"id": comment, "text": "Nice!", "timestamp": "2026-11-21T09:00:00+0000"}]})
        }
        ("POST", false, ["replies"]) => {
            let reply = format!("{first}{next:04}");
            g.objects.insert(reply.clone(), actor.account_id.clone());
            json!({"id": reply})
        }
        ("POST", false, []) => json!({"success": true}),
        ("DELETE", false, []) => json!({"success": true}),
        _ => return Err(graph_error(400, 100, "Unsupported request (emulated Meta)")),
    };
    Ok(answer)
}

/// `POST .../messages`: recorded as sent by the account (or Page).
fn send_message(
    g: &mut GraphState,
    actor: &Actor,
    body: &Bytes,
    next: u64,
) -> Result<Value, Response> {
    let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (Some(to), true) = (
        json_body.pointer("/recipient/id").and_then(Value::as_str),
        json_body.get("message").is_some(),
    ) else {
        return Err(graph_error(
            400,
            100,
            "(#100) recipient and message are required",
        ));
    };
    let answer = json!({"recipient_id": to, "message_id": format!("m_emu{next}")});
    let sender = actor
        .page_id
        .clone()
        .unwrap_or_else(|| actor.account_id.clone());
    g.sent.push((sender, json_body));
    Ok(answer)
}
