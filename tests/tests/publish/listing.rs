//! Listing a connection's posts against moto's `by_owner` index: pages of
//! 50, `next_cursor` only when more posts (of the status asked) follow, and
//! a status filter that fills its pages from posts found further on.

use super::*;

/// `n` posts created a second apart, `post(i)` each: their ids, newest
/// first (as a listing gives them).
async fn make(t: &Setup, n: u32, post: fn(u32) -> Value) -> Vec<String> {
    let mut made = Vec::new();
    for i in 0..n {
        let (status, body) = t.create(post(i)).await;
        assert!(matches!(status, 201 | 202), "{body}");
        made.push(body["post_id"].as_str().unwrap().to_string());
        t.h.clock.advance(Duration::seconds(1));
    }
    made.reverse();
    made
}

fn now(i: u32) -> Value {
    json!({"type": "feed", "media": [image(i)]})
}

fn tomorrow(i: u32) -> Value {
    json!({"type": "feed", "media": [image(i)], "publish_at": "2026-11-23T10:00:00Z"})
}

/// Every page of the listing (`?status=` when given), following
/// `next_cursor` until it is null: each page's ids.
async fn pages(t: &Setup, status: Option<&str>) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query: Vec<String> = status.map(|s| format!("status={s}")).into_iter().collect();
        query.extend(cursor.map(|c| format!("cursor={c}")));
        let rest = format!("?{}", query.join("&"));
        let resp = t.http.handle(t.posts("GET", &rest).into_request()).await;
        assert_eq!(resp.status(), 200, "{}", resp.body_text());
        let body = resp.body_json();
        let ids = body["posts"].as_array().unwrap().iter();
        pages.push(
            ids.map(|p| p["post_id"].as_str().unwrap().to_string())
                .collect(),
        );
        match body["next_cursor"].as_str() {
            Some(next) if pages.len() < 10 => cursor = Some(next.to_string()),
            Some(_) => panic!("more than 10 pages"),
            None => return pages,
        }
    }
}

fn sizes(pages: &[Vec<String>]) -> Vec<usize> {
    pages.iter().map(Vec::len).collect()
}

#[tokio::test]
async fn fifty_posts_are_one_page_without_a_cursor_and_53_are_50_then_3() {
    let t = setup().await;
    let first = make(&t, 50, tomorrow).await;
    assert_eq!(pages(&t, None).await, std::slice::from_ref(&first));
    let newer = make(&t, 3, tomorrow).await;
    let found = pages(&t, None).await;
    assert_eq!(sizes(&found), [50, 3]);
    assert_eq!(found.concat(), [newer, first].concat());
}

#[tokio::test]
async fn a_status_filter_fills_its_pages_with_posts_found_further_on() {
    let t = setup().await;
    // The 52 oldest are published now; the 60 newest wait: the first 50
    // posts read are all scheduled.
    let publishing = make(&t, 52, now).await;
    let waiting = make(&t, 60, tomorrow).await;
    let found = pages(&t, Some("publishing")).await;
    assert_eq!((sizes(&found), found.concat()), (vec![50, 2], publishing));
    let found = pages(&t, Some("scheduled")).await;
    assert_eq!((sizes(&found), found.concat()), (vec![50, 10], waiting));
    assert_eq!(pages(&t, Some("failed")).await, [Vec::<String>::new()]);
}
