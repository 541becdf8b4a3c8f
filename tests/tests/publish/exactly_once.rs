//! A run killed at each step of the flow (while Meta creates a container,
//! while `media_publish` is on its way, after Meta published but before the
//! answer was stored) never publishes twice, and the next run after the
//! lease lapses finishes the post. Also: a run that stops at its deadline
//! leaves the rest for its continuation, and cancel races with the run.

use super::*;

/// Starts a run in a task, waits until `gate` holds one of its calls to
/// Meta, then kills the run (as a Lambda timeout or crash would).
async fn kill_run_at(t: &Setup, gate: &infra::meta::Gate) {
    let p = t.invoke.clone();
    let run = tokio::spawn(async move { p.run(Deadline::distant()).await });
    gate.arrivals(1).await;
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    gate.release();
}

async fn next_run_after_the_lease(t: &Setup) {
    t.h.clock
        .advance(publish::run::LEASE_FOR + Duration::seconds(1));
    t.run().await;
}

#[tokio::test]
async fn a_run_killed_at_its_first_call_to_meta_is_finished_by_the_next_after_its_lease() {
    let t = setup().await;
    let (_, body) = t.create(json!({"type": "feed", "media": [image(1)]})).await;
    let id = body["post_id"].as_str().unwrap().to_string();
    kill_run_at(&t, &t.h.stack.meta.hold("graph")).await;
    // Another run within the lease leaves it alone.
    assert_eq!(t.run().await.published, 0);
    next_run_after_the_lease(&t).await;
    assert_eq!(t.get(&id).await["status"], "published");
    assert_eq!(t.h.stack.meta.published_posts().len(), 1);
}

#[tokio::test]
async fn a_run_killed_while_media_publish_is_on_its_way_publishes_once() {
    let t = setup().await;
    let (_, body) = t.create(json!({"type": "feed", "media": [image(1)]})).await;
    let id = body["post_id"].as_str().unwrap().to_string();
    kill_run_at(&t, &t.h.stack.meta.hold("media_publish")).await;
    next_run_after_the_lease(&t).await;
    next_run_after_the_lease(&t).await;
    assert_eq!(t.get(&id).await["status"], "published");
    assert_eq!(
        t.h.stack.meta.published_posts().len(),
        1,
        "one post at Meta"
    );
    assert_eq!(t.event_payloads("post.published").await.len(), 1);
}

#[tokio::test]
async fn a_run_killed_after_meta_published_never_sends_media_publish_again() {
    let t = setup().await;
    let (_, body) = t.create(json!({"type": "reel", "media": [video(1)]})).await;
    let id = body["post_id"].as_str().unwrap().to_string();
    t.h.stack.meta.set_video_polls(0);
    kill_run_at(&t, &t.h.stack.meta.stall_after_publish()).await;
    assert_eq!(t.h.stack.meta.published_posts().len(), 1, "Meta published");
    next_run_after_the_lease(&t).await;
    let post = t.get(&id).await;
    assert_eq!(post["status"], "published", "{post}");
    assert_eq!(t.h.stack.meta.calls("media_publish"), 1);
    assert_eq!(t.event_payloads("post.published").await.len(), 1);
}

#[tokio::test]
async fn a_run_at_its_deadline_leaves_the_rest_for_the_next_round() {
    let t = setup().await;
    for n in 0..3 {
        t.create(json!({"type": "feed", "media": [image(n)]})).await;
    }
    let first = t.invoke.run(Deadline::after_starts(1)).await.unwrap();
    assert_eq!((first.published, first.left_for_next_run), (1, 2));
    let rest = t.run().await;
    assert_eq!((rest.published, rest.left_for_next_run), (2, 0));
    assert_eq!(t.h.stack.meta.published_posts().len(), 3);
}

/// A shard with more due posts than one page: the run works the page and
/// reports the rest, so its continuation reads the next one.
#[tokio::test]
async fn a_shard_with_more_due_than_a_page_is_continued() {
    let t = setup().await;
    // 20 posts over 16 shards: some shard holds two.
    for n in 0..20 {
        t.create(json!({"type": "feed", "media": [image(n)]})).await;
    }
    let (paged, _) =
        infra::publish::publisher(&t.h.stack, t.h.clock.clone(), publish::Door::Invoke);
    let paged = paged.with_due_page(1);
    let first = paged.run(Deadline::distant()).await.unwrap();
    assert!(first.published < 20, "{first:?}");
    assert!(first.left_for_next_run >= 1, "{first:?}");
    let mut rounds = 1;
    let mut last = first;
    while last.left_for_next_run > 0 {
        last = paged.run(Deadline::distant()).await.unwrap();
        rounds += 1;
        assert!(rounds <= 20, "the chain never ends: {last:?}");
    }
    assert_eq!(t.h.stack.meta.published_posts().len(), 20);
    assert_eq!(t.h.stack.meta.calls("media_publish"), 20);
}

#[tokio::test]
async fn a_cancel_while_a_run_makes_video_containers_ahead_wins_and_nothing_is_published() {
    let t = setup().await;
    let (status, body) = t
        .create(json!({"type": "reel", "media": [video(1)], "publish_at": "2026-11-21T12:30:00Z"}))
        .await;
    assert_eq!(status, 201);
    let id = body["post_id"].as_str().unwrap().to_string();
    // Video containers are made up to an hour ahead: the run starts now.
    let gate = t.h.stack.meta.hold("graph");
    let p = t.invoke.clone();
    let run = tokio::spawn(async move { p.run(Deadline::distant()).await.unwrap() });
    gate.arrivals(1).await;
    let resp = t
        .http
        .handle(t.posts("DELETE", &format!("/{id}")).into_request())
        .await;
    assert_eq!(resp.status(), 204, "{}", resp.body_text());
    gate.release();
    let summary = run.await.unwrap();
    assert_eq!(
        summary.busy, 1,
        "the run saw the change and stopped: {summary:?}"
    );
    t.h.clock.advance(Duration::hours(1));
    t.run().await;
    assert_eq!(t.get(&id).await["status"], "cancelled");
    assert_eq!(t.h.stack.meta.calls("media_publish"), 0);
}

#[tokio::test]
async fn video_is_prepared_ahead_but_published_only_at_publish_at() {
    let t = setup().await;
    t.h.stack.meta.set_video_polls(2);
    let (_, body) = t
        .create(json!({"type": "reel", "media": [video(1)], "publish_at": "2026-11-21T13:30:00Z"}))
        .await;
    let id = body["post_id"].as_str().unwrap().to_string();
    // 12:00: not yet an hour ahead.
    assert_eq!(t.run().await.examined, 0);
    t.h.clock.advance(Duration::minutes(30));
    t.runs_a_minute_apart(4).await;
    let post = t.get(&id).await;
    assert_eq!(
        post["status"], "scheduled",
        "processed, waiting for its time: {post}"
    );
    assert_eq!(t.h.stack.meta.calls("media_publish"), 0);
    // 13:29:59: still not published; 13:30:00: published by that run.
    t.h.clock
        .advance(Duration::minutes(57) - Duration::seconds(1));
    assert_eq!(t.run().await.examined, 0);
    t.h.clock.advance(Duration::seconds(1));
    t.run().await;
    let post = t.get(&id).await;
    assert_eq!(
        (post["status"].as_str(), post["published_at"].as_str()),
        (Some("published"), Some("2026-11-21T13:30:00Z"))
    );
}
