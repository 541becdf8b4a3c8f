//! What to do with a post, decided from what is stored and what Meta
//! answered: plain functions, no I/O (the run in `run.rs` carries them out).

use serde_json::Value;
use shared::time::{Duration, OffsetDateTime};

use crate::post::{Failure, Post, Status};

/// Video containers may be made this long before `publish_at`, so that
/// Meta's processing is done in time (containers live 24 hours).
pub const VIDEO_LEAD: Duration = Duration::hours(1);
/// A container's status is checked at most this often.
pub const POLL_EVERY: Duration = Duration::minutes(1);
/// Processing longer than this fails the post.
pub const MAX_PROCESSING: Duration = Duration::hours(2);
/// A full quota is looked at again after this long.
pub const QUOTA_RECHECK: Duration = Duration::minutes(10);
/// Meta throttling: the post waits this long.
pub const THROTTLE_WAIT: Duration = Duration::minutes(5);
/// Failures that may pass (Meta unreachable, 5xx) before the post fails.
pub const MAX_TRANSIENT_FAILURES: u32 = 5;

/// What Meta's answer to a call means for the post.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaResult {
    Ok(Value),
    /// Meta says the token is dead (190, 102).
    NeedsReauth(Value),
    /// Meta throttles the account or the app.
    Throttled(Value),
    /// The daily publishing limit (2207042).
    QuotaFull(Value),
    /// Meta could not fetch or refused the media.
    MediaRejected(Value),
    /// The account is restricted or the post looks like spam: a human must act.
    Refused(Value),
    /// The container expired or went missing: make new ones.
    NewContainer(Value),
    /// It may pass: try again later (Meta said it failed).
    Transient(Value),
    /// No answer: whether Meta acted is unknown (timeout, 5xx on a POST).
    Unknown,
}

const MEDIA_CODES: [i64; 6] = [9004, 352, 36000, 36001, 36003, 36004];
const MEDIA_SUBCODES: [i64; 12] = [
    2207052, 2207026, 2207004, 2207005, 2207009, 2207010, 2207023, 2207028, 2207040, 2207057,
    2207034, 2207035,
];
const TRANSIENT_SUBCODES: [i64; 5] = [2207003, 2207001, 2207032, 2207027, 2207008];
const NEW_CONTAINER_SUBCODES: [i64; 3] = [2207020, 2207053, 2207006];
const REFUSED_SUBCODES: [i64; 2] = [2207051, 2207050];

fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(|c| c.as_i64().or_else(|| c.as_str()?.parse().ok()))
}

/// Meta's answer (`status`, its JSON body) classified.
pub fn classify(status: u16, body: Value) -> MetaResult {
    let Some(error) = body.get("error").cloned() else {
        return if status < 400 {
            MetaResult::Ok(body)
        } else {
            MetaResult::Transient(body)
        };
    };
    let code = int(error.get("code"));
    let sub = int(error.get("error_subcode"));
    let has = |list: &[i64]| sub.is_some_and(|s| list.contains(&s));
    if matches!(code, Some(190 | 102)) {
        MetaResult::NeedsReauth(error)
    } else if sub == Some(2207042) || (code == Some(9) && sub.is_none()) {
        MetaResult::QuotaFull(error)
    } else if has(&MEDIA_SUBCODES) || code.is_some_and(|c| MEDIA_CODES.contains(&c)) {
        MetaResult::MediaRejected(error)
    } else if has(&REFUSED_SUBCODES) {
        MetaResult::Refused(error)
    } else if has(&NEW_CONTAINER_SUBCODES) {
        MetaResult::NewContainer(error)
    } else if has(&TRANSIENT_SUBCODES) || matches!(code, Some(1 | 2 | -1 | -2)) || status >= 500 {
        MetaResult::Transient(error)
    } else if shared::graph::ratelimit::is_throttling(code) {
        MetaResult::Throttled(error)
    } else {
        MetaResult::Refused(error)
    }
}

/// A container's `status_code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerStatus {
    InProgress,
    Finished,
    Published,
    /// `ERROR`, with Meta's `status` text.
    Error(String),
    Expired,
}

impl ContainerStatus {
    /// From `GET /{container-id}?fields=status_code,status`.
    pub fn of(body: &Value) -> Option<Self> {
        let text = body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Some(match body.get("status_code")?.as_str()? {
            "IN_PROGRESS" => Self::InProgress,
            "FINISHED" => Self::Finished,
            "PUBLISHED" => Self::Published,
            "ERROR" => Self::Error(text.to_string()),
            "EXPIRED" => Self::Expired,
            _ => return None,
        })
    }
}

/// When a post's work starts: `publish_at` (now when absent), an hour ahead
/// for video.
pub fn first_due(post: &Post) -> OffsetDateTime {
    let at = post.request.publish_at.unwrap_or(post.created_at);
    if post.request.has_video() {
        at - VIDEO_LEAD
    } else {
        at
    }
}

/// Whether `media_publish` may be called now: never before `publish_at`.
pub fn may_publish(post: &Post, now: OffsetDateTime) -> bool {
    post.request.publish_at.is_none_or(|at| now >= at)
}

/// The status shown while work goes on: `scheduled` until `publish_at`.
pub fn working_status(post: &Post, now: OffsetDateTime, processing: bool) -> Status {
    if !may_publish(post, now) {
        Status::Scheduled
    } else if processing {
        Status::Processing
    } else {
        Status::Publishing
    }
}

/// Whether the account's 24 hours have room for one more post.
pub fn quota_has_room(body: &Value) -> bool {
    let entry = body.pointer("/data/0");
    let usage = int(entry.and_then(|e| e.get("quota_usage"))).unwrap_or(0);
    match int(entry.and_then(|e| e.pointer("/config/quota_total"))) {
        Some(total) => usage < total,
        // Meta did not say: let media_publish tell (2207042 waits).
        None => true,
    }
}

/// The next step for a post whose containers exist, given the parent's
/// status.
#[derive(Clone, Debug, PartialEq)]
pub enum AfterPoll {
    /// Poll again at this time (status `processing`, or `scheduled`).
    Wait(OffsetDateTime),
    /// Ready, but not before `publish_at`: come back then.
    WaitUntil(OffsetDateTime),
    Publish,
    /// `media_publish` was attempted and the container says it is published.
    AlreadyPublished,
    Fail(Failure),
    /// The container is gone: make new ones (never after a publish attempt).
    Recreate,
}

pub fn after_poll(post: &Post, status: &ContainerStatus, now: OffsetDateTime) -> AfterPoll {
    let made = post.containers.as_ref().map_or(now, |c| c.created_at);
    match status {
        ContainerStatus::Published => AfterPoll::AlreadyPublished,
        ContainerStatus::Finished => match post.request.publish_at {
            Some(at) if now < at => AfterPoll::WaitUntil(at),
            _ => AfterPoll::Publish,
        },
        ContainerStatus::InProgress if now - made >= MAX_PROCESSING => AfterPoll::Fail(fail(
            "processing_timeout",
            "Meta was still processing the media after 2 hours.",
            Value::Null,
        )),
        ContainerStatus::InProgress => AfterPoll::Wait(now + POLL_EVERY),
        ContainerStatus::Error(text) => {
            let text = without_queries(text);
            AfterPoll::Fail(fail(
                "media_rejected",
                &format!("Meta could not process the media: {text}"),
                serde_json::json!({"status_code": "ERROR", "status": text}),
            ))
        }
        ContainerStatus::Expired if post.publish_attempted => AfterPoll::Fail(fail(
            "container_expired",
            "The container expired before Meta confirmed the publish.",
            serde_json::json!({"status_code": "EXPIRED"}),
        )),
        ContainerStatus::Expired => AfterPoll::Recreate,
    }
}

/// What of Meta's error a post keeps and shows: its codes, type and trace
/// id, and its message without any URL's query (a presigned `GET`'s
/// signature, a token parameter), cut at 500 characters; never the whole
/// body.
pub fn meta_summary(error: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["code", "error_subcode", "type", "fbtrace_id"] {
        if let Some(v) = error.get(key).filter(|v| v.is_number() || v.is_string()) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(message) = error.get("message").and_then(Value::as_str) {
        out.insert("message".into(), Value::String(without_queries(message)));
    }
    Value::Object(out)
}

/// `text` with every URL cut at its query, at most 500 characters.
pub fn without_queries(text: &str) -> String {
    let words: Vec<&str> = text
        .split(' ')
        .map(|w| match w.split_once("://") {
            Some(_) => w.split(['?', '#']).next().unwrap_or(w),
            None => w,
        })
        .collect();
    words.join(" ").chars().take(500).collect()
}

pub fn fail(reason: &str, message: &str, meta: Value) -> Failure {
    Failure {
        reason: reason.into(),
        message: message.into(),
        meta,
    }
}

/// What a failed call means for the post: wait until a time (status
/// given), or fail.
#[derive(Clone, Debug, PartialEq)]
pub enum OnError {
    Wait(Status, OffsetDateTime),
    Fail(Failure),
    /// Make the containers again (they expired or went missing).
    Recreate,
}

/// The decision for a call that did not succeed. `transient_failures` is the
/// count before this one.
pub fn on_error(result: &MetaResult, post: &Post, now: OffsetDateTime) -> OnError {
    let keep = if post.publish_attempted {
        // Meta may have published: the post says so until its container does.
        Status::Publishing
    } else {
        working_status(post, now, post.containers.is_some())
    };
    match result {
        MetaResult::NeedsReauth(m) => OnError::Fail(fail(
            "connection_needs_reauth",
            "Meta says the connection's token is no longer valid: connect again.",
            meta_summary(m),
        )),
        MetaResult::Throttled(_) => OnError::Wait(keep, now + THROTTLE_WAIT),
        MetaResult::QuotaFull(_) => OnError::Wait(Status::WaitingForQuota, now + QUOTA_RECHECK),
        MetaResult::MediaRejected(m) => OnError::Fail(fail(
            "media_rejected",
            "Meta could not fetch the media or refused it.",
            meta_summary(m),
        )),
        MetaResult::Refused(m) => OnError::Fail(fail(
            "meta_refused",
            "Meta refused the post.",
            meta_summary(m),
        )),
        MetaResult::NewContainer(_) if !post.publish_attempted => OnError::Recreate,
        MetaResult::Transient(m) | MetaResult::NewContainer(m)
            if post.transient_failures + 1 >= MAX_TRANSIENT_FAILURES =>
        {
            OnError::Fail(fail(
                "meta_unavailable",
                "Meta kept failing; the post was given up.",
                meta_summary(m),
            ))
        }
        MetaResult::Transient(_) | MetaResult::NewContainer(_) | MetaResult::Unknown => {
            OnError::Wait(keep, now + POLL_EVERY)
        }
        MetaResult::Ok(_) => OnError::Wait(keep, now),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
pub(crate) mod tests;
