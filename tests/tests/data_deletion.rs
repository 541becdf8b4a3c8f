//! Data deletion as the person sees it: the status URL Meta shows them is on
//! the public API (never under Meta's secret path prefix), and a request
//! covers every account the service held for them within the retention,
//! including accounts the product deleted before, with their stored events
//! and the Graph proxy's stored answers.

use infra::apigw::{match_route_under, ApiRequest, Door, ResponseExt};
use integration_tests::*;
use serde_json::{json, Value};
use shared::webhook::make_signed_request;

/// The app-scoped id the emulated Meta's exchange gives.
const META_USER: &str = "26000000000000001";

fn ig_secret(h: &Harness) -> String {
    h.stack.meta.apps().instagram_app_secret
}

/// `POST /meta/data-deletion` as Meta posts it: under the prefix, a form with
/// a `signed_request` for the person issued at the test clock's time.
async fn request_deletion(h: &Harness) -> Value {
    let signed = make_signed_request(
        ig_secret(h).as_bytes(),
        &json!({"algorithm": "HMAC-SHA256", "issued_at": h.clock.now().unix_timestamp(),
                "user_id": META_USER}),
    );
    let req = ApiRequest::post(&h.stack.meta_path("/meta/data-deletion"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "signed_request={}",
            url::form_urlencoded::byte_serialize(signed.as_bytes()).collect::<String>()
        ));
    let resp = h.call_webhook(req).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    resp.body_json()
}

/// `GET <url>` the way the deployed APIs route it: the gateway must serve it
/// on the public API (no stage), and the webhook function answers it.
async fn open_status_page(h: &Harness, url: &str) -> Value {
    let path = url::Url::parse(url).unwrap().path().to_string();
    let route = match_route_under("GET", &path, &h.stack.meta_path_prefix)
        .unwrap_or_else(|| panic!("no public route serves {path}"));
    assert_eq!(route.door, Door::Open, "the public API, no JWT");
    assert_eq!(route.stage, "", "not under Meta's stage");
    let resp = h.call_webhook(ApiRequest::get(&path)).await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    resp.body_json()
}

#[tokio::test]
async fn the_status_url_is_on_the_public_api_and_never_carries_the_meta_prefix() {
    let h = Harness::new().await;
    let connected = h.connect("instagram", "user-1").await.location();
    assert_eq!(param(&connected, "status").as_deref(), Some("connected"));
    h.clock.advance(time::Duration::minutes(1));

    let answer = request_deletion(&h).await;
    let code = answer["confirmation_code"].as_str().unwrap();
    let url = answer["url"].as_str().unwrap();
    let public = format!("{}/meta/data-deletion/", h.stack.var("PUBLIC_BASE_URL"));
    assert_eq!(url, format!("{public}{code}"));
    let prefix = &h.stack.meta_path_prefix;
    let secret = prefix.trim_start_matches('/');
    assert!(!url.contains(secret), "the status URL carries the prefix");

    // Where Meta's routes live, there is no status page.
    let under_prefix = h.stack.meta_path(url::Url::parse(url).unwrap().path());
    assert!(match_route_under("GET", &under_prefix, prefix).is_none());

    let status = open_status_page(&h, url).await;
    assert_eq!(status["confirmation_code"], code);
    assert_eq!(status["status"], "pending");

    // Nothing the service answered, to Meta or to the person, names it.
    let seen = h.seen.lock().unwrap().join("\n");
    assert!(!seen.contains(secret), "a response carries the Meta prefix");
}
