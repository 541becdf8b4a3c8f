//! A DM bot, as a product would write it against this service: a Lambda
//! subscribed to the events table's stream that answers every new Instagram
//! message through the Graph proxy, never touching a token.
//!
//! - [`reply_for`] decides (a plain function): which stream records get an
//!   answer, and what the proxy invocation is. The event id is the
//!   idempotency key, so a retried batch never sends a DM twice.
//! - [`handle`] runs a batch and reports the records to retry (Lambda's
//!   partial batch response), e.g. while Meta throttles the account.
//! - [`GraphProxy`] is the one call out: [`LambdaProxy`] invokes the
//!   `GraphFunctionArn` with IAM; tests plug the proxy in directly.

use std::future::Future;

use serde_json::{json, Value};

/// The proxy, seen from the product: one invocation in, its answer out
/// (`{"status", "headers", "body", "replayed"}`).
pub trait GraphProxy {
    fn invoke(&self, payload: Value) -> impl Future<Output = Result<Value, ProxyError>>;
}

#[derive(Debug, thiserror::Error)]
#[error("the Graph proxy could not be invoked: {0}")]
pub struct ProxyError(pub String);

/// The real door: `lambda:InvokeFunction` on the Graph function.
pub struct LambdaProxy {
    pub client: aws_sdk_lambda::Client,
    pub function: String,
}

impl GraphProxy for LambdaProxy {
    async fn invoke(&self, payload: Value) -> Result<Value, ProxyError> {
        let out = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
            .send()
            .await
            .map_err(|e| ProxyError(aws_sdk_lambda::error::DisplayErrorContext(e).to_string()))?;
        if let Some(err) = out.function_error() {
            return Err(ProxyError(format!("the proxy failed: {err}")));
        }
        let body = out
            .payload()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        serde_json::from_slice(&body).map_err(|e| ProxyError(e.to_string()))
    }
}

/// A DynamoDB stream attribute (`{"S": "..."}`) as a string.
fn attr<'a>(image: &'a Value, name: &str) -> Option<&'a str> {
    image.get(name)?.get("S")?.as_str()
}

/// The proxy invocation that answers a stream record, if it deserves one:
/// a new `messages` event with text from a person (not our own echo, not an
/// unsend, not an edit or a reaction).
pub fn reply_for(record: &Value) -> Option<Value> {
    if record.get("eventName")?.as_str()? != "INSERT" {
        return None;
    }
    let image = record.pointer("/dynamodb/NewImage")?;
    if attr(image, "kind")? != "messages" {
        return None;
    }
    let payload: Value = serde_json::from_str(attr(image, "payload")?).ok()?;
    let message = payload.get("message")?;
    let text = message.get("text")?.as_str()?;
    let from_us = message.get("is_echo").and_then(Value::as_bool) == Some(true);
    let unsent = message.get("is_deleted").and_then(Value::as_bool) == Some(true);
    if from_us || unsent {
        return None;
    }
    let sender = payload.pointer("/sender/id")?.as_str()?;
    let provider = attr(image, "provider")?;
    // The connection's own token sends: for Instagram Login `me` is the
    // account, for Facebook Login (a Page token) `me` is the Page, which is
    // what sends Instagram messages there (the message's recipient is the
    // Instagram account, not the Page).
    let path = "me/messages";
    Some(json!({
        "provider": provider,
        "account_id": attr(image, "account_id")?,
        "method": "POST",
        "path": path,
        "body": {
            "recipient": {"id": sender},
            "message": {"text": reply_text(text)},
        },
        "idempotency_key": attr(image, "event_id")?,
        // The proxy acts only for the connection's owner: an event of an
        // account no one has connected gets no reply.
        "user_id": attr(image, "user_id")?,
    }))
}

/// What the bot says. A real product would do something smarter here.
pub fn reply_text(received: &str) -> String {
    let preview: String = received.chars().take(80).collect();
    format!("Thanks for your message! We got: \u{201c}{preview}\u{201d}")
}

/// Whether an answer means "try this record again later".
fn retry_later(answer: &Value) -> bool {
    let status = answer.get("status").and_then(Value::as_u64).unwrap_or(0);
    // Throttled, still running under the same key, or Meta/the service down.
    let in_progress = answer.pointer("/body/error") == Some(&json!("request_in_progress"));
    status == 429 || (status == 409 && in_progress) || status >= 500
}

/// One stream batch: answers what deserves an answer, and returns Lambda's
/// partial batch response naming the records to retry.
pub async fn handle<P: GraphProxy>(proxy: &P, event: &Value) -> Value {
    let mut failures = Vec::new();
    for record in event
        .get("Records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(invocation) = reply_for(record) else {
            continue;
        };
        let retry = match proxy.invoke(invocation).await {
            Ok(answer) => {
                let status = answer.get("status").and_then(Value::as_u64).unwrap_or(0);
                tracing::info!(
                    status,
                    replayed = answer["replayed"] == json!(true),
                    "replied"
                );
                retry_later(&answer)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not reach the proxy");
                true
            }
        };
        if retry {
            if let Some(seq) = record.pointer("/dynamodb/SequenceNumber") {
                failures.push(json!({"itemIdentifier": seq}));
            }
        }
    }
    json!({"batchItemFailures": failures})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, payload: Value) -> Value {
        json!({"eventName": "INSERT", "dynamodb": {"SequenceNumber": "100", "NewImage": {
            "event_id": {"S": "instagram:1784:messages:m_1"}, "kind": {"S": kind},
            "provider": {"S": "instagram"}, "account_id": {"S": "1784"}, "user_id": {"S": "user-1"},
            "payload": {"S": payload.to_string()}}}})
    }

    fn message(extra: Value) -> Value {
        let mut m = json!({"mid": "m_1", "text": "Do you ship to Berlin?"});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        json!({"sender": {"id": "9001"}, "recipient": {"id": "1784"}, "timestamp": 1, "message": m})
    }

    #[test]
    fn a_new_message_gets_an_answer_keyed_by_its_event() {
        let inv = reply_for(&record("messages", message(json!({})))).unwrap();
        assert_eq!(inv["method"], "POST");
        assert_eq!(inv["path"], "me/messages");
        assert_eq!(inv["account_id"], "1784");
        assert_eq!(inv["idempotency_key"], "instagram:1784:messages:m_1");
        assert_eq!(inv["body"]["recipient"]["id"], "9001");
        assert!(inv["body"]["message"]["text"]
            .as_str()
            .unwrap()
            .contains("Do you ship to Berlin?"));
    }

    #[test]
    fn a_facebook_connection_answers_as_its_page() {
        let mut rec = record("messages", message(json!({})));
        rec["dynamodb"]["NewImage"]["provider"] = json!({"S": "facebook"});
        let inv = reply_for(&rec).unwrap();
        assert_eq!(inv["provider"], "facebook");
        // Not the recipient (the Instagram account id 1784): the Page, as `me`.
        assert_eq!(inv["path"], "me/messages");
        assert_eq!(inv["body"]["recipient"]["id"], "9001");
    }

    #[test]
    fn echoes_unsends_other_kinds_and_other_changes_get_none() {
        assert!(reply_for(&record("messages", message(json!({"is_echo": true})))).is_none());
        assert!(reply_for(&record("messages", message(json!({"is_deleted": true})))).is_none());
        assert!(reply_for(&record("comments", message(json!({})))).is_none());
        assert!(reply_for(&record("connection.connected", json!({}))).is_none());
        let mut modify = record("messages", message(json!({})));
        modify["eventName"] = json!("MODIFY");
        assert!(reply_for(&modify).is_none());
        let reaction =
            json!({"sender": {"id": "9001"}, "reaction": {"mid": "m_1", "action": "react"}});
        assert!(reply_for(&record("messages", reaction)).is_none());
    }

    #[test]
    fn the_bundled_stream_fixture_gets_one_answer() {
        let event: Value =
            serde_json::from_str(include_str!("../fixtures/stream-event.json")).unwrap();
        let answers: Vec<Value> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(reply_for)
            .collect();
        assert_eq!(answers.len(), 1);
    }

    struct Scripted(Value);
    impl GraphProxy for Scripted {
        async fn invoke(&self, _payload: Value) -> Result<Value, ProxyError> {
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn throttled_or_failed_records_are_retried_answered_ones_are_not() {
        let event = json!({"Records": [record("messages", message(json!({})))]});
        for (answer, retried) in [
            (json!({"status": 200, "body": {}}), false),
            (json!({"status": 200, "body": {}, "replayed": true}), false),
            (
                json!({"status": 429, "body": {"error": "meta_rate_limited"}}),
                true,
            ),
            (
                json!({"status": 409, "body": {"error": "request_in_progress"}}),
                true,
            ),
            (
                json!({"status": 409, "body": {"error": "connection_needs_reauth"}}),
                false,
            ),
            (
                json!({"status": 502, "body": {"error": "meta_unavailable"}}),
                true,
            ),
        ] {
            let out = handle(&Scripted(answer.clone()), &event).await;
            let n = out["batchItemFailures"].as_array().unwrap().len();
            assert_eq!(n, usize::from(retried), "{answer}");
        }
    }
}
