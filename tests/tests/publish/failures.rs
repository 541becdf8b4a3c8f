//! Meta's failures during publishing: a container in `ERROR`, a dead token,
//! a full daily limit, a `media_publish` whose answer is lost after Meta
//! published, and two runs at once.

use super::*;

#[tokio::test]
async fn a_container_in_error_fails_the_post_as_media_rejected() {
    let t = setup().await;
    t.h.stack
        .meta
        .fail_containers(Some("Error: 2207026 unsupported video format"));
    let (_, body) = t.create(json!({"type": "reel", "media": [video(1)]})).await;
    let id = body["post_id"].as_str().unwrap().to_string();
    assert_eq!(t.run().await.failed, 1);
    let post = t.get(&id).await;
    assert_eq!(post["status"], "failed");
    assert_eq!(post["error"]["reason"], "media_rejected");
    assert!(post["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2207026"));
    let events = t.event_payloads("post.failed").await;
    assert_eq!(
        (events.len(), events[0]["reason"].as_str()),
        (1, Some("media_rejected"))
    );
    assert_eq!(t.h.stack.meta.calls("media_publish"), 0);
}

#[tokio::test]
async fn a_dead_token_fails_the_post_and_marks_the_connection_needs_reauth() {
    let t = setup().await;
    let (_, body) = t.create(json!({"type": "feed", "media": [image(1)]})).await;
    let id = body["post_id"].as_str().unwrap().to_string();
    t.h.stack.meta.invalidate_account(&t.account);
    t.run().await;
    let post = t.get(&id).await;
    assert_eq!(
        (post["status"].as_str(), post["error"]["reason"].as_str()),
        (Some("failed"), Some("connection_needs_reauth"))
    );
    assert_eq!(
        s(&t.h.connections_of("user-1").await[0], "status"),
        "needs_reauth"
    );
    assert_eq!(t.h.events("connection.needs_reauth").await.len(), 1);
    // A new post is refused as the proxy refuses calls.
    let (status, body) = t.create(json!({"type": "feed", "media": [image(2)]})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("connection_needs_reauth"))
    );
}

#[tokio::test]
async fn a_full_daily_limit_makes_the_post_wait_and_it_publishes_once_there_is_room() {
    let t = setup().await;
    t.h.stack.meta.set_publishing_quota(50);
    t.h.stack.meta.set_quota_usage(&t.account, 50);
    let (_, body) = t.create(json!({"type": "feed", "media": [image(1)]})).await;
    let id = body["post_id"].as_str().unwrap().to_string();
    t.run().await;
    assert_eq!(t.get(&id).await["status"], "waiting_for_quota");
    assert_eq!(t.h.stack.meta.calls("media_publish"), 0);

    t.h.stack.meta.set_quota_usage(&t.account, 49);
    t.h.clock.advance(Duration::minutes(10));
    t.run().await;
    assert_eq!(t.get(&id).await["status"], "published");
}

#[tokio::test]
async fn a_publish_whose_answer_is_lost_after_meta_published_is_never_sent_again() {
    let mut t = setup().await;
    let (impatient, _) = infra::publish::publisher(&t.h.stack, t.h.clock.clone(), Door::Invoke);
    t.invoke = impatient
        .with_meta_timeout(std::time::Duration::from_millis(500))
        .unwrap();
    let (_, body) = t.create(json!({"type": "feed", "media": [image(1)]})).await;
    let id = body["post_id"].as_str().unwrap().to_string();
    let stall = t.h.stack.meta.stall_after_publish();
    t.run().await;
    assert_eq!(t.h.stack.meta.published_posts().len(), 1, "Meta published");
    let post = t.get(&id).await;
    assert_eq!(post["status"], "publishing", "{post}");
    stall.release();

    t.runs_a_minute_apart(2).await;
    let post = t.get(&id).await;
    assert_eq!(post["status"], "published", "{post}");
    assert_eq!(
        t.h.stack.meta.calls("media_publish"),
        1,
        "media_publish was called once"
    );
    assert_eq!(t.h.stack.meta.published_posts().len(), 1);
    assert_eq!(t.event_payloads("post.published").await.len(), 1);
}

#[tokio::test]
async fn two_runs_at_once_never_work_one_post_twice() {
    let t = setup().await;
    let (_, body) = t.create(json!({"type": "feed", "media": [image(1)]})).await;
    let id = body["post_id"].as_str().unwrap().to_string();
    let gate = t.h.stack.meta.hold("graph");
    let first = tokio::spawn({
        let p = t.invoke.clone();
        async move { p.run(Deadline::distant()).await.unwrap() }
    });
    gate.arrivals(1).await;
    let second = t.run().await;
    assert_eq!((second.examined, second.busy, second.published), (1, 1, 0));
    gate.release();
    let first = first.await.unwrap();
    assert_eq!(first.published, 1, "{first:?}");
    assert_eq!(t.get(&id).await["status"], "published");
    assert_eq!(t.h.stack.meta.calls("media_publish"), 1);
}

#[tokio::test]
async fn an_expired_container_is_made_again_and_throttling_waits() {
    let t = setup().await;
    t.h.stack.meta.expire_containers(true);
    let (_, body) = t.create(json!({"type": "feed", "media": [image(1)]})).await;
    let id = body["post_id"].as_str().unwrap().to_string();
    t.run().await;
    assert_eq!(t.h.stack.meta.calls("media_publish"), 0);
    t.h.stack.meta.expire_containers(false);
    t.h.stack.meta.throttle(&t.account, 4, 5);
    t.h.clock.advance(Duration::minutes(1));
    t.run().await;
    assert_eq!(
        t.get(&id).await["status"],
        "publishing",
        "throttled: it waits"
    );
    t.h.stack.meta.clear_throttles();
    t.h.clock.advance(Duration::minutes(1));
    assert_eq!(t.run().await.examined, 0, "not before the throttle's wait");
    t.h.clock.advance(Duration::minutes(4));
    t.run().await;
    assert_eq!(t.get(&id).await["status"], "published");
    assert_eq!(t.h.stack.meta.published_posts().len(), 1);
}

/// A 5xx from `media_publish` is an unknown outcome (Meta may have
/// published): the post stays "publishing attempted", the container's status
/// decides the next turn, and when Meta later asks for a new container no
/// new container is ever made for it (that could publish the post twice).
#[tokio::test]
async fn after_a_5xx_on_media_publish_no_new_container_is_ever_made() {
    let t = setup().await;
    let (_, body) = t.create(json!({"type": "feed", "media": [image(1)]})).await;
    let id = body["post_id"].as_str().unwrap().to_string();
    t.h.stack.meta.fail("media_publish", 500, "{}");
    t.run().await;
    let post = t.get(&id).await;
    assert_eq!(post["status"], "publishing", "{post}");
    let containers = t.h.stack.meta.containers_made();

    // The container still says FINISHED: Meta did not publish; the retry is
    // refused with an error that would otherwise ask for a new container.
    t.h.stack.meta.fail(
        "media_publish",
        400,
        r#"{"error": {"message": "The media has expired", "type": "OAuthException", "code": -2, "error_subcode": 2207020}}"#,
    );
    t.runs_a_minute_apart(3).await;
    assert_eq!(
        t.h.stack.meta.containers_made(),
        containers,
        "a new container was made after a publish attempt"
    );
    assert!(t.h.stack.meta.published_posts().is_empty());
    assert_ne!(t.get(&id).await["status"], "published");
}

/// A 5xx from `media_publish`, then Meta's container still `FINISHED` (it
/// did not publish): the next turn publishes, once.
#[tokio::test]
async fn a_5xx_on_media_publish_is_settled_by_the_containers_status() {
    let t = setup().await;
    let (_, body) = t.create(json!({"type": "feed", "media": [image(1)]})).await;
    let id = body["post_id"].as_str().unwrap().to_string();
    t.h.stack.meta.fail("media_publish", 500, "{}");
    t.run().await;
    assert_eq!(t.get(&id).await["status"], "publishing");
    t.h.stack.meta.clear_failures();
    t.runs_a_minute_apart(2).await;
    let post = t.get(&id).await;
    assert_eq!(post["status"], "published", "{post}");
    assert_eq!(t.h.stack.meta.published_posts().len(), 1);
    assert_eq!(t.event_payloads("post.published").await.len(), 1);
}
