//! Meta's content-publishing flow, emulated (META_PLATFORM.md, "Content
//! publishing"): containers (`POST /{ig-user-id}/media`), their
//! `status_code` (images `FINISHED` at once, videos after a few polls, a
//! switch makes them `ERROR` or `EXPIRED`), `media_publish` (which counts
//! against a configurable daily limit, refuses a container not `FINISHED`
//! and one already published), the permalink, and
//! `content_publishing_limit`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::Uri;
use axum::response::Response;
use serde_json::{json, Value};

use super::{graph_error, Gate, Inner, MetaEmulator, Shared};

#[derive(Clone, Debug)]
struct Container {
    account: String,
    /// Polls left before a video container is `FINISHED`.
    polls_left: u32,
    /// `ERROR` with this text, or `EXPIRED`.
    outcome: Option<&'static str>,
    error_text: String,
    published: bool,
}

/// The publishing state of the emulated Meta.
pub struct Publishing {
    containers: HashMap<String, Container>,
    /// Media id → its account, its permalink.
    media: HashMap<String, (String, String)>,
    /// Every publish: (account, container id).
    pub published: Vec<(String, String)>,
    /// Account → posts published in the rolling 24 hours.
    pub usage: HashMap<String, u32>,
    pub quota_total: u32,
    /// Status polls a video container takes to finish.
    pub video_polls: u32,
    /// New containers end `ERROR` with this text.
    pub fail_containers: Option<String>,
    /// New containers end `EXPIRED`.
    pub expire_containers: bool,
    /// Every media Meta fetched from a local server (an upload's presigned
    /// `GET` in the emulated S3).
    pub fetched: Vec<Fetched>,
    /// `media_publish` publishes, then holds its answer at this gate.
    pub stall_after_publish: Option<Gate>,
    next: u64,
}

impl Default for Publishing {
    fn default() -> Self {
        Self {
            containers: HashMap::new(),
            media: HashMap::new(),
            published: Vec::new(),
            usage: HashMap::new(),
            quota_total: 50,
            video_polls: 3,
            fail_containers: None,
            expire_containers: false,
            fetched: Vec::new(),
            stall_after_publish: None,
            next: 0,
        }
    }
}

/// A media URL Meta fetched, and what it got.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub url: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl MetaEmulator {
    /// How many containers were made (carousel children included).
    pub fn containers_made(&self) -> usize {
        self.with(|i| i.graph.publishing.containers.len())
    }

    /// Every media fetched from a local server, in order.
    pub fn fetched_media(&self) -> Vec<Fetched> {
        self.with(|i| i.graph.publishing.fetched.clone())
    }
}

/// Meta cURLs a container's media when it is created (META_PLATFORM.md,
/// "Getting media to Meta"). The emulation fetches those on a local server
/// (the emulated S3's presigned `GET`s) and takes any other host on trust;
/// a fetch that fails, or is not a photo or video, refuses the container as
/// Meta does (`9004` / `2207052`).
pub(super) async fn fetch_media(s: &Shared, uri: &Uri, body: &Bytes) -> Result<(), Response> {
    let p = params(uri, body);
    for name in ["image_url", "video_url", "cover_url"] {
        let Some(url) = p.get(name).and_then(|u| url::Url::parse(u).ok()) else {
            continue;
        };
        if !matches!(url.host_str(), Some("127.0.0.1" | "localhost")) {
            continue;
        }
        let fetched = fetch(&url).await.ok_or_else(|| {
            refusal(
                9004,
                2207052,
                "The media could not be fetched from this uri",
            )
        })?;
        s.lock().unwrap().graph.publishing.fetched.push(fetched);
    }
    Ok(())
}

async fn fetch(url: &url::Url) -> Option<Fetched> {
    let resp = reqwest::Client::new()
        .get(url.clone())
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !(content_type.starts_with("image/") || content_type.starts_with("video/")) {
        return None;
    }
    let bytes = resp.bytes().await.ok()?.to_vec();
    Some(Fetched {
        url: url.to_string(),
        content_type,
        bytes,
    })
}

pub(super) enum Answer {
    /// A 200 answer, and a gate to hold it at.
    Ok(Value, Option<Gate>),
    Error(Response),
}

/// The call's parameters: the query and a form body.
pub(super) fn params(uri: &Uri, body: &Bytes) -> HashMap<String, String> {
    let mut p: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if !body.starts_with(b"{") {
        p.extend(url::form_urlencoded::parse(body).into_owned());
    }
    p
}

fn refusal(code: i64, subcode: i64, message: &str) -> Response {
    let mut r = graph_error(400, code, message);
    // Meta's publishing errors carry a subcode.
    let body = json!({"error": {"message": message, "type": "OAuthException", "code": code,
        "error_subcode": subcode, "is_transient": false, "fbtrace_id": "emulated"}});
    *r.body_mut() = axum::body::Body::from(body.to_string());
    r
}

fn error(code: i64, subcode: i64, message: &str) -> Answer {
    Answer::Error(refusal(code, subcode, message))
}

/// The publishing calls; `None`: not one of them.
pub(super) fn answer(
    i: &mut Inner,
    account: &str,
    method: &str,
    own: bool,
    segs: &[&str],
    params: &HashMap<String, String>,
) -> Option<Answer> {
    let p = &mut i.graph.publishing;
    Some(match (method, own, segs) {
        ("POST", true, [_, "media"]) => create(p, account, params),
        ("POST", true, [_, "media_publish"]) => {
            let answer = publish(p, account, params);
            if let Answer::Ok(body, _) = &answer {
                // A published media is an object of the account's.
                let id = body["id"].as_str().unwrap_or_default().to_string();
                i.graph.objects.insert(id, account.to_string());
            }
            answer
        }
        ("GET", true, [_, "content_publishing_limit"]) => {
            let usage = p.usage.get(account).copied().unwrap_or(0);
            let mut entry = json!({"quota_usage": usage});
            if params.get("fields").is_some_and(|f| f.contains("config")) {
                entry["config"] = json!({"quota_total": p.quota_total, "quota_duration": 86400});
            }
            Answer::Ok(json!({"data": [entry]}), None)
        }
        // Containers and media are served to their own account's token only.
        ("GET", false, [id]) if p.containers.get(*id).is_some_and(|c| c.account == account) => {
            status(p, id)
        }
        ("GET", false, [id]) if p.media.get(*id).is_some_and(|(a, _)| a == account) => {
            Answer::Ok(json!({"id": id, "permalink": p.media[*id].1}), None)
        }
        _ => return None,
    })
}

fn create(p: &mut Publishing, account: &str, params: &HashMap<String, String>) -> Answer {
    let media_type = params
        .get("media_type")
        .map(String::as_str)
        .unwrap_or("IMAGE");
    let video = params.contains_key("video_url");
    let has_media = params.contains_key("image_url") || video;
    if media_type == "CAROUSEL" {
        let children: Vec<&str> = params
            .get("children")
            .map_or(vec![], |c| c.split(',').collect());
        if !(2..=10).contains(&children.len())
            || children.iter().any(|c| !p.containers.contains_key(*c))
        {
            return error(100, 2207028, "Carousels need 2 to 10 existing children");
        }
    } else if !has_media {
        return error(100, 2207023, "The media type is unknown");
    }
    if params.contains_key("caption") && params.get("is_carousel_item").is_some() {
        return error(100, 1, "Carousel items take no caption");
    }
    p.next += 1;
    let id = format!("1791{:012}", p.next);
    let outcome = if p.fail_containers.is_some() {
        Some("ERROR")
    } else if p.expire_containers {
        Some("EXPIRED")
    } else {
        None
    };
    p.containers.insert(
        id.clone(),
        Container {
            account: account.to_string(),
            polls_left: if video { p.video_polls } else { 0 },
            outcome,
            error_text: p.fail_containers.clone().unwrap_or_default(),
            published: false,
        },
    );
    Answer::Ok(json!({"id": id}), None)
}

fn status(p: &mut Publishing, id: &str) -> Answer {
    let c = p.containers.get_mut(id).expect("checked");
    let body = if c.published {
        json!({"id": id, "status_code": "PUBLISHED", "status": "Published"})
    } else if let Some(outcome) = c.outcome {
        json!({"id": id, "status_code": outcome, "status": c.error_text})
    } else if c.polls_left > 0 {
        c.polls_left -= 1;
        json!({"id": id, "status_code": "IN_PROGRESS", "status": "In Progress"})
    } else {
        json!({"id": id, "status_code": "FINISHED", "status": "Finished"})
    };
    Answer::Ok(body, None)
}

fn publish(p: &mut Publishing, account: &str, params: &HashMap<String, String>) -> Answer {
    let Some(id) = params.get("creation_id") else {
        return error(100, 2207023, "creation_id is required");
    };
    let Some(c) = p.containers.get(id).filter(|c| c.account == account) else {
        return error(24, 2207008, "The container does not exist or expired");
    };
    if c.published {
        return error(100, 2207008, "The container was already published");
    }
    if c.outcome.is_some() || c.polls_left > 0 {
        return error(9007, 2207027, "The media is not ready for publishing");
    }
    let usage = p.usage.entry(account.to_string()).or_default();
    if *usage >= p.quota_total {
        return error(9, 2207042, "The daily publishing limit was reached");
    }
    *usage += 1;
    p.containers.get_mut(id).expect("checked").published = true;
    p.next += 1;
    let media_id = format!("1792{:012}", p.next);
    let permalink = format!("https://www.instagram.com/p/EMU{}/", p.next);
    p.media
        .insert(media_id.clone(), (account.to_string(), permalink));
    p.published.push((account.to_string(), id.clone()));
    Answer::Ok(json!({"id": media_id}), p.stall_after_publish.clone())
}
