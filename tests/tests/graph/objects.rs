//! Meta serves an object only to a token of the account it belongs to; the
//! proxy calls with the connection's own token and hands Meta's refusal
//! back, so one person's connection never reaches another's media.

use infra::apigw::{ApiRequest, ResponseExt};
use infra::graph_proxy;
use integration_tests::*;

fn proxied(method: &str, account: &str, path: &str) -> ApiRequest {
    ApiRequest::new(
        method,
        &format!("/connections/instagram/{account}/graph/{path}"),
    )
}

#[tokio::test]
async fn a_connection_reaches_its_own_accounts_media_and_never_anothers() {
    let h = Harness::new().await;
    let one = h.connect_instagram_as("user-1", "shop.one").await;
    let two = h.connect_instagram_as("user-2", "shop.two").await;
    let (graph, _) = graph_proxy::graph(&h.stack, h.clock.clone());
    let call = |method: &str, account: &str, user: &str, path: &str| {
        graph.handle(proxied(method, account, path).user(user).into_request())
    };

    let listed = call("GET", &one, "user-1", "me/media").await;
    assert_eq!(listed.status(), 200, "{}", listed.body_text());
    let media = listed.body_json()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let own = call("GET", &one, "user-1", &media).await;
    assert_eq!(own.status(), 200, "{}", own.body_text());
    assert_eq!(own.body_json()["id"], media.as_str());
    let comments = call("GET", &one, "user-1", &format!("{media}/comments")).await;
    assert_eq!(comments.status(), 200, "{}", comments.body_text());

    // The same ids through another person's connection: Meta refuses, and
    // the refusal is what the caller gets.
    for path in [media.clone(), format!("{media}/comments")] {
        let foreign = call("GET", &two, "user-2", &path).await;
        assert_eq!(foreign.status(), 400, "{path}: {}", foreign.body_text());
        let error = &foreign.body_json()["error"];
        assert_eq!(
            (error["code"].as_i64(), error["error_subcode"].as_i64()),
            (Some(100), Some(33))
        );
    }
    let deleted = call("DELETE", &two, "user-2", &media).await;
    assert_eq!(deleted.status(), 400, "{}", deleted.body_text());
    let still = call("GET", &one, "user-1", &media).await;
    assert_eq!(still.status(), 200, "its owner still reads it");
}
