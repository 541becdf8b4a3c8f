use super::*;

const IG: Subject<'static> = Subject {
    provider: Provider::Instagram,
    account_id: "17841400000000001",
    page_id: None,
};
const FB: Subject<'static> = Subject {
    provider: Provider::Facebook,
    account_id: "17841400000000021",
    page_id: Some("p1"),
};

fn ok(s: &Subject<'_>, method: &str, path: &str) -> bool {
    check(s, method, path, &[]).is_ok()
}

#[test]
fn accepts_the_calls_products_make() {
    for path in [
        "me",
        "me/messages",
        "me/media",
        "17841400000000001/media",
        "17841400000000001/insights",
        "17841400000000001/media_publish",
        "18000000000000001",
        "18000000000000001/comments",
        "18000000000000002/replies",
    ] {
        assert!(ok(&IG, "GET", path), "{path}");
        assert!(ok(&IG, "post", path), "{path}");
        assert!(ok(&IG, "DELETE", path), "{path}");
    }
    assert!(ok(&FB, "POST", "p1/messages"));
    assert!(ok(&FB, "GET", "17841400000000021/media"));
    assert_eq!(
        check(
            &IG,
            "GET",
            "me/media",
            &[("fields", "id,caption,media_url")]
        ),
        Ok(vec!["me", "media"])
    );
}

#[test]
fn refuses_other_methods() {
    for m in ["PUT", "PATCH", "HEAD", "OPTIONS", "", "GETX"] {
        assert_eq!(check(&IG, m, "me", &[]), Err(Refusal::Method), "{m}");
    }
}

#[test]
fn refuses_paths_of_the_wrong_shape() {
    for path in [
        "",
        "/me",
        "me/",
        "me//media",
        "./me",
        "me/.",
        "me/..",
        "../me",
        "me/a/b/c/d",
        "me/%2F",
        "me%2Fmedia",
        "me%5Cmedia",
        "me\\media",
        "me/media?x=1",
        "me/media#x",
        "me media",
        "https://evil.com/me",
        "https:",
        "//evil.com",
        "@evil.com",
        "me/\u{0}",
        "me/médias",
    ] {
        assert_eq!(
            check(&IG, "GET", path, &[]),
            Err(Refusal::Shape),
            "{path:?}"
        );
    }
    assert_eq!(
        check(&IG, "GET", &format!("me/{}", "a".repeat(129)), &[]),
        Err(Refusal::Shape)
    );
}

#[test]
fn refuses_other_first_segments() {
    for path in [
        "evil",
        "graph.facebook.com",
        "v25.0/me",
        "p1",
        "ME",
        "17841400000000001x",
    ] {
        assert_eq!(
            check(&IG, "GET", path, &[]),
            Err(Refusal::FirstSegment),
            "{path}"
        );
    }
    // Another connection's Page id is not this one's.
    assert_eq!(
        check(&FB, "GET", "p2/messages", &[]),
        Err(Refusal::FirstSegment)
    );
}

#[test]
fn refuses_the_services_own_endpoints_anywhere() {
    for path in [
        "me/subscribed_apps",
        "me/permissions",
        "me/oauth",
        "me/oauth/access_token",
        "17841400000000001/subscribed_apps",
        "me/access_token",
        "me/refresh_access_token",
        "me/debug_token",
        "me/Subscribed_Apps",
        "18000000000000001/permissions_x",
    ] {
        assert!(
            matches!(check(&IG, "GET", path, &[]), Err(Refusal::Reserved(_))),
            "{path}"
        );
    }
    assert!(matches!(
        check(&FB, "DELETE", "p1/subscribed_apps", &[]),
        Err(Refusal::Reserved("subscribed_apps"))
    ));
}

#[test]
fn refuses_credentials_in_parameters() {
    for params in [
        vec![("access_token", "x")],
        vec![("fields", "id,access_token")],
        vec![("fields", "ACCESS_TOKEN")],
        vec![("appsecret_proof", "x")],
        vec![("appsecret_time", "1")],
        vec![("fields", "id"), ("x", "access_token{id}")],
    ] {
        assert_eq!(
            check(&FB, "GET", "p1", &params),
            Err(Refusal::Credential),
            "{params:?}"
        );
    }
}

#[test]
fn refuses_parameters_that_change_what_graph_does() {
    for name in [
        "method",
        "batch",
        "suppress_http_code",
        "debug",
        "callback",
        "redirect",
        "ids",
        "include_headers",
        "METHOD",
        " ids",
    ] {
        assert!(
            matches!(
                check(&IG, "GET", "me", &[(name, "x")]),
                Err(Refusal::Parameter(_))
            ),
            "{name}"
        );
    }
    // Names that merely contain one are someone else's.
    assert!(check(&IG, "GET", "me", &[("debug_mode", "1"), ("idsx", "1")]).is_ok());
}

#[test]
fn json_bodies_are_checked_at_any_depth() {
    use serde_json::json;
    for body in [
        json!({"access_token": "x"}),
        json!({"message": {"text": "hi", "access_token": "x"}}),
        json!({"a": [{"b": [{"appsecret_proof": "p"}]}]}),
        json!({"a": [1, "fields=access_token"]}),
        json!({"deep": {"deeper": {"deepest": ["APPSECRET_TIME"]}}}),
    ] {
        assert_eq!(check_json_body(&body), Err(Refusal::Credential), "{body}");
    }
    for body in [json!({"batch": []}), json!({"method": "DELETE"})] {
        assert!(
            matches!(check_json_body(&body), Err(Refusal::Parameter(_))),
            "{body}"
        );
    }
    // A refused name deep inside a message is only text.
    assert_eq!(
        check_json_body(
            &json!({"recipient": {"id": "1"}, "message": {"text": "method", "ids": [1]}})
        ),
        Ok(())
    );
}

#[test]
fn accepted_paths_stay_on_the_provider_graph_host() {
    let urls = crate::config::MetaUrls {
        facebook: "https://www.facebook.com".into(),
        graph: "https://graph.facebook.com".into(),
        instagram: "https://www.instagram.com".into(),
        instagram_api: "https://api.instagram.com".into(),
        instagram_graph: "https://graph.instagram.com".into(),
    };
    let segs = check(&IG, "GET", "me/media", &[]).unwrap();
    let url = target_url(graph_base(Provider::Instagram, &urls), "v25.0", &segs).unwrap();
    assert_eq!(url.as_str(), "https://graph.instagram.com/v25.0/me/media");
    let segs = check(&FB, "POST", "p1/messages", &[]).unwrap();
    let url = target_url(graph_base(Provider::Facebook, &urls), "v25.0", &segs).unwrap();
    assert_eq!(url.as_str(), "https://graph.facebook.com/v25.0/p1/messages");
    // A base with a path prefix (the local emulator's) keeps it.
    let url = target_url("http://127.0.0.1:9/graph.instagram.com", "v25.0", &["me"]).unwrap();
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:9/graph.instagram.com/v25.0/me"
    );
}

#[test]
fn logged_paths_hide_ids() {
    assert_eq!(path_template(&["me", "messages"]), "me/messages");
    assert_eq!(path_template(&["17841400000000001", "media"]), "{id}/media");
    assert_eq!(
        path_template(&["18000000000000002", "replies"]),
        "{id}/replies"
    );
}
