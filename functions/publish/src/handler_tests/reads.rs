//! Getting, listing and cancelling posts: only the owner's, the status
//! filter, pages, what may be cancelled.

use serde_json::{json, Value};
use shared::Clock;

use super::*;
use crate::post::Status;

async fn get(h: &Handler, user: &str, account: &str, id: &str) -> Answer {
    let post_id = id.to_string();
    ask(h, user, account, Action::Get { post_id }).await
}

async fn list(h: &Handler, user: &str, status: Option<&str>, cursor: Option<&str>) -> Answer {
    let account = if user == "bob" { BOBS } else { ACCOUNT };
    let (status, cursor) = (status.map(str::to_string), cursor.map(str::to_string));
    ask(h, user, account, Action::List { status, cursor }).await
}

async fn cancel(h: &Handler, user: &str, account: &str, id: &str) -> Answer {
    let post_id = id.to_string();
    ask(h, user, account, Action::Cancel { post_id }).await
}

/// The ids of a listing's posts, in its order.
fn ids(answer: &Answer) -> Vec<String> {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let posts = answer.body["posts"].as_array().expect("posts");
    posts
        .iter()
        .map(|p| p["post_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_post_is_shown_to_its_owner_only() {
    let store = ada_and_bob();
    store.tables().connections.push(conn(
        "ada",
        "17841400000000003",
        shared::connection::Status::Active,
    ));
    let h = handler(&store);
    let created = create(&h, "ada", ACCOUNT, scheduled("Hello"), None).await;
    let id = created.body["post_id"].as_str().unwrap();
    let mine = get(&h, "ada", ACCOUNT, id).await;
    assert_eq!((mine.status, &mine.body), (200, &created.body));
    for (user, account, post) in [
        ("bob", BOBS, id),
        ("bob", ACCOUNT, id),
        ("ada", "17841400000000003", id),
        ("ada", ACCOUNT, "post_000000000000000000000000"),
    ] {
        let answer = get(&h, user, account, post).await;
        assert_eq!(
            said(&answer),
            (404, Some("not_found")),
            "{user} on {account}"
        );
    }
}

#[tokio::test]
async fn a_listing_holds_the_connections_posts_newest_first() {
    let store = ada_and_bob();
    let clock = Clock::fixed(NOW);
    let h = handler_at(&store, &clock);
    let mut adas = Vec::new();
    for caption in ["one", "two", "three"] {
        adas.push(ada_creates(&h, scheduled(caption)).await);
        clock.advance(Duration::minutes(1));
    }
    let bobs = create(&h, "bob", BOBS, scheduled("bob"), None).await;
    adas.reverse();
    let answer = list(&h, "ada", None, None).await;
    assert_eq!(ids(&answer), adas);
    assert_eq!(answer.body["next_cursor"], Value::Null);
    assert_eq!(answer.body["posts"][0]["caption"], "three");
    assert_eq!(
        ids(&list(&h, "bob", None, None).await),
        [bobs.body["post_id"].as_str().unwrap()]
    );
    assert_eq!(
        said(&list(&h, "carol", None, None).await),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn a_listing_filters_by_status_and_refuses_an_unknown_one() {
    let store = ada_and_bob();
    let clock = Clock::fixed(NOW);
    let h = handler_at(&store, &clock);
    let kept = ada_creates(&h, scheduled("kept")).await;
    clock.advance(Duration::minutes(1));
    let gone = ada_creates(&h, scheduled("gone")).await;
    clock.advance(Duration::minutes(1));
    let now = ada_creates(&h, for_now()).await;
    assert_eq!(cancel(&h, "ada", ACCOUNT, &gone).await.status, 204);
    assert_eq!(ids(&list(&h, "ada", Some("cancelled"), None).await), [gone]);
    assert_eq!(ids(&list(&h, "ada", Some("scheduled"), None).await), [kept]);
    assert_eq!(ids(&list(&h, "ada", Some("publishing"), None).await), [now]);
    assert!(ids(&list(&h, "ada", Some("published"), None).await).is_empty());
    let unknown = list(&h, "ada", Some("deleted"), None).await;
    assert_eq!(said(&unknown), (400, Some("invalid_request")));
}

#[tokio::test]
async fn a_long_listing_comes_in_pages_of_50_each_post_once() {
    let store = ada_and_bob();
    let clock = Clock::fixed(NOW);
    let h = handler_at(&store, &clock);
    let mut made = Vec::new();
    for i in 0..53 {
        made.push(ada_creates(&h, scheduled(&format!("post {i}"))).await);
        clock.advance(Duration::seconds(1));
    }
    made.reverse();
    let first = list(&h, "ada", None, None).await;
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_string();
    let second = list(&h, "ada", None, Some(&cursor)).await;
    assert_eq!(second.body["next_cursor"], Value::Null);
    let (first, second) = (ids(&first), ids(&second));
    assert_eq!((first.len(), second.len()), (50, 3));
    assert_eq!([first, second].concat(), made);
    for bad in ["nonsense", "12.post_x;drop", "x.post_1"] {
        let answer = list(&h, "ada", None, Some(bad)).await;
        assert_eq!(said(&answer), (400, Some("invalid_request")), "{bad}");
    }
}

#[tokio::test]
async fn cancelling_a_scheduled_post_is_204_and_takes_it_off_the_schedule() {
    let store = ada_and_bob();
    let clock = Clock::fixed(NOW);
    let h = handler_at(&store, &clock);
    let id = ada_creates(&h, scheduled("Hello")).await;
    clock.advance(Duration::minutes(5));
    let answer = cancel(&h, "ada", ACCOUNT, &id).await;
    assert_eq!((answer.status, &answer.body), (204, &Value::Null));
    let stored = row(&store, &id);
    assert_eq!((stored.post.status, stored.due), (Status::Cancelled, None));
    assert_eq!(stored.post.updated_at, NOW + Duration::minutes(5));
    assert_eq!(stored.post.version, 2);
    let shown = get(&h, "ada", ACCOUNT, &id).await;
    assert_eq!(shown.body["status"], "cancelled");
    assert_eq!(shown.body["updated_at"], "2026-11-21T12:05:00Z");
    let again = cancel(&h, "ada", ACCOUNT, &id).await;
    assert_eq!(said(&again), (409, Some("not_cancellable")));
}

#[tokio::test]
async fn a_post_no_longer_scheduled_is_not_cancellable_and_stays_as_it_was() {
    let store = ada_and_bob();
    let h = handler(&store);
    let published = ada_creates(&h, scheduled("published")).await;
    let attempted = ada_creates(&h, scheduled("attempted")).await;
    let now = ada_creates(&h, for_now()).await;
    {
        let mut tables = store.tables();
        let row = tables.posts.get_mut(&published).unwrap();
        (row.post.status, row.due) = (Status::Published, None);
        tables
            .posts
            .get_mut(&attempted)
            .unwrap()
            .post
            .publish_attempted = true;
    }
    for id in [&published, &attempted, &now] {
        let before = row(&store, id);
        let answer = cancel(&h, "ada", ACCOUNT, id).await;
        assert_eq!(said(&answer), (409, Some("not_cancellable")), "{id}");
        let after = row(&store, id);
        assert_eq!((after.post, after.due), (before.post, before.due));
    }
    assert_eq!(
        get(&h, "ada", ACCOUNT, &published).await.body["status"],
        json!("published")
    );
}

#[tokio::test]
async fn nobody_else_cancels_a_post() {
    let store = ada_and_bob();
    let h = handler(&store);
    let id = ada_creates(&h, scheduled("Hello")).await;
    for (user, account) in [("bob", BOBS), ("bob", ACCOUNT), ("", ACCOUNT)] {
        let answer = cancel(&h, user, account, &id).await;
        assert_eq!(
            said(&answer),
            (404, Some("not_found")),
            "{user} on {account}"
        );
    }
    assert_eq!(row(&store, &id).post.status, Status::Scheduled);
}

#[tokio::test]
async fn the_accounts_next_owner_sees_and_cancels_none_of_the_previous_owners_posts() {
    let store = ada_and_bob();
    let h = handler(&store);
    let id = ada_creates(&h, scheduled("Ada's")).await;
    // Ada deleted her connection; Carol connected the same account since.
    store.tables().connections[0] = conn("carol", ACCOUNT, shared::connection::Status::Active);
    assert_eq!(
        said(&get(&h, "carol", ACCOUNT, &id).await),
        (404, Some("not_found"))
    );
    assert_eq!(
        said(&cancel(&h, "carol", ACCOUNT, &id).await),
        (404, Some("not_found"))
    );
    assert!(ids(&list(&h, "carol", None, None).await).is_empty());
    assert_eq!(row(&store, &id).post.status, Status::Scheduled);
}

/// `n` posts Ada creates a second apart, `post(i)` each: their ids, newest
/// first (as a listing gives them).
async fn ada_makes(h: &Handler, clock: &Clock, n: usize, post: fn(usize) -> Value) -> Vec<String> {
    let mut made = Vec::new();
    for i in 0..n {
        made.push(ada_creates(h, post(i)).await);
        clock.advance(Duration::seconds(1));
    }
    made.reverse();
    made
}

/// Every page of Ada's listing (of `status`), following `next_cursor` until
/// it is null: each page's ids.
async fn pages(h: &Handler, status: Option<&str>) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let answer = list(h, "ada", status, cursor.as_deref()).await;
        pages.push(ids(&answer));
        match answer.body["next_cursor"].as_str() {
            Some(next) if pages.len() < 10 => cursor = Some(next.to_string()),
            Some(_) => panic!("more than 10 pages"),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn exactly_50_posts_are_one_page_and_100_two_with_no_empty_page_after() {
    let store = ada_and_bob();
    let clock = Clock::fixed(NOW);
    let h = handler_at(&store, &clock);
    let first = ada_makes(&h, &clock, 50, |i| scheduled(&format!("a{i}"))).await;
    assert_eq!(pages(&h, None).await, std::slice::from_ref(&first));
    let newer = ada_makes(&h, &clock, 50, |i| scheduled(&format!("b{i}"))).await;
    assert_eq!(pages(&h, None).await, [newer, first]);
}

#[tokio::test]
async fn a_status_filter_fills_its_pages_with_posts_found_further_on() {
    let store = ada_and_bob();
    let clock = Clock::fixed(NOW);
    let h = handler_at(&store, &clock);
    // The 52 oldest are published now; the 60 newest wait: the first 50
    // posts read are all scheduled.
    let publishing = ada_makes(&h, &clock, 52, |_| for_now()).await;
    let waiting = ada_makes(&h, &clock, 60, |i| scheduled(&format!("{i}"))).await;
    let found = pages(&h, Some("publishing")).await;
    let sizes: Vec<usize> = found.iter().map(Vec::len).collect();
    assert_eq!((sizes, found.concat()), (vec![50, 2], publishing));
    let found = pages(&h, Some("scheduled")).await;
    let sizes: Vec<usize> = found.iter().map(Vec::len).collect();
    assert_eq!((sizes, found.concat()), (vec![50, 10], waiting));
    assert!(pages(&h, Some("failed")).await.concat().is_empty());
}

#[tokio::test]
async fn a_filtered_page_reads_at_most_1000_posts_then_says_where_to_go_on() {
    let store = ada_and_bob();
    let clock = Clock::fixed(NOW);
    let h = handler_at(&store, &clock);
    let publishing = ada_makes(&h, &clock, 3, |_| for_now()).await;
    ada_makes(&h, &clock, 1000, |i| scheduled(&format!("{i}"))).await;
    let found = pages(&h, Some("publishing")).await;
    assert_eq!(found, [vec![], publishing]);
}
