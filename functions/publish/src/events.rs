//! A post's outcome as an event in the outbox (and so on the bus and the
//! outbound webhooks): `post.published` (`media_id`, `permalink`) and
//! `post.failed` (`reason`), each with `post_id`. One per post: the id is
//! the post's, so writing it again changes nothing.

use serde_json::json;
use shared::event_kind::{EventKind, PostOutcome};
use shared::store::Event;
use shared::time::OffsetDateTime;

use crate::post::{Post, Status};

/// The event of a post that just ended published or failed.
pub fn outcome(post: &Post, now: OffsetDateTime, retention: std::time::Duration) -> Option<Event> {
    let (kind, payload) = match post.status {
        Status::Published => (
            EventKind::Post(PostOutcome::Published),
            json!({"post_id": post.post_id, "media_id": post.media_id, "permalink": post.permalink}),
        ),
        Status::Failed => (
            EventKind::Post(PostOutcome::Failed),
            json!({"post_id": post.post_id,
                "reason": post.error.as_ref().map(|e| e.reason.clone()),
                "message": post.error.as_ref().map(|e| e.message.clone())}),
        ),
        _ => return None,
    };
    Some(Event {
        event_id: format!("{}_{}", post.post_id, kind.as_str().replace('.', "_")),
        kind,
        provider: Some(post.provider),
        account_id: post.account_id.clone(),
        user_id: Some(post.user_id.clone()),
        occurred_at: now,
        received_at: now,
        payload: payload.to_string(),
        expires_at: now + retention,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::tests::post;
    use crate::post::MediaKind;

    #[test]
    fn only_an_ended_post_has_an_event_and_it_names_the_post() {
        let retention = std::time::Duration::from_secs(86_400);
        let mut p = post(&[MediaKind::Image], None);
        assert!(outcome(&p, p.created_at, retention).is_none());
        p.status = Status::Published;
        p.media_id = Some("179".into());
        p.permalink = Some("https://www.instagram.com/p/x".into());
        let e = outcome(&p, p.created_at, retention).unwrap();
        assert_eq!(e.kind.as_str(), "post.published");
        let payload: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
        assert_eq!(payload["post_id"], "post_1");
        assert_eq!(payload["permalink"], "https://www.instagram.com/p/x");
        assert_eq!(
            e.event_id,
            outcome(&p, p.updated_at, retention).unwrap().event_id
        );
    }
}
