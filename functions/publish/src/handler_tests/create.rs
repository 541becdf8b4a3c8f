//! Creating posts: scheduled and now, each refusal, idempotency keys, an
//! outage.

use serde_json::json;
use shared::connection::Status as ConnStatus;
use time::macros::datetime;

use super::*;
use crate::post::Status;

#[tokio::test]
async fn a_scheduled_post_is_201_and_stored_scheduled_due_at_its_time() {
    let store = ada_and_bob();
    let h = handler(&store);
    let answer = create(&h, "ada", ACCOUNT, scheduled("Hello #one"), None).await;
    assert_eq!(
        (answer.status, answer.replayed),
        (201, false),
        "{}",
        answer.body
    );
    let body = &answer.body;
    assert_eq!(body["status"], "scheduled");
    assert_eq!(body["account_id"], ACCOUNT);
    assert_eq!(body["caption"], "Hello #one");
    assert_eq!(body["publish_at"], "2026-11-22T12:00:00Z");
    assert_eq!(body["created_at"], "2026-11-21T12:00:00Z");
    assert_eq!(
        body["media"],
        json!([{"kind": "image", "url": "https://cdn.example.com/a.jpg"}])
    );
    let stored = row(&store, body["post_id"].as_str().unwrap());
    assert_eq!(
        (stored.post.user_id.as_str(), stored.post.status),
        ("ada", Status::Scheduled)
    );
    assert_eq!(stored.due, Some(datetime!(2026-11-22 12:00 UTC)));
    assert_eq!(&stored.post.view(), body, "the answer is the stored post");
}

#[tokio::test]
async fn a_scheduled_video_is_due_an_hour_before_its_time() {
    let store = ada_and_bob();
    let h = handler(&store);
    let reel = json!({"type": "reel", "media": [{"kind": "video", "url": "https://cdn.example.com/a.mp4"}],
        "publish_at": "2026-11-22T12:00:00Z"});
    let id = ada_creates(&h, reel).await;
    assert_eq!(row(&store, &id).due, Some(datetime!(2026-11-22 11:00 UTC)));
}

#[tokio::test]
async fn a_post_for_now_or_a_past_time_is_202_publishing_and_due_at_once() {
    let store = ada_and_bob();
    let h = handler(&store);
    let mut past = for_now();
    past["publish_at"] = json!("2026-11-20T09:00:00Z");
    for post in [for_now(), past] {
        let answer = create(&h, "ada", ACCOUNT, post, None).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        assert_eq!(answer.body["status"], "publishing");
        assert_eq!(answer.body["publish_at"], json!(null));
        let stored = row(&store, answer.body["post_id"].as_str().unwrap());
        assert_eq!(
            (stored.post.status, stored.due),
            (Status::Publishing, Some(NOW))
        );
    }
    assert_eq!(store.tables().posts.len(), 2);
}

#[tokio::test]
async fn invalid_posts_are_400_with_their_field_and_store_nothing() {
    let store = ada_and_bob();
    let h = handler(&store);
    let image = json!([{"kind": "image", "url": "https://cdn.example.com/a.jpg"}]);
    let cases = [
        (
            json!({"type": "story", "media": image, "caption": "no"}),
            "$.caption",
        ),
        (
            json!({"type": "feed", "media": [{"kind": "image", "url": "http://cdn.example.com/a.jpg"}]}),
            "$.media[0].url",
        ),
        (
            json!({"type": "feed", "media": image, "publish_at": "2027-02-04T12:00:01Z"}),
            "$.publish_at",
        ),
        (
            json!({"type": "feed", "media": image, "extra": 1}),
            "$.extra",
        ),
        (json!({"type": "reel", "media": image}), "$.media"),
        (json!(null), "$"),
    ];
    for (post, field) in cases {
        let answer = create(&h, "ada", ACCOUNT, post.clone(), Some("k")).await;
        assert_eq!(said(&answer), (400, Some("invalid_post")), "{post}");
        assert_eq!(answer.body["field"], field, "{post}");
    }
    let tables = store.tables();
    assert!(tables.posts.is_empty() && tables.records.is_empty());
}

#[tokio::test]
async fn idempotency_keys_of_1_to_255_characters_are_taken_others_refused() {
    let store = ada_and_bob();
    let h = handler(&store);
    for bad in [String::new(), "k".repeat(256)] {
        let answer = create(&h, "ada", ACCOUNT, scheduled("x"), Some(&bad)).await;
        assert_eq!(
            said(&answer),
            (400, Some("invalid_request")),
            "{}",
            bad.len()
        );
    }
    assert!(store.tables().posts.is_empty());
    for good in ["k".to_string(), "k".repeat(255)] {
        let answer = create(&h, "ada", ACCOUNT, scheduled("x"), Some(&good)).await;
        assert_eq!(answer.status, 201, "{}", good.len());
    }
    assert_eq!(store.tables().posts.len(), 2);
}

#[tokio::test]
async fn a_connection_to_connect_again_or_revoked_is_409_and_nothing_is_stored() {
    for (status, code) in [
        (ConnStatus::NeedsReauth, "connection_needs_reauth"),
        (ConnStatus::Revoked, "connection_revoked"),
    ] {
        let store = memory::with(vec![conn("ada", ACCOUNT, status)]);
        let answer = create(&handler(&store), "ada", ACCOUNT, scheduled("x"), Some("k")).await;
        assert_eq!(said(&answer), (409, Some(code)));
        assert!(store.tables().posts.is_empty() && store.tables().records.is_empty());
    }
}

#[tokio::test]
async fn no_connection_of_the_callers_is_404_and_nothing_is_stored() {
    let store = ada_and_bob();
    let h = handler(&store);
    for (user, account) in [("bob", ACCOUNT), ("ada", BOBS), ("", ACCOUNT), ("ada", "1")] {
        let answer = create(&h, user, account, scheduled("x"), None).await;
        assert_eq!(
            said(&answer),
            (404, Some("not_found")),
            "{user} on {account}"
        );
    }
    assert!(store.tables().posts.is_empty());
}

#[tokio::test]
async fn the_same_key_and_post_again_replays_the_same_answer() {
    let store = ada_and_bob();
    let h = handler(&store);
    for post in [scheduled("Hello"), for_now()] {
        let key = post["caption"].to_string();
        let first = create(&h, "ada", ACCOUNT, post.clone(), Some(&key)).await;
        let again = create(&h, "ada", ACCOUNT, post, Some(&key)).await;
        assert!(!first.replayed && again.replayed);
        assert_eq!((again.status, &again.body), (first.status, &first.body));
    }
    assert_eq!(store.tables().posts.len(), 2, "one post per key");
}

#[tokio::test]
async fn the_same_key_for_another_post_is_422_and_stores_nothing_more() {
    let store = ada_and_bob();
    let h = handler(&store);
    let first = create(&h, "ada", ACCOUNT, scheduled("Hello"), Some("k")).await;
    let other = create(&h, "ada", ACCOUNT, scheduled("Bye"), Some("k")).await;
    assert_eq!(said(&other), (422, Some("idempotency_key_reused")));
    assert!(!other.replayed);
    let tables = store.tables();
    assert_eq!(tables.posts.len(), 1);
    let kept = &tables.posts[first.body["post_id"].as_str().unwrap()];
    assert_eq!(kept.post.request.caption.as_deref(), Some("Hello"));
}

#[tokio::test]
async fn a_key_is_the_owners_own_and_without_one_each_create_is_a_post() {
    let store = ada_and_bob();
    let h = handler(&store);
    let ada = create(&h, "ada", ACCOUNT, scheduled("Hello"), Some("k")).await;
    let bob = create(&h, "bob", BOBS, scheduled("Hello"), Some("k")).await;
    assert_eq!((bob.status, bob.replayed), (201, false));
    assert_ne!(bob.body["post_id"], ada.body["post_id"]);
    assert_eq!(bob.body["account_id"], BOBS);
    ada_creates(&h, scheduled("Hello")).await;
    ada_creates(&h, scheduled("Hello")).await;
    assert_eq!(store.tables().posts.len(), 4);
}

#[tokio::test]
async fn a_store_outage_is_503_for_every_route_and_changes_nothing() {
    let store = ada_and_bob();
    let h = handler(&store);
    let id = ada_creates(&h, scheduled("Hello")).await;
    store.set_down(true);
    let actions = [
        Action::Create {
            post: scheduled("x"),
            idempotency_key: Some("k".into()),
        },
        Action::Get {
            post_id: id.clone(),
        },
        Action::List {
            status: None,
            cursor: None,
        },
        Action::Cancel {
            post_id: id.clone(),
        },
    ];
    for action in &actions {
        let answer = ask(&h, "ada", ACCOUNT, action.clone()).await;
        assert_eq!(
            said(&answer),
            (503, Some("service_unavailable")),
            "{action:?}"
        );
    }
    store.set_down(false);
    store.tables().posts_down = true;
    for action in actions {
        let answer = ask(&h, "ada", ACCOUNT, action.clone()).await;
        assert_eq!(
            said(&answer),
            (503, Some("service_unavailable")),
            "{action:?}"
        );
    }
    store.tables().posts_down = false;
    let tables = store.tables();
    assert_eq!((tables.posts.len(), tables.records.len()), (1, 0));
    assert_eq!(tables.posts[&id].post.status, Status::Scheduled);
}
