//! Publishing and scheduling posts (CONTRACT.md, "Publishing") through both
//! doors and the every-minute run, against moto and the emulated Meta's
//! container flow: every post type, scheduling at fixed instants, video
//! processing over several runs, Meta's failures, the daily limit,
//! `media_publish` once even when its answer is lost, two runs at once,
//! cancel, idempotent create, the refusals, listings' pages, and uploads.

use infra::apigw::{ApiRequest, ResponseExt};
use integration_tests::*;
use publish::{Door, Publisher, RunSummary};
use serde_json::{json, Value};
use shared::continuation::Deadline;
use shared::time::Duration;
use shared::vault::KmsDataKeys;

#[path = "publish/exactly_once.rs"]
mod exactly_once;
#[path = "publish/failures.rs"]
mod failures;
#[path = "publish/listing.rs"]
mod listing;
#[path = "publish/uploads.rs"]
mod uploads;

pub struct Setup {
    pub h: Harness,
    pub http: Publisher<KmsDataKeys>,
    pub invoke: Publisher<KmsDataKeys>,
    pub account: String,
}

pub async fn setup() -> Setup {
    let h = Harness::new().await;
    let account = h.connect_instagram_as("user-1", "shop.one").await;
    let (http, _) = infra::publish::publisher(&h.stack, h.clock.clone(), Door::Http);
    let (invoke, _) = infra::publish::publisher(&h.stack, h.clock.clone(), Door::Invoke);
    Setup {
        h,
        http,
        invoke,
        account,
    }
}

pub fn image(n: u32) -> Value {
    json!({"kind": "image", "url": format!("https://cdn.example.com/{n}.jpg")})
}

pub fn video(n: u32) -> Value {
    json!({"kind": "video", "url": format!("https://cdn.example.com/{n}.mp4")})
}

impl Setup {
    pub fn posts(&self, method: &str, rest: &str) -> ApiRequest {
        ApiRequest::new(
            method,
            &format!("/connections/instagram/{}/posts{rest}", self.account),
        )
        .user("user-1")
    }

    /// `POST .../posts` as user-1: (status, body).
    pub async fn create(&self, post: Value) -> (u16, Value) {
        let resp = self
            .http
            .handle(self.posts("POST", "").json(&post).into_request())
            .await;
        (resp.status().as_u16(), resp.body_json())
    }

    /// The backend's invocation: (status, body).
    pub async fn invoke(&self, payload: Value) -> (u16, Value) {
        let answer = self.invoke.handle_invocation(payload).await;
        (
            answer["status"].as_u64().unwrap() as u16,
            answer["body"].clone(),
        )
    }

    pub async fn get(&self, post_id: &str) -> Value {
        let resp = self
            .http
            .handle(self.posts("GET", &format!("/{post_id}")).into_request())
            .await;
        assert_eq!(resp.status(), 200, "{}", resp.body_text());
        resp.body_json()
    }

    pub async fn run(&self) -> RunSummary {
        self.invoke
            .run(Deadline::distant())
            .await
            .expect("a publish run")
    }

    /// `n` runs, the clock a minute further before each after the first.
    pub async fn runs_a_minute_apart(&self, n: usize) {
        for i in 0..n {
            if i > 0 {
                self.h.clock.advance(Duration::minutes(1));
            }
            self.run().await;
        }
    }

    pub async fn event_payloads(&self, kind: &str) -> Vec<Value> {
        self.h
            .events(kind)
            .await
            .iter()
            .map(|e| serde_json::from_str(&s(e, "payload")).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn an_image_post_now_is_published_with_its_permalink_and_an_event() {
    let t = setup().await;
    let (status, body) = t
        .create(json!({"type": "feed", "media": [image(1)], "caption": "Hello #launch"}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "publishing");
    let id = body["post_id"].as_str().unwrap().to_string();

    let summary = t.run().await;
    assert_eq!(summary.published, 1, "{summary:?}");
    let post = t.get(&id).await;
    assert_eq!(post["status"], "published", "{post}");
    assert!(post["media_id"]
        .as_str()
        .is_some_and(|m| m.starts_with("1792")));
    assert!(post["permalink"]
        .as_str()
        .is_some_and(|p| p.starts_with("https://www.instagram.com/p/")));
    assert_eq!(post["published_at"], "2026-11-21T12:00:00Z");
    assert_eq!(t.h.stack.meta.published_posts().len(), 1);
    let events = t.event_payloads("post.published").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["post_id"], id.as_str());
    assert_eq!(events[0]["permalink"], post["permalink"]);

    // Nothing is due any more: later runs do nothing.
    t.h.clock.advance(Duration::minutes(5));
    assert_eq!(t.run().await.examined, 0);
    assert_eq!(t.h.stack.meta.calls("media_publish"), 1);
    t.h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn a_scheduled_post_waits_for_publish_at_and_the_first_run_after_publishes_it() {
    let t = setup().await;
    let at = "2026-11-22T09:00:00Z";
    let (status, body) = t
        .invoke(json!({"action": "create", "provider": "instagram", "account_id": t.account, "user_id": "user-1",
            "post": {"type": "feed", "media": [image(1)], "caption": "Tomorrow", "publish_at": at}}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["publish_at"].as_str()),
        (Some("scheduled"), Some(at))
    );
    let id = body["post_id"].as_str().unwrap().to_string();

    t.run().await;
    // 08:59:59 the next day: still scheduled, Meta not called.
    t.h.clock
        .advance(Duration::hours(21) - Duration::seconds(1));
    assert_eq!(t.run().await.examined, 0);
    assert_eq!(t.get(&id).await["status"], "scheduled");
    assert_eq!(t.h.stack.meta.calls("media_publish"), 0);

    t.h.clock.advance(Duration::seconds(1));
    assert_eq!(t.run().await.published, 1);
    let (_, post) = t
        .invoke(json!({"action": "get", "provider": "instagram", "account_id": t.account, "user_id": "user-1", "post_id": id}))
        .await;
    assert_eq!(post["status"], "published");
    assert_eq!(post["published_at"], at);
}

#[tokio::test]
async fn a_carousel_of_three_makes_its_children_first_and_publishes_once() {
    let t = setup().await;
    let (status, body) = t
        .create(
            json!({"type": "feed", "media": [image(1), image(2), video(3)], "caption": "Three"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["post_id"].as_str().unwrap().to_string();
    t.h.stack.meta.set_video_polls(0);
    t.run().await;
    let post = t.get(&id).await;
    assert_eq!(post["status"], "published", "{post}");
    assert_eq!(t.h.stack.meta.published_posts().len(), 1);
    assert_eq!(post["media"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_reel_is_published_after_its_video_finishes_processing_over_several_runs() {
    let t = setup().await;
    t.h.stack.meta.set_video_polls(3);
    let (_, body) = t
        .create(json!({"type": "reel", "media": [video(1)], "options": {"share_to_feed": true}}))
        .await;
    let id = body["post_id"].as_str().unwrap().to_string();

    t.run().await;
    assert_eq!(t.get(&id).await["status"], "processing");
    // The same minute again: not polled twice.
    assert_eq!(t.run().await.examined, 0);
    t.runs_a_minute_apart(3).await;
    assert_eq!(t.get(&id).await["status"], "processing");
    t.h.clock.advance(Duration::minutes(1));
    t.run().await;
    let post = t.get(&id).await;
    assert_eq!(post["status"], "published", "{post}");
    assert_eq!(t.h.stack.meta.calls("media_publish"), 1);
}

#[tokio::test]
async fn a_story_is_published() {
    let t = setup().await;
    let (status, body) = t
        .create(json!({"type": "story", "media": [image(1)]}))
        .await;
    assert_eq!(status, 202, "{body}");
    t.run().await;
    assert_eq!(
        t.get(body["post_id"].as_str().unwrap()).await["status"],
        "published"
    );
}

#[tokio::test]
async fn only_the_owner_sees_or_cancels_a_post_and_cancel_works_only_while_scheduled() {
    let t = setup().await;
    let (_, later) = t
        .create(json!({"type": "feed", "media": [image(1)], "publish_at": "2026-11-23T10:00:00Z"}))
        .await;
    let (_, now) = t.create(json!({"type": "feed", "media": [image(2)]})).await;
    let later = later["post_id"].as_str().unwrap().to_string();
    let now = now["post_id"].as_str().unwrap().to_string();

    let other = |m: &str, rest: &str| {
        ApiRequest::new(
            m,
            &format!("/connections/instagram/{}/posts{rest}", t.account),
        )
        .user("user-2")
        .into_request()
    };
    for req in [
        other("GET", &format!("/{later}")),
        other("DELETE", &format!("/{later}")),
        other("GET", ""),
    ] {
        let resp = t.http.handle(req).await;
        assert_eq!(resp.status(), 404, "{}", resp.body_text());
    }

    let list = t
        .http
        .handle(t.posts("GET", "").into_request())
        .await
        .body_json();
    let ids: Vec<&str> = list["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["post_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    let scheduled = t
        .http
        .handle(t.posts("GET", "?status=scheduled").into_request())
        .await
        .body_json();
    assert_eq!(scheduled["posts"].as_array().unwrap().len(), 1);

    let resp = t
        .http
        .handle(t.posts("DELETE", &format!("/{later}")).into_request())
        .await;
    assert_eq!(resp.status(), 204, "{}", resp.body_text());
    assert_eq!(t.get(&later).await["status"], "cancelled");

    t.run().await;
    assert_eq!(t.get(&now).await["status"], "published");
    let resp = t
        .http
        .handle(t.posts("DELETE", &format!("/{now}")).into_request())
        .await;
    assert_eq!(
        (resp.status().as_u16(), resp.body_json()["error"].clone()),
        (409, json!("not_cancellable"))
    );

    // Past its time, the cancelled post is never published.
    t.h.clock.advance(Duration::days(3));
    t.run().await;
    assert_eq!(t.h.stack.meta.published_posts().len(), 1);
}

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_post_and_another_body_is_refused() {
    let t = setup().await;
    let send = |caption: &str| {
        t.posts("POST", "")
            .header("idempotency-key", "campaign-7-post-1")
            .json(&json!({"type": "feed", "media": [image(1)], "caption": caption}))
            .into_request()
    };
    let first = t.http.handle(send("One")).await;
    assert_eq!(first.status(), 202);
    let again = t.http.handle(send("One")).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.body_json()["post_id"], first.body_json()["post_id"]);
    assert_eq!(
        again.header_str("idempotent-replayed").as_deref(),
        Some("true")
    );
    let other = t.http.handle(send("Two")).await;
    assert_eq!(
        (other.status().as_u16(), other.body_json()["error"].clone()),
        (422, json!("idempotency_key_reused"))
    );
    t.run().await;
    assert_eq!(t.h.stack.meta.published_posts().len(), 1);
}

#[tokio::test]
async fn refusals_name_the_field_through_both_doors() {
    let t = setup().await;
    let long = "x".repeat(2_201);
    for (post, field) in [
        (json!({"type": "feed", "media": []}), "$.media"),
        (json!({"type": "reel", "media": [image(1)]}), "$.media"),
        (
            json!({"type": "feed", "media": [image(1)], "caption": long}),
            "$.caption",
        ),
        (
            json!({"type": "story", "media": [image(1)], "caption": "no"}),
            "$.caption",
        ),
        (
            json!({"type": "feed", "media": [image(1)], "publish_at": "2027-03-01T00:00:00Z"}),
            "$.publish_at",
        ),
        (
            json!({"type": "feed", "media": [{"kind": "image", "url": "https://127.0.0.1/a.jpg"}]}),
            "$.media[0].url",
        ),
        (
            json!({"type": "feed", "media": [{"kind": "image", "url": "http://cdn.example.com/a.jpg"}]}),
            "$.media[0].url",
        ),
    ] {
        let (status, body) = t.create(post.clone()).await;
        assert_eq!(
            (status, body["error"].as_str(), body["field"].as_str()),
            (400, Some("invalid_post"), Some(field)),
            "{post}"
        );
        let (status, body) = t
            .invoke(json!({"action": "create", "provider": "instagram", "account_id": t.account, "user_id": "user-1", "post": post}))
            .await;
        assert_eq!((status, body["field"].as_str()), (400, Some(field)));
    }
    let gateway_event = ApiRequest::post(&format!("/connections/instagram/{}/posts", t.account))
        .user("user-1")
        .json(&json!({"type": "feed", "media": [image(1)]}))
        .event();
    let (status, body) = t.invoke(gateway_event).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    let (status, _) = t
        .invoke(json!({"action": "list", "provider": "instagram", "account_id": t.account, "user_id": "user-2"}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        t.h.scan("POSTS_TABLE").await.len(),
        0,
        "nothing refused was stored"
    );
}
