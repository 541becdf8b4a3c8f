//! What `deliver` reads from its queue: an event from the events bus
//! (EventBridge: `detail-type` the kind, `detail` the DynamoDB stream record,
//! the event under `detail.dynamodb.NewImage` in typed form), or one of its
//! own attempt messages (one endpoint, one event's id, one attempt).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// An event as delivered: the body's `data`, plain JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboundEvent {
    pub event_id: String,
    pub kind: String,
    pub provider: Option<String>,
    pub account_id: String,
    pub user_id: Option<String>,
    pub occurred_at: String,
    pub received_at: String,
    /// The stored payload text parsed as JSON (kept as a string when it
    /// isn't JSON).
    pub payload: Value,
}

impl OutboundEvent {
    /// The event from a stored item's attributes, in DynamoDB's typed form
    /// (`{"S": ...}`). `None` when a required attribute is missing.
    pub fn from_typed(image: &Map<String, Value>) -> Option<Self> {
        let text = |k: &str| image.get(k)?.get("S")?.as_str().map(str::to_string);
        let payload = text("payload").unwrap_or_default();
        Some(Self {
            event_id: text("event_id")?,
            kind: text("kind")?,
            provider: text("provider"),
            account_id: text("account_id")?,
            user_id: text("user_id"),
            occurred_at: text("occurred_at")?,
            received_at: text("received_at")?,
            payload: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
        })
    }

    /// The event from its stored item (a replay reads the table).
    pub fn from_item(
        item: &std::collections::HashMap<String, shared::aws_sdk_dynamodb::types::AttributeValue>,
    ) -> Option<Self> {
        let image: Map<String, Value> = item
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), json!({ "S": v.as_s().ok()? }))))
            .collect();
        Self::from_typed(&image)
    }

    /// The request body: the same bytes on every attempt.
    pub fn body(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut envelope = Map::new();
        envelope.insert("type".into(), self.kind.clone().into());
        envelope.insert("timestamp".into(), self.occurred_at.clone().into());
        envelope.insert("data".into(), serde_json::to_value(self)?);
        serde_json::to_vec(&Value::Object(envelope))
    }
}

/// One attempt to deliver one event to one endpoint, due at `due_at`. The
/// event is named, not carried: each attempt reads it from the events table,
/// so the queues never hold its payload and an event deleted meanwhile
/// (retention, data deletion) is no longer delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptMessage {
    pub endpoint_id: String,
    pub event_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Unix seconds of the first attempt (`None` until it is made).
    pub first_attempt_at: Option<i64>,
    /// Unix seconds: not before.
    pub due_at: i64,
    /// The replay job this delivery belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_id: Option<String>,
}

/// A queue record's body, read.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A new event from the bus: to fan out to the matching endpoints.
    Event(OutboundEvent),
    Attempt(AttemptMessage),
    /// The next page of a replay job.
    Replay(String),
    /// Neither: it can never be delivered (logged, dropped).
    Unreadable(&'static str),
}

pub fn read_body(body: &str) -> Incoming {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return Incoming::Unreadable("not JSON");
    };
    if value.get("detail-type").is_some() {
        let image = value
            .pointer("/detail/dynamodb/NewImage")
            .and_then(Value::as_object);
        return match image.and_then(OutboundEvent::from_typed) {
            Some(event) => Incoming::Event(event),
            None => Incoming::Unreadable("a bus event without a readable NewImage"),
        };
    }
    if value.get("endpoint_id").is_none() {
        if let Some(id) = value.get("replay_id").and_then(Value::as_str) {
            return Incoming::Replay(id.to_string());
        }
    }
    match serde_json::from_value::<AttemptMessage>(value) {
        Ok(m) => Incoming::Attempt(m),
        Err(_) => Incoming::Unreadable("neither a bus event, an attempt nor a replay"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event as the pipe puts it on the bus and the rule hands it to SQS.
    pub fn bus_event() -> String {
        json!({
            "version": "0", "id": "5e1b", "source": "ig-connect",
            "detail-type": "messages", "account": "123456789012",
            "time": "2026-11-21T12:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {
                "eventName": "INSERT", "eventSource": "aws:dynamodb",
                "dynamodb": {"NewImage": {
                    "event_id": {"S": "mid.1"}, "kind": {"S": "messages"},
                    "provider": {"S": "instagram"}, "account_id": {"S": "1784"},
                    "user_id": {"S": "u1"},
                    "occurred_at": {"S": "2026-11-21T11:59:59.120Z"},
                    "received_at": {"S": "2026-11-21T12:00:00.004Z"},
                    "payload": {"S": "{\"sender\":{\"id\":\"9\"},\"message\":{\"text\":\"hi\"}}"},
                    "expires_at": {"N": "1790000000"}
                }}
            }
        })
        .to_string()
    }

    #[test]
    fn a_bus_event_becomes_plain_json() {
        let Incoming::Event(e) = read_body(&bus_event()) else {
            panic!("an event")
        };
        let body: Value = serde_json::from_slice(&e.body().unwrap()).unwrap();
        assert_eq!(body["type"], "messages");
        assert_eq!(body["timestamp"], "2026-11-21T11:59:59.120Z");
        assert_eq!(body["data"]["event_id"], "mid.1");
        assert_eq!(body["data"]["account_id"], "1784");
        assert_eq!(body["data"]["payload"]["message"]["text"], "hi");
        assert!(body["data"].get("expires_at").is_none());
        assert_eq!(
            e.body().unwrap(),
            e.body().unwrap(),
            "the same bytes every time"
        );
    }

    #[test]
    fn attempts_round_trip_and_junk_is_unreadable() {
        let Incoming::Event(event) = read_body(&bus_event()) else {
            panic!("an event")
        };
        let m = AttemptMessage {
            endpoint_id: "ep_1".into(),
            event_id: event.event_id,
            attempt: 2,
            first_attempt_at: Some(10),
            due_at: 15,
            replay_id: None,
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(read_body(&text), Incoming::Attempt(m));
        assert!(matches!(read_body("{"), Incoming::Unreadable(_)));
        assert!(matches!(read_body("{}"), Incoming::Unreadable(_)));
        let replay = read_body(r#"{"replay_id": "rp_1"}"#);
        assert_eq!(replay, Incoming::Replay("rp_1".into()));
        let no_image = r#"{"detail-type": "messages", "detail": {}}"#;
        assert!(matches!(read_body(no_image), Incoming::Unreadable(_)));
    }
}
