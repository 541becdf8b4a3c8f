use super::*;
use crate::post::{Containers, Media, MediaKind, NewPost, PostType};
use serde_json::json;
use shared::time::macros::datetime;
use shared::Provider;

const NOW: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

pub(crate) fn post(kinds: &[MediaKind], publish_at: Option<OffsetDateTime>) -> Post {
    Post {
        post_id: "post_1".into(),
        user_id: "u".into(),
        provider: Provider::Instagram,
        account_id: "a".into(),
        request: NewPost {
            post_type: PostType::Feed,
            media: kinds
                .iter()
                .map(|k| Media {
                    kind: *k,
                    url: "https://cdn.example.com/x".into(),
                })
                .collect(),
            caption: None,
            publish_at,
            options: json!({}),
        },
        status: Status::Scheduled,
        containers: None,
        publish_attempted: false,
        transient_failures: 0,
        media_id: None,
        permalink: None,
        error: None,
        created_at: NOW,
        updated_at: NOW,
        published_at: None,
        version: 1,
    }
}

fn meta_error(code: i64, sub: Option<i64>) -> Value {
    let mut e = json!({"error": {"message": "m", "code": code}});
    if let Some(s) = sub {
        e["error"]["error_subcode"] = json!(s);
    }
    e
}

#[test]
fn metas_errors_are_sorted_by_what_they_mean_for_the_post() {
    let kind = |code, sub| std::mem::discriminant(&classify(400, meta_error(code, sub)));
    let d = std::mem::discriminant;
    let v = Value::Null;
    assert_eq!(kind(190, None), d(&MetaResult::NeedsReauth(v.clone())));
    assert_eq!(kind(102, None), d(&MetaResult::NeedsReauth(v.clone())));
    for (code, sub) in [
        (9004, Some(2207052)),
        (352, Some(2207026)),
        (36003, Some(2207009)),
        (100, Some(2207052)),
    ] {
        assert_eq!(
            kind(code, sub),
            d(&MetaResult::MediaRejected(v.clone())),
            "{code}/{sub:?}"
        );
    }
    assert_eq!(kind(9, Some(2207042)), d(&MetaResult::QuotaFull(v.clone())));
    for code in [4, 17, 32, 613] {
        assert_eq!(
            kind(code, None),
            d(&MetaResult::Throttled(v.clone())),
            "{code}"
        );
    }
    assert_eq!(kind(4, Some(2207051)), d(&MetaResult::Refused(v.clone())));
    assert_eq!(
        kind(-2, Some(2207003)),
        d(&MetaResult::Transient(v.clone()))
    );
    assert_eq!(
        kind(9007, Some(2207027)),
        d(&MetaResult::Transient(v.clone()))
    );
    assert_eq!(
        kind(-2, Some(2207020)),
        d(&MetaResult::NewContainer(v.clone()))
    );
    assert_eq!(kind(100, Some(1)), d(&MetaResult::Refused(v.clone())));
    assert_eq!(
        classify(200, json!({"id": "1"})),
        MetaResult::Ok(json!({"id": "1"}))
    );
    assert!(matches!(classify(503, json!({})), MetaResult::Transient(_)));
}

#[test]
fn errors_fail_wait_or_make_new_containers() {
    let p = post(&[MediaKind::Image], None);
    let reauth = on_error(&classify(400, meta_error(190, None)), &p, NOW);
    assert!(matches!(reauth, OnError::Fail(f) if f.reason == "connection_needs_reauth"));
    let rejected = on_error(&classify(400, meta_error(9004, Some(2207052))), &p, NOW);
    assert!(
        matches!(rejected, OnError::Fail(f) if f.reason == "media_rejected" && f.meta["code"] == 9004)
    );
    assert_eq!(
        on_error(&classify(400, meta_error(9, Some(2207042))), &p, NOW),
        OnError::Wait(Status::WaitingForQuota, NOW + QUOTA_RECHECK)
    );
    assert_eq!(
        on_error(&classify(400, meta_error(4, None)), &p, NOW),
        OnError::Wait(Status::Publishing, NOW + THROTTLE_WAIT)
    );
    assert_eq!(
        on_error(&MetaResult::Unknown, &p, NOW),
        OnError::Wait(Status::Publishing, NOW + POLL_EVERY)
    );
    assert_eq!(
        on_error(&classify(400, meta_error(-2, Some(2207020))), &p, NOW),
        OnError::Recreate
    );
    let mut attempted = p.clone();
    attempted.publish_attempted = true;
    attempted.containers = Some(Containers {
        children: vec![],
        parent: "c".into(),
        created_at: NOW,
    });
    assert_eq!(
        on_error(&MetaResult::Unknown, &attempted, NOW),
        OnError::Wait(Status::Publishing, NOW + POLL_EVERY)
    );
    // After a publish attempt, a missing container is never made again.
    assert!(matches!(
        on_error(
            &classify(400, meta_error(-2, Some(2207020))),
            &attempted,
            NOW
        ),
        OnError::Wait(..)
    ));
    let mut tired = p.clone();
    tired.transient_failures = MAX_TRANSIENT_FAILURES - 1;
    assert!(
        matches!(on_error(&classify(500, json!({})), &tired, NOW), OnError::Fail(f) if f.reason == "meta_unavailable")
    );
    // Throttled while scheduled ahead (video containers): still scheduled.
    let ahead = post(&[MediaKind::Video], Some(NOW + Duration::minutes(30)));
    assert_eq!(
        on_error(&classify(400, meta_error(17, None)), &ahead, NOW),
        OnError::Wait(Status::Scheduled, NOW + THROTTLE_WAIT)
    );
}

#[test]
fn posts_are_due_at_publish_at_and_video_an_hour_ahead() {
    let at = NOW + Duration::days(1);
    assert_eq!(first_due(&post(&[MediaKind::Image], Some(at))), at);
    assert_eq!(
        first_due(&post(&[MediaKind::Image, MediaKind::Video], Some(at))),
        at - Duration::hours(1)
    );
    assert_eq!(first_due(&post(&[MediaKind::Image], None)), NOW);
    let p = post(&[MediaKind::Video], Some(at));
    assert!(!may_publish(&p, at - Duration::seconds(1)));
    assert!(may_publish(&p, at));
    assert_eq!(
        working_status(&p, at - Duration::minutes(5), true),
        Status::Scheduled
    );
    assert_eq!(working_status(&p, at, true), Status::Processing);
    assert_eq!(working_status(&p, at, false), Status::Publishing);
}

#[test]
fn the_quota_has_room_while_usage_is_under_metas_total() {
    let limit = |usage: i64, total: i64| json!({"data": [{"quota_usage": usage, "config": {"quota_total": total, "quota_duration": 86400}}]});
    assert!(quota_has_room(&limit(49, 50)));
    assert!(!quota_has_room(&limit(50, 50)));
    assert!(!quota_has_room(&limit(100, 100)));
    assert!(quota_has_room(&limit(99, 100)));
    assert!(quota_has_room(&json!({"data": [{"quota_usage": 3}]})));
}

#[test]
fn a_containers_status_decides_the_next_step() {
    let mut p = post(&[MediaKind::Video], Some(NOW + Duration::minutes(30)));
    p.containers = Some(Containers {
        children: vec![],
        parent: "c1".into(),
        created_at: NOW,
    });
    let status = |b: Value| ContainerStatus::of(&b).unwrap();
    assert_eq!(
        after_poll(&p, &status(json!({"status_code": "IN_PROGRESS"})), NOW),
        AfterPoll::Wait(NOW + POLL_EVERY)
    );
    assert_eq!(
        after_poll(
            &p,
            &status(json!({"status_code": "FINISHED"})),
            NOW + Duration::minutes(5)
        ),
        AfterPoll::WaitUntil(NOW + Duration::minutes(30))
    );
    assert_eq!(
        after_poll(
            &p,
            &status(json!({"status_code": "FINISHED"})),
            NOW + Duration::minutes(30)
        ),
        AfterPoll::Publish
    );
    let late = NOW + MAX_PROCESSING;
    assert!(
        matches!(after_poll(&p, &status(json!({"status_code": "IN_PROGRESS"})), late), AfterPoll::Fail(f) if f.reason == "processing_timeout")
    );
    let error = after_poll(
        &p,
        &status(json!({"status_code": "ERROR", "status": "Error: 2207026"})),
        NOW,
    );
    assert!(
        matches!(error, AfterPoll::Fail(f) if f.reason == "media_rejected" && f.message.contains("2207026"))
    );
    assert_eq!(
        after_poll(&p, &status(json!({"status_code": "EXPIRED"})), NOW),
        AfterPoll::Recreate
    );
    p.publish_attempted = true;
    assert!(
        matches!(after_poll(&p, &status(json!({"status_code": "EXPIRED"})), NOW), AfterPoll::Fail(f) if f.reason == "container_expired")
    );
    assert_eq!(
        after_poll(&p, &status(json!({"status_code": "PUBLISHED"})), NOW),
        AfterPoll::AlreadyPublished
    );
    assert_eq!(ContainerStatus::of(&json!({"status_code": "NEW"})), None);
}

#[test]
fn a_failure_keeps_metas_codes_and_a_message_without_url_queries() {
    let error = json!({"message": "Cannot fetch https://bucket.s3.amazonaws.com/u/1.jpg?X-Amz-Signature=abc&access_token=EAAB#x now",
        "type": "OAuthException", "code": 9004, "error_subcode": 2207052, "fbtrace_id": "Atrace",
        "error_user_msg": "whatever Meta adds", "is_transient": false});
    let kept = meta_summary(&error);
    assert_eq!(
        kept,
        json!({"message": "Cannot fetch https://bucket.s3.amazonaws.com/u/1.jpg now",
               "type": "OAuthException", "code": 9004, "error_subcode": 2207052, "fbtrace_id": "Atrace"})
    );
    let long = "x".repeat(900);
    assert_eq!(without_queries(&long).len(), 500);
    assert_eq!(without_queries("plain words stay"), "plain words stay");
}
