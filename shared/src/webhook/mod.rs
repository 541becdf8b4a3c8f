//! Meta's webhook notifications and signed requests: verification and
//! parsing, as plain functions. This file splits a notification into updates
//! and gives each its kind and stable event id; `signature.rs` verifies
//! `X-Hub-Signature-256`, `signed_request.rs` the deauthorize and
//! data-deletion callbacks.
//!
//! Verification runs over the exact bytes received, before any parsing, in
//! constant time, with either app secret (Meta's docs don't say which one
//! signs Instagram-Login webhooks).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Meta sends up to 1000 updates a request; 2 MiB is far above that.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

mod signature;
mod signed_request;

pub use signature::{parse_signature, secret_eq, sign, signature_header, verify, SignatureError};
pub use signed_request::{
    make_signed_request, verify_signed_request, SignedRequest, SignedRequestError,
};

/// One update of a notification: what becomes one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update<'a> {
    /// Meta's `object` (`instagram`, `page`).
    pub object: String,
    /// `entry[].id`: the Instagram account (or, for `page`, the Page).
    pub entry_id: String,
    /// Meta's field: `messages`, `comments`, `message_reactions`, ...
    pub kind: String,
    /// Stable: the same item delivered again gives the same id.
    pub event_id: String,
    /// Meta's timestamp, milliseconds since the epoch.
    pub occurred_at_ms: Option<i64>,
    /// The item exactly as Meta sent it.
    pub raw: &'a str,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a Meta notification: {0}")]
pub struct ShapeError(pub &'static str);

#[derive(Deserialize)]
struct Envelope<'a> {
    object: String,
    #[serde(borrow)]
    entry: Vec<&'a RawValue>,
}

/// Entry keys that are not lists of updates.
const ENTRY_SCALARS: [&str; 4] = ["id", "time", "uid", "changed_fields"];

/// Splits a verified notification into updates, in Meta's order.
pub fn parse_notification(body: &[u8]) -> Result<Vec<Update<'_>>, ShapeError> {
    let envelope: Envelope<'_> = serde_json::from_slice(body)
        .map_err(|_| ShapeError("expected {\"object\", \"entry\": [...]}"))?;
    if envelope.object.is_empty() {
        return Err(ShapeError("empty object"));
    }
    let mut updates = Vec::new();
    for entry in envelope.entry {
        let entry: std::collections::BTreeMap<&str, &RawValue> =
            serde_json::from_str(entry.get()).map_err(|_| ShapeError("entry must be an object"))?;
        let entry_id = entry
            .get("id")
            .and_then(|raw| id_text(raw.get()))
            .ok_or(ShapeError("entry without id"))?;
        let entry_time = entry
            .get("time")
            .and_then(|t| t.get().parse::<f64>().ok())
            .map(to_millis);
        for (field, raw) in &entry {
            if ENTRY_SCALARS.contains(field) {
                continue;
            }
            let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
                continue; // not a list of updates
            };
            for item in items {
                updates.push(update(
                    &envelope.object,
                    &entry_id,
                    field,
                    item,
                    entry_time,
                )?);
            }
        }
    }
    Ok(updates)
}

fn id_text(raw: &str) -> Option<String> {
    match serde_json::from_str::<Value>(raw).ok()? {
        Value::String(s) if !s.is_empty() => Some(s),
        // Keep the digits as sent: ids exceed 2^53.
        Value::Number(_) => Some(raw.trim().to_string()),
        _ => None,
    }
}

/// Meta mixes seconds and milliseconds; anything past 1e11 is milliseconds.
fn to_millis(t: f64) -> i64 {
    if t >= 1e11 {
        t as i64
    } else {
        (t * 1000.0) as i64
    }
}

/// An update's kind (Meta's field) and, where Meta gives one, the natural id
/// its event id is made of.
fn kind_and_id(
    field: &str,
    obj: &serde_json::Map<String, Value>,
) -> Result<(String, Option<String>), ShapeError> {
    Ok(match field {
        "messaging" => {
            let kind = messaging_kind(obj);
            let key = messaging_key(&kind, obj);
            (kind, key)
        }
        "standby" => ("standby".to_string(), None),
        "changes" => {
            let kind = obj
                .get("field")
                .and_then(Value::as_str)
                .filter(|f| !f.is_empty())
                .ok_or(ShapeError("change without field"))?
                .to_string();
            let id = match kind.as_str() {
                "comments" | "live_comments" => obj
                    .get("value")
                    .and_then(|v| v.get("id"))
                    .and_then(|v| id_text(&v.to_string()))
                    .map(|id| format!("{kind}:{id}")),
                _ => None,
            };
            (kind, id)
        }
        other => (other.to_string(), None),
    })
}

/// The item's own timestamp (messaging items), or its change value's.
fn occurred_at(obj: &serde_json::Map<String, Value>) -> Option<i64> {
    obj.get("timestamp")
        .and_then(Value::as_f64)
        .or_else(|| {
            obj.get("value")
                .and_then(|v| v.get("timestamp"))
                .and_then(Value::as_f64)
        })
        .map(to_millis)
}

fn update<'a>(
    object: &str,
    entry_id: &str,
    field: &str,
    item: &'a RawValue,
    entry_time: Option<i64>,
) -> Result<Update<'a>, ShapeError> {
    let value: Value =
        serde_json::from_str(item.get()).map_err(|_| ShapeError("update is not JSON"))?;
    let obj = value
        .as_object()
        .ok_or(ShapeError("update must be an object"))?;
    let (kind, natural_id) = kind_and_id(field, obj)?;
    let occurred_at_ms = occurred_at(obj).or(entry_time);
    let key = match natural_id.filter(|id| id.len() <= 256) {
        Some(id) => id,
        None => format!(
            "{kind}:{}",
            hex::encode(Sha256::digest(item.get().as_bytes()))
        ),
    };
    Ok(Update {
        object: object.to_string(),
        entry_id: entry_id.to_string(),
        event_id: format!("{object}:{entry_id}:{key}"),
        kind,
        occurred_at_ms,
        raw: item.get(),
    })
}

/// What one messaging item says about its message, as the part of the event
/// id after `<object>:<entry>:`. A message, its unsend, each edit and each
/// reaction share the message's `mid` but are distinct notifications, so each
/// gets its own id; the same notification delivered again gets the same one.
///
/// - a message: `messages:<mid>` (the form ids always had: events stored
///   before keep de-duplicating);
/// - its unsend (`message.is_deleted`): `message_deleted:<mid>`;
/// - an edit (`message_edit`): `message_edit:<hash of mid and num_edit>`;
/// - a reaction: `message_reactions:<hash of mid, action, reaction, sender
///   and timestamp>` (a react, its unreact and a react again are three);
/// - anything else: `<kind>:<hash of the item's bytes>`.
///
/// Composite parts are hashed as a JSON array, so no `mid` can make two of
/// them collide.
fn messaging_key(kind: &str, obj: &serde_json::Map<String, Value>) -> Option<String> {
    let text = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let composite = |tag: &str, parts: &[Option<String>]| -> Option<String> {
        let parts: Vec<&String> = parts.iter().map(Option::as_ref).collect::<Option<_>>()?;
        let json = serde_json::to_string(&parts).ok()?;
        Some(format!(
            "{tag}:{}",
            hex::encode(Sha256::digest(json.as_bytes()))
        ))
    };
    match kind {
        "messages" => {
            let message = obj.get("message")?;
            let mid = text(message.get("mid"))?;
            if message.get("is_deleted").and_then(Value::as_bool) == Some(true) {
                Some(format!("message_deleted:{mid}"))
            } else {
                Some(format!("messages:{mid}"))
            }
        }
        "message_edit" => {
            let edit = obj.get("message_edit")?;
            composite(
                "message_edit",
                &[text(edit.get("mid")), text(edit.get("num_edit"))],
            )
        }
        "message_reactions" => {
            let reaction = obj.get("reaction")?;
            composite(
                "message_reactions",
                &[
                    text(reaction.get("mid")),
                    text(reaction.get("action")),
                    // `unreact` may carry neither: absent is a value too.
                    Some(
                        text(reaction.get("reaction"))
                            .or_else(|| text(reaction.get("emoji")))
                            .unwrap_or_default(),
                    ),
                    text(obj.get("sender").and_then(|s| s.get("id"))),
                    text(obj.get("timestamp")),
                ],
            )
        }
        _ => None,
    }
}

/// The field a messaging item belongs to.
fn messaging_kind(obj: &serde_json::Map<String, Value>) -> String {
    let kind = if obj.contains_key("message") {
        "messages"
    } else if obj.contains_key("message_edit") {
        "message_edit"
    } else if obj.contains_key("reaction") {
        "message_reactions"
    } else if obj.contains_key("postback") {
        "messaging_postbacks"
    } else if obj.contains_key("read") {
        "messaging_seen"
    } else if obj.contains_key("referral") {
        "messaging_referral"
    } else if obj.contains_key("optin") {
        "messaging_optins"
    } else if [
        "pass_thread_control",
        "take_thread_control",
        "request_thread_control",
    ]
    .iter()
    .any(|k| obj.contains_key(*k))
    {
        "messaging_handover"
    } else {
        "messaging"
    };
    kind.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messaging_items_get_kinds_and_stable_ids() {
        let body = br#"{"object":"instagram","entry":[{"id":"17841400000000001","time":1795260000123,"messaging":[
            {"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1795260000000,"message":{"mid":"m_1","text":"hi"}},
            {"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1795260000500,"reaction":{"mid":"m_1","action":"react","reaction":"love"}},
            {"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1795260000600,"postback":{"mid":"m_2","payload":"X"}},
            {"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":1795260000700,"read":{"mid":"m_1"}}
        ]}]}"#;
        let updates = parse_notification(body).unwrap();
        let kinds: Vec<&str> = updates.iter().map(|u| u.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "messages",
                "message_reactions",
                "messaging_postbacks",
                "messaging_seen"
            ]
        );
        assert_eq!(
            updates[0].event_id,
            "instagram:17841400000000001:messages:m_1"
        );
        assert_eq!(updates[0].occurred_at_ms, Some(1795260000000));
        assert!(updates[1]
            .event_id
            .starts_with("instagram:17841400000000001:message_reactions:"));
        assert_ne!(updates[1].event_id, updates[3].event_id);
        assert!(updates[0].raw.starts_with(r#"{"sender""#));
        // Same bytes again: same ids.
        let again = parse_notification(body).unwrap();
        assert_eq!(
            updates.iter().map(|u| &u.event_id).collect::<Vec<_>>(),
            again.iter().map(|u| &u.event_id).collect::<Vec<_>>()
        );
    }

    /// One messaging item, in a notification of its own.
    fn one(item: &str) -> String {
        let body = format!(
            r#"{{"object":"instagram","entry":[{{"id":"178","time":1795260000123,"messaging":[{item}]}}]}}"#
        );
        let updates = parse_notification(body.as_bytes()).unwrap();
        assert_eq!(updates.len(), 1);
        updates[0].event_id.clone()
    }

    #[test]
    fn unsend_edit_and_reactions_of_one_message_are_distinct_events() {
        let s = r#""sender":{"id":"9"},"recipient":{"id":"178"}"#;
        let notifications = [
            format!(r#"{{{s},"timestamp":1,"message":{{"mid":"m_1","text":"hi"}}}}"#),
            format!(r#"{{{s},"timestamp":2,"message":{{"mid":"m_1","is_deleted":true}}}}"#),
            format!(
                r#"{{{s},"timestamp":3,"message_edit":{{"mid":"m_1","text":"hey","num_edit":1}}}}"#
            ),
            format!(
                r#"{{{s},"timestamp":4,"message_edit":{{"mid":"m_1","text":"hey!","num_edit":2}}}}"#
            ),
            format!(
                r#"{{{s},"timestamp":5,"reaction":{{"mid":"m_1","action":"react","reaction":"love","emoji":"❤"}}}}"#
            ),
            format!(r#"{{{s},"timestamp":6,"reaction":{{"mid":"m_1","action":"unreact"}}}}"#),
            format!(
                r#"{{{s},"timestamp":7,"reaction":{{"mid":"m_1","action":"react","reaction":"love","emoji":"❤"}}}}"#
            ),
            format!(r#"{{{s},"timestamp":8,"read":{{"mid":"m_1"}}}}"#),
        ];
        let ids: Vec<String> = notifications.iter().map(|n| one(n)).collect();
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{ids:#?}");
        // The message keeps the id form events were always stored under.
        assert_eq!(ids[0], "instagram:178:messages:m_1");
        assert_eq!(ids[1], "instagram:178:message_deleted:m_1");
        assert!(ids[2].starts_with("instagram:178:message_edit:"));
        assert!(ids[4].starts_with("instagram:178:message_reactions:"));

        // A repeat is the same event, even re-serialised by Meta (keys in
        // another order, other spacing, the emoji unescaped).
        let repeats = [
            format!(r#"{{"message":{{"text":"hi","mid":"m_1"}},"timestamp":1,{s}}}"#),
            format!(r#"{{"message":{{"is_deleted":true,"mid":"m_1"}}, "timestamp":2,{s}}}"#),
            format!(
                r#"{{"message_edit":{{"num_edit":1,"mid":"m_1","text":"hey"}},"timestamp":3,{s}}}"#
            ),
            format!(
                r#"{{"timestamp":5,"reaction":{{"emoji":"❤","reaction":"love","action":"react","mid":"m_1"}},{s}}}"#
            ),
        ];
        for (repeat, id) in repeats.iter().zip([&ids[0], &ids[1], &ids[2], &ids[4]]) {
            assert_eq!(&one(repeat), id, "{repeat}");
        }
        // Byte-identical deliveries of anything else are one event too.
        assert_eq!(one(&notifications[7]), ids[7]);
        assert_eq!(one(&notifications[6]), ids[6]);
        // The kinds are Meta's fields.
        let body = format!(
            r#"{{"object":"instagram","entry":[{{"id":"178","messaging":[{},{}]}}]}}"#,
            notifications[1], notifications[2]
        );
        let kinds: Vec<String> = parse_notification(body.as_bytes())
            .unwrap()
            .into_iter()
            .map(|u| u.kind)
            .collect();
        assert_eq!(kinds, ["messages", "message_edit"]);
    }

    #[test]
    fn changes_and_page_objects() {
        let body = br#"{"object":"instagram","entry":[{"id":17841400000000001,"time":1795260000,"changes":[
            {"field":"comments","value":{"id":"1799","text":"nice \u00e4","from":{"id":"9","username":"fan"},"media":{"id":"m"}}},
            {"field":"mentions","value":{"media_id":"5","comment_id":"6"}}]}]}"#;
        let updates = parse_notification(body).unwrap();
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].kind, "comments");
        assert_eq!(updates[0].entry_id, "17841400000000001");
        assert_eq!(
            updates[0].event_id,
            "instagram:17841400000000001:comments:1799"
        );
        assert_eq!(updates[0].occurred_at_ms, Some(1795260000000));
        // The raw item keeps Meta's escapes.
        assert!(updates[0].raw.contains(r"\u00e4"));
        assert_eq!(updates[1].kind, "mentions");

        let page = br#"{"object":"page","entry":[{"id":"110","time":1795260000000,"messaging":[{"sender":{"id":"1"},"recipient":{"id":"110"},"timestamp":1795260000001,"message":{"mid":"m_9","text":"yo"}}],"standby":[{"sender":{"id":"1"},"timestamp":1}]}]}"#;
        let updates = parse_notification(page).unwrap();
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].event_id, "page:110:messages:m_9");
        assert_eq!(updates[1].kind, "standby");
    }

    #[test]
    fn shapes_that_are_refused() {
        for body in [
            &b"not json"[..],
            br#"[]"#,
            br#"{"object":"instagram"}"#,
            br#"{"object":"instagram","entry":{}}"#,
            br#"{"object":"instagram","entry":[{"time":1,"messaging":[]}]}"#,
            br#"{"object":"instagram","entry":[5]}"#,
            br#"{"object":"","entry":[]}"#,
            br#"{"object":"instagram","entry":[{"id":"1","changes":[{"value":{}}]}]}"#,
            br#"{"object":"instagram","entry":[{"id":"1","messaging":[7]}]}"#,
        ] {
            assert!(
                parse_notification(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse_notification(br#"{"object":"instagram","entry":[]}"#)
            .unwrap()
            .is_empty());
    }
}
