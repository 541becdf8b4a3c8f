use super::*;
use crate::provider::Provider;
use serde_json::json;

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
const IG_BASE: &str = "https://graph.instagram.com";
const FB_BASE: &str = "https://graph.facebook.com";

#[test]
fn metas_next_link_becomes_the_proxys_own_call_without_the_token() {
    let mut answer = json!({"data": [{"id": "1"}], "paging": {
        "cursors": {"before": "QVFIb", "after": "QVFIa"},
        "next": "https://graph.instagram.com/v25.0/17841400000000001/media?access_token=IGAAsecret&fields=id%2Ccaption&limit=1&after=QVFIa",
        "previous": "https://graph.instagram.com/v25.0/17841400000000001/media?fields=id&limit=1&before=QVFIb&access_token=IGAAsecret"}});
    assert_eq!(rewrite_paging(&mut answer, IG_BASE, &IG), 0);
    assert_eq!(
        answer["paging"]["next"],
        json!({"path": "17841400000000001/media",
               "query": {"fields": "id,caption", "limit": "1", "after": "QVFIa"}})
    );
    assert_eq!(
        answer["paging"]["previous"]["query"],
        json!({"fields": "id", "limit": "1", "before": "QVFIb"})
    );
    assert_eq!(answer["paging"]["cursors"]["after"], "QVFIa");
    assert!(!answer.to_string().contains("IGAAsecret"));

    paging_as_routes(&mut answer, "instagram", "17841400000000001");
    assert_eq!(
        answer["paging"]["next"],
        "/connections/instagram/17841400000000001/graph/17841400000000001/media?after=QVFIa&fields=id%2Ccaption&limit=1"
    );
}

#[test]
fn facebook_links_lose_the_appsecret_proof_too() {
    let mut answer = json!({"paging": {"next":
        "https://graph.facebook.com/v25.0/17841400000000021/media?access_token=EAAtoken&appsecret_proof=abc&appsecret_time=1&pretty=0&limit=2&after=x"}});
    rewrite_paging(&mut answer, FB_BASE, &FB);
    assert_eq!(
        answer["paging"]["next"]["query"],
        json!({"pretty": "0", "limit": "2", "after": "x"})
    );
    assert!(!answer.to_string().contains("appsecret"));
}

#[test]
fn nested_paging_of_field_expansion_is_rewritten() {
    let mut answer = json!({"data": [{"id": "18000000000000001", "comments": {"data": [],
        "paging": {"next": "https://graph.instagram.com/v25.0/18000000000000001/comments?access_token=T&after=c"}}}]});
    rewrite_paging(&mut answer, IG_BASE, &IG);
    assert_eq!(
        answer["data"][0]["comments"]["paging"]["next"],
        json!({"path": "18000000000000001/comments", "query": {"after": "c"}})
    );
}

#[test]
fn links_the_proxy_would_not_follow_are_dropped() {
    for next in [
        "https://evil.example/v25.0/me/media?after=x",
        "https://graph.facebook.com/v25.0/me/media?after=x",
        "http://graph.instagram.com/v25.0/me/media?after=x",
        "https://graph.instagram.com:8443/v25.0/me/media",
        "https://user@graph.instagram.com/v25.0/me/media",
        "https://graph.instagram.com/me/media",
        "https://graph.instagram.com/v25.0/me/subscribed_apps",
        "https://graph.instagram.com/v25.0/evil/media",
        "https://graph.instagram.com/v25.0/me/media?batch=x",
        "https://graph.instagram.com/v25.0/me/media?fields=access_token",
        "not a url",
    ] {
        let mut answer = json!({"paging": {"next": next, "cursors": {"after": "a"}}});
        assert_eq!(rewrite_paging(&mut answer, IG_BASE, &IG), 1, "{next}");
        assert_eq!(
            answer,
            json!({"paging": {"cursors": {"after": "a"}}}),
            "{next}"
        );
    }
    let mut answer = json!({"paging": {"next": 42}});
    assert_eq!(rewrite_paging(&mut answer, IG_BASE, &IG), 1);
}

#[test]
fn a_base_with_a_path_prefix_is_honoured() {
    let base = "http://127.0.0.1:9000/graph.instagram.com";
    let mut answer = json!({"paging": {"next":
        "http://127.0.0.1:9000/graph.instagram.com/v25.0/me/media?access_token=t&limit=1&after=a"}});
    rewrite_paging(&mut answer, base, &IG);
    assert_eq!(answer["paging"]["next"]["path"], "me/media");
    let mut other =
        json!({"paging": {"next": "http://127.0.0.1:9000/graph.facebook.com/v25.0/me"}});
    assert_eq!(rewrite_paging(&mut other, base, &IG), 1);
}

#[test]
fn every_string_loses_its_credentials() {
    let mut answer = json!({
        "access_token": "IGAAsecret",
        "a": "IGAAsecret",
        "b": "Bearer IGAAsecret and more",
        "c": "https://cdn.example/x.jpg?oh=1&access_token=abc&oe=2",
        "d": ["https://x.example/?appsecret_proof=p#access_token=q&s=1"],
        "e": {"f": "limit=1&appsecret_time=5"},
        "caption": "What is an access_token? Ask us",
        "plain": "nothing here"});
    let removed = scrub(&mut answer, "IGAAsecret");
    assert_eq!(removed, 6);
    assert_eq!(
        answer,
        json!({
            "a": REDACTED,
            "b": format!("Bearer {REDACTED} and more"),
            "c": "https://cdn.example/x.jpg?oh=1&oe=2",
            "d": ["https://x.example/#s=1"],
            "e": {"f": "limit=1"},
            "caption": "What is an access_token? Ask us",
            "plain": "nothing here"})
    );
    let text = answer.to_string();
    for word in ["IGAAsecret", "abc", "appsecret_proof=", "access_token="] {
        assert!(!text.contains(word), "{word}");
    }
}

#[test]
fn scrubbing_a_clean_answer_changes_nothing() {
    let clean = json!({"data": [{"id": "1", "caption": "hi", "media_url": "https://cdn.example/1.jpg?a=b"}]});
    let mut copy = clean.clone();
    assert_eq!(scrub(&mut copy, "tok"), 0);
    assert_eq!(copy, clean);
    // An empty token matches nothing.
    assert_eq!(scrub_str("abc", ""), None);
}
