//! Connecting an Instagram account end to end: `POST /connect/{provider}`,
//! Meta's consent, `GET /oauth/{provider}/callback` and
//! `POST /oauth/{provider}/complete`, against moto and the emulated Meta.

use infra::apigw::{ApiRequest, ResponseExt};
use infra::stack::StackOptions;
use integration_tests::*;
use secrecy::ExposeSecret;
use serde_json::json;
use shared::store::UserConnections;
use shared::vault::{KmsDataKeys, SealedToken, TokenOwner, TokenVault};
use shared::Provider;
use url::Url;

const FRONTEND: &str = "https://app.example.com/settings/instagram";

fn assert_callback_headers(resp: &lambda_http::Response<lambda_http::Body>, provider: &str) {
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.header_str("cache-control").as_deref(),
        Some("no-store")
    );
    assert_eq!(
        resp.header_str("referrer-policy").as_deref(),
        Some("no-referrer")
    );
    // A callback clears at most one cookie: its own flow's binding cookie.
    let set = resp.set_cookies();
    assert!(set.len() <= 1, "{set:?}");
    for cleared in set {
        assert!(cleared.starts_with("oauth_binding_"), "{cleared}");
        assert!(cleared.contains("=;"), "{cleared}");
        assert!(cleared.contains("Max-Age=0"));
        assert!(cleared.contains(&format!("Path=/oauth/{provider}")));
    }
}

/// The name of a `name=value` cookie.
fn cookie_name(pair: &str) -> &str {
    pair.split('=').next().unwrap()
}

/// The callback cleared exactly the cookie of the flow that sent `pair`.
fn assert_clears_own_cookie(resp: &lambda_http::Response<lambda_http::Body>, pair: &str) {
    let set = resp.set_cookies();
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(
        set[0].starts_with(&format!("{}=;", cookie_name(pair))),
        "{} should clear {}",
        set[0],
        cookie_name(pair)
    );
}

fn assert_error_redirect(
    resp: &lambda_http::Response<lambda_http::Body>,
    base: &str,
    provider: &str,
    reason: &str,
) {
    assert_callback_headers(resp, provider);
    let loc = resp.location();
    assert!(
        loc.as_str().starts_with(base),
        "{loc} should start with {base}"
    );
    assert_eq!(param(&loc, "status").as_deref(), Some("error"), "{loc}");
    assert_eq!(param(&loc, "provider").as_deref(), Some(provider));
    assert_eq!(param(&loc, "reason").as_deref(), Some(reason), "{loc}");
}

async fn open_token(
    h: &Harness,
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    owner: &TokenOwner,
) -> Result<String, shared::vault::VaultError> {
    let m = item.get("token").unwrap().as_m().unwrap();
    let b = |k: &str| m.get(k).unwrap().as_b().unwrap().as_ref().to_vec();
    let sealed = SealedToken {
        version: m.get("v").unwrap().as_n().unwrap().parse().unwrap(),
        key_id: m.get("key_id").unwrap().as_s().unwrap().clone(),
        wrapped_key: b("wrapped_key"),
        nonce: b("nonce"),
        ciphertext: b("ciphertext"),
    };
    let vault = TokenVault::new(KmsDataKeys::new(
        h.stack.kms.clone(),
        h.stack.var("TOKEN_KEY_ID"),
    ));
    vault
        .open(&sealed, owner)
        .await
        .map(|t| t.expose_secret().to_string())
}

#[tokio::test]
async fn instagram_connects_end_to_end() {
    let h = Harness::new().await;
    let started = h
        .start("instagram", "user-1", json!({"return_to": "/done?tab=ig"}))
        .await;

    // The authorize URL: Meta's dialog with exactly what the exchange will repeat.
    let url = Url::parse(&started.authorize_url).unwrap();
    assert!(url.path().ends_with("/www.instagram.com/oauth/authorize"));
    assert_eq!(
        param(&url, "client_id").as_deref(),
        Some(h.stack.var("INSTAGRAM_APP_ID"))
    );
    assert_eq!(
        param(&url, "redirect_uri").as_deref(),
        Some("https://api.example.com/oauth/instagram/callback")
    );
    assert_eq!(param(&url, "response_type").as_deref(), Some("code"));
    assert!(param(&url, "scope")
        .unwrap()
        .contains("instagram_business_basic"));
    assert!(started.state.len() >= 22, "state carries at least 128 bits");
    assert_eq!(
        started.response.header_str("cache-control").as_deref(),
        Some("no-store")
    );
    assert!(started.response.body_json()["state_expires_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    // The binding cookie: random, unrelated to the state, scoped to the callback.
    let set = started.response.set_cookies();
    assert_eq!(set.len(), 1);
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/oauth/instagram",
        "Max-Age=600",
    ] {
        assert!(set[0].contains(attr), "{} lacks {attr}", set[0]);
    }
    let cookie = started.cookie.clone().unwrap();
    assert!(!cookie.contains(&started.state));

    // Only hashes are stored.
    let states = h.scan("STATES_TABLE").await;
    assert_eq!(states.len(), 1);
    assert_eq!(
        s(&states[0], "state_hash"),
        shared::oauth_state::hash(&started.state)
    );
    assert_eq!(s(&states[0], "user_id"), "user-1");
    assert!(states[0].contains_key("expires_at"));

    // The person approves; the browser comes back with the cookie.
    let back = h.stack.meta.approve(&started.authorize_url);
    let resp = h.follow(&back, Some(&cookie)).await;
    assert_callback_headers(&resp, "instagram");
    assert_clears_own_cookie(&resp, &cookie);
    let loc = resp.location();
    assert!(
        loc.as_str()
            .starts_with("https://app.example.com/done?tab=ig&"),
        "{loc}"
    );
    assert_eq!(param(&loc, "status").as_deref(), Some("connected"));
    assert_eq!(param(&loc, "provider").as_deref(), Some("instagram"));
    assert_eq!(
        param(&loc, "account_id").as_deref(),
        Some("17841400000000001")
    );

    // Stored: the connection, with a sealed token that opens to Meta's long-lived token.
    let conns = h.connections_of("user-1").await;
    assert_eq!(conns.len(), 1);
    let c = &conns[0];
    assert_eq!(s(c, "status"), "active");
    assert_eq!(s(c, "webhooks"), "subscribed");
    assert_eq!(s(c, "username"), "acme.studio");
    assert_eq!(s(c, "meta_user_id"), "26000000000000001");
    let owner = TokenOwner {
        user_id: "user-1".into(),
        provider: Provider::Instagram,
        account_id: "17841400000000001".into(),
    };
    let token = open_token(&h, c, &owner).await.unwrap();
    assert_eq!(
        vec![token],
        h.stack.meta.tokens_for_account("17841400000000001")
    );
    // Moved to another user's row, it does not open.
    let thief = TokenOwner {
        user_id: "user-2".into(),
        ..owner.clone()
    };
    assert!(open_token(&h, c, &thief).await.is_err());

    // Subscribed with the configured fields; the state is gone; the event is out.
    assert!(h
        .stack
        .meta
        .subscription("17841400000000001")
        .unwrap()
        .contains("messages"));
    assert!(h.scan("STATES_TABLE").await.is_empty());
    let events = h.events("connection.connected").await;
    assert_eq!(events.len(), 1);
    assert_eq!(s(&events[0], "user_id"), "user-1");
    assert_eq!(s(&events[0], "account_id"), "17841400000000001");
    let payload: serde_json::Value = serde_json::from_str(&s(&events[0], "payload")).unwrap();
    assert_eq!(payload["status"], "active");
    assert!(payload.get("token").is_none());
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn instagram_flat_exchange_shape_also_connects() {
    let h = Harness::new().await;
    h.stack.meta.use_flat_instagram_exchange(true);
    let resp = h.connect("instagram", "user-1").await;
    assert_eq!(
        param(&resp.location(), "status").as_deref(),
        Some("connected")
    );
    let c = &h.connections_of("user-1").await[0];
    let scopes = c.get("scopes").unwrap().as_l().unwrap();
    assert_eq!(scopes.len(), 3);
}

#[tokio::test]
async fn facebook_connects_every_page_with_instagram() {
    let h = Harness::new().await;
    // Three Pages (more than the emulator's page size: paging is followed), two linked.
    h.stack.meta.set_facebook_person(FbPerson::new(
        "10160000000000009",
        "Ada",
        vec![
            FbPage::linked("p1", "Acme", "17841400000000021", "acme"),
            FbPage::unlinked("p2", "Blog"),
            FbPage::linked("p3", "Shop", "17841400000000023", "acme.shop"),
        ],
    ));
    let started = h.start("facebook", "user-7", json!({})).await;
    let url = Url::parse(&started.authorize_url).unwrap();
    assert!(
        url.path().ends_with("/www.facebook.com/v25.0/dialog/oauth"),
        "{url}"
    );
    assert!(param(&url, "scope").unwrap().contains("pages_show_list"));
    assert!(started.response.set_cookies()[0].contains("Path=/oauth/facebook"));

    let back = h.stack.meta.approve(&started.authorize_url);
    let resp = h.follow(&back, started.cookie.as_deref()).await;
    assert_callback_headers(&resp, "facebook");
    let loc = resp.location();
    assert!(loc.as_str().starts_with(FRONTEND));
    assert_eq!(param(&loc, "status").as_deref(), Some("connected"));
    let ids: Vec<String> = query(&loc)
        .into_iter()
        .filter(|(k, _)| k == "account_id")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ids, ["17841400000000021", "17841400000000023"]);

    let mut conns = h.connections_of("user-7").await;
    conns.sort_by_key(|c| s(c, "account_id"));
    assert_eq!(conns.len(), 2);
    assert_eq!(s(&conns[0], "page_id"), "p1");
    assert_eq!(s(&conns[1], "page_name"), "Shop");
    assert_eq!(s(&conns[0], "meta_user_id"), "10160000000000009");
    assert!(!conns[0].contains_key("token_expires_at"));
    // Each row holds its own Page's token.
    let owner = TokenOwner {
        user_id: "user-7".into(),
        provider: Provider::Facebook,
        account_id: "17841400000000023".into(),
    };
    let token = open_token(&h, &conns[1], &owner).await.unwrap();
    assert!(h
        .stack
        .meta
        .tokens_for_account("17841400000000023")
        .contains(&token));
    assert!(h.stack.meta.subscription("p1").is_some());
    assert!(h.stack.meta.subscription("p3").is_some());
    assert!(h.stack.meta.subscription("p2").is_none());
    assert_eq!(h.events("connection.connected").await.len(), 2);
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn facebook_grant_without_instagram_account() {
    let h = Harness::new().await;
    h.stack.meta.set_facebook_person(FbPerson::new(
        "1",
        "No IG",
        vec![FbPage::unlinked("p9", "Blog")],
    ));
    let resp = h.connect("facebook", "user-1").await;
    assert_error_redirect(&resp, FRONTEND, "facebook", "no_instagram_account");
    assert!(h.connections_of("user-1").await.is_empty());
    assert!(h.scan("EVENTS_TABLE").await.is_empty());
}

#[tokio::test]
async fn person_cancels_at_meta() {
    let h = Harness::new().await;
    let started = h
        .start(
            "instagram",
            "user-1",
            json!({"return_to": "https://admin.example.com/x"}),
        )
        .await;
    let back = h.stack.meta.deny(&started.authorize_url);
    let resp = h.follow(&back, started.cookie.as_deref()).await;
    assert_error_redirect(
        &resp,
        "https://admin.example.com/x?",
        "instagram",
        "access_denied",
    );
    assert_eq!(h.stack.meta.calls("ig_code_exchange"), 0);
    assert!(h.scan("CONNECTIONS_TABLE").await.is_empty());
    assert!(
        h.scan("STATES_TABLE").await.is_empty(),
        "the state is used up"
    );
}

#[tokio::test]
async fn unknown_reused_expired_and_other_provider_states_are_refused() {
    let h = Harness::new().await;

    // Unknown.
    let resp = h
        .follow(
            &Url::parse("https://api.example.com/oauth/instagram/callback?code=x&state=nope")
                .unwrap(),
            Some("oauth_binding=x"),
        )
        .await;
    assert_error_redirect(&resp, FRONTEND, "instagram", "invalid_state");
    // Missing.
    let resp = h
        .follow(
            &Url::parse("https://api.example.com/oauth/instagram/callback?code=x").unwrap(),
            None,
        )
        .await;
    assert_error_redirect(&resp, FRONTEND, "instagram", "invalid_state");

    // Reused: the second use fails even though the first succeeded.
    let started = h
        .start("instagram", "user-1", json!({"return_to": "/a"}))
        .await;
    let back = h.stack.meta.approve(&started.authorize_url);
    let first = h.follow(&back, started.cookie.as_deref()).await;
    assert_eq!(
        param(&first.location(), "status").as_deref(),
        Some("connected")
    );
    let again = h.follow(&back, started.cookie.as_deref()).await;
    assert_error_redirect(&again, FRONTEND, "instagram", "invalid_state");
    assert_eq!(h.stack.meta.calls("ig_code_exchange"), 1);

    // Expired: 10 minutes and a second later (moto never expires TTL items: code checks).
    let started = h.start("instagram", "user-1", json!({})).await;
    let back = h.stack.meta.approve(&started.authorize_url);
    h.clock.advance(time::Duration::seconds(601));
    let resp = h.follow(&back, started.cookie.as_deref()).await;
    assert_error_redirect(&resp, FRONTEND, "instagram", "invalid_state");
    assert_eq!(
        h.stack.meta.calls("ig_code_exchange"),
        1,
        "no exchange for an expired state"
    );

    // Made for the other provider: a Facebook state at the Instagram callback.
    let started = h.start("facebook", "user-1", json!({})).await;
    let back = h.stack.meta.approve(&started.authorize_url);
    let wrong = Url::parse(
        &back
            .as_str()
            .replace("/oauth/facebook/", "/oauth/instagram/"),
    )
    .unwrap();
    let resp = h.follow(&wrong, started.cookie.as_deref()).await;
    assert_error_redirect(&resp, FRONTEND, "instagram", "invalid_state");
    assert_eq!(h.stack.meta.calls("fb_code_exchange"), 0);
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn missing_or_wrong_binding_cookie_is_a_browser_mismatch() {
    let h = Harness::new().await;
    for cookie in [None, Some("oauth_binding=someone-elses"), Some("other=1")] {
        let started = h
            .start("instagram", "user-1", json!({"return_to": "/back"}))
            .await;
        let back = h.stack.meta.approve(&started.authorize_url);
        let resp = h.follow(&back, cookie).await;
        assert_error_redirect(
            &resp,
            "https://app.example.com/back?",
            "instagram",
            "browser_mismatch",
        );
        // The state is used up all the same: the right browser can't replay it.
        let retry = h.follow(&back, started.cookie.as_deref()).await;
        assert_error_redirect(&retry, FRONTEND, "instagram", "invalid_state");
    }
    assert_eq!(h.stack.meta.calls("ig_code_exchange"), 0);
    assert!(h.scan("CONNECTIONS_TABLE").await.is_empty());
}

#[tokio::test]
async fn meta_failing_the_exchange_stores_nothing() {
    let h = Harness::new().await;
    h.stack.meta.fail("ig_code_exchange", 400, r#"{"error_type":"OAuthException","code":400,"error_message":"Matching code was not found or was already used"}"#);
    let resp = h.connect("instagram", "user-1").await;
    assert_error_redirect(&resp, FRONTEND, "instagram", "exchange_failed");
    assert_eq!(
        h.stack.meta.calls("ig_code_exchange"),
        1,
        "a code exchange is never retried"
    );

    h.stack.meta.clear_failures();
    h.stack.meta.fail(
        "ig_long_lived",
        500,
        r#"{"error":{"message":"boom","code":2}}"#,
    );
    let resp = h.connect("instagram", "user-1").await;
    assert_error_redirect(&resp, FRONTEND, "instagram", "exchange_failed");
    assert_eq!(
        h.stack.meta.calls("ig_long_lived"),
        3,
        "transient failures of safe calls are retried"
    );

    h.stack.meta.clear_failures();
    h.stack.meta.fail("fb_code_exchange", 400, r#"{"error":{"message":"This authorization code has been used.","type":"OAuthException","code":100}}"#);
    let resp = h.connect("facebook", "user-1").await;
    assert_error_redirect(&resp, FRONTEND, "facebook", "exchange_failed");

    assert!(h.scan("CONNECTIONS_TABLE").await.is_empty());
    assert!(h.scan("EVENTS_TABLE").await.is_empty());
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn webhook_subscription_failure_still_connects_as_unsubscribed() {
    let h = Harness::new().await;
    h.stack.meta.fail(
        "ig_subscribe",
        400,
        r#"{"error":{"message":"(#200) permission","code":200}}"#,
    );
    let resp = h.connect("instagram", "user-1").await;
    assert_eq!(
        param(&resp.location(), "status").as_deref(),
        Some("connected")
    );
    assert_eq!(
        s(&h.connections_of("user-1").await[0], "webhooks"),
        "unsubscribed"
    );
}

#[tokio::test]
async fn an_account_belongs_to_one_user_and_its_owner_can_reconnect() {
    let h = Harness::new().await;
    let first = h.connect("instagram", "alice").await;
    assert_eq!(
        param(&first.location(), "status").as_deref(),
        Some("connected")
    );
    let before = h.connections_of("alice").await[0].clone();

    // Bob approves with the same Instagram account.
    let resp = h.connect("instagram", "bob").await;
    assert_error_redirect(&resp, FRONTEND, "instagram", "account_already_linked");
    assert!(h.connections_of("bob").await.is_empty());
    assert_eq!(
        h.stack.meta.calls("ig_subscribe"),
        1,
        "not subscribed for bob"
    );

    // ... also through the other provider and in complete mode (409).
    h.stack.meta.set_facebook_person(FbPerson::new(
        "5",
        "Bob",
        vec![FbPage::linked(
            "pb",
            "Bob's",
            "17841400000000001",
            "acme.studio",
        )],
    ));
    let started = h
        .start("facebook", "bob", json!({"mode": "complete"}))
        .await;
    let back = h.stack.meta.approve(&started.authorize_url);
    let resp = h
        .call_callback(
            ApiRequest::post("/oauth/facebook/complete")
                .user("bob")
                .json(&json!({"code": param(&back, "code"), "state": started.state})),
        )
        .await;
    assert_eq!(resp.status(), 409);
    assert_eq!(resp.body_json()["error"], "account_already_linked");

    // Alice reconnects: the same row, updated in place, with a new token.
    h.clock.advance(time::Duration::hours(1));
    let again = h.connect("instagram", "alice").await;
    assert_eq!(
        param(&again.location(), "status").as_deref(),
        Some("connected")
    );
    let after = h.connections_of("alice").await;
    assert_eq!(after.len(), 1);
    assert_eq!(s(&after[0], "sk"), s(&before, "sk"));
    assert_eq!(after[0].get("connected_at"), before.get("connected_at"));
    assert_ne!(after[0].get("token"), before.get("token"));
    assert_ne!(
        after[0].get("token_issued_at"),
        before.get("token_issued_at")
    );
    assert_eq!(after[0].get("version").unwrap().as_n().unwrap(), "2");
    let owner = TokenOwner {
        user_id: "alice".into(),
        provider: Provider::Instagram,
        account_id: "17841400000000001".into(),
    };
    let token = open_token(&h, &after[0], &owner).await.unwrap();
    assert_eq!(
        Some(&token),
        h.stack.meta.tokens_for_account("17841400000000001").last()
    );
    assert_eq!(h.events("connection.connected").await.len(), 2);
}

#[tokio::test]
async fn two_callbacks_racing_on_one_state_make_one_connection() {
    let h = Harness::new().await;
    h.stack.meta.set_delay(std::time::Duration::from_millis(50));
    let started = h.start("instagram", "user-1", json!({})).await;
    let back = h.stack.meta.approve(&started.authorize_url);
    let cookie = started.cookie.as_deref();
    let (a, b) = tokio::join!(h.follow(&back, cookie), h.follow(&back, cookie));
    let mut statuses = vec![
        param(&a.location(), "status").unwrap(),
        param(&b.location(), "status").unwrap(),
    ];
    statuses.sort();
    assert_eq!(statuses, ["connected", "error"]);
    assert_eq!(h.stack.meta.calls("ig_code_exchange"), 1);
    assert_eq!(h.connections_of("user-1").await.len(), 1);
    assert_eq!(h.events("connection.connected").await.len(), 1);
}

#[tokio::test]
async fn complete_mode_binds_to_the_user() {
    let h = Harness::new().await;
    let started = h
        .start(
            "instagram",
            "user-1",
            json!({"mode": "complete", "return_to": "/x"}),
        )
        .await;
    assert!(started.cookie.is_none(), "complete mode sets no cookie");
    let url = Url::parse(&started.authorize_url).unwrap();
    assert_eq!(
        param(&url, "redirect_uri").as_deref(),
        Some("https://app.example.com/meta/complete")
    );
    let back = h.stack.meta.approve(&started.authorize_url);
    assert!(back
        .as_str()
        .starts_with("https://app.example.com/meta/complete?"));
    let code = param(&back, "code").unwrap();
    let body = json!({"code": format!("{code}#_"), "state": started.state});

    // Unauthenticated, then another user: refused.
    let resp = h
        .call_callback(ApiRequest::post("/oauth/instagram/complete").json(&body))
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.body_json()["error"], "unauthenticated");
    let resp = h
        .call_callback(
            ApiRequest::post("/oauth/instagram/complete")
                .user("mallory")
                .json(&body),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.body_json()["error"], "browser_mismatch");
    assert!(h.connections_of("mallory").await.is_empty());
    assert_eq!(h.stack.meta.calls("ig_code_exchange"), 0);

    // The rightful user, with a fresh flow.
    let started = h
        .start("instagram", "user-1", json!({"mode": "complete"}))
        .await;
    let back = h.stack.meta.approve(&started.authorize_url);
    let body = json!({"code": param(&back, "code"), "state": started.state});
    let resp = h
        .call_callback(
            ApiRequest::post("/oauth/instagram/complete")
                .user("user-1")
                .json(&body),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.body_text());
    assert_eq!(
        resp.header_str("cache-control").as_deref(),
        Some("no-store")
    );
    let conns = resp.body_json()["connections"].as_array().unwrap().clone();
    assert_eq!(conns.len(), 1);
    let c = &conns[0];
    assert_eq!(c["provider"], "instagram");
    assert_eq!(c["account_id"], "17841400000000001");
    assert_eq!(c["username"], "acme.studio");
    assert_eq!(c["status"], "active");
    assert_eq!(c["webhooks"], "subscribed");
    assert!(c["token_expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["last_refreshed_at"], serde_json::Value::Null);
    assert!(c.get("page_id").is_none());
    let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
    assert!(!keys
        .iter()
        .any(|k| k.contains("token") && *k != "token_expires_at"));

    // Used again: invalid_state.
    let resp = h
        .call_callback(
            ApiRequest::post("/oauth/instagram/complete")
                .user("user-1")
                .json(&body),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.body_json()["error"], "invalid_state");
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn states_only_work_in_the_mode_they_were_made_for() {
    let h = Harness::new().await;
    // A redirect-mode state presented to /complete.
    let started = h.start("instagram", "user-1", json!({})).await;
    let back = h.stack.meta.approve(&started.authorize_url);
    let body = json!({"code": param(&back, "code"), "state": started.state});
    let resp = h
        .call_callback(
            ApiRequest::post("/oauth/instagram/complete")
                .user("user-1")
                .json(&body),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.body_json()["error"], "invalid_state");

    // A complete-mode state presented to the GET callback.
    let started = h
        .start("instagram", "user-1", json!({"mode": "complete"}))
        .await;
    let back = h.stack.meta.approve(&started.authorize_url);
    let at_api = Url::parse(&format!(
        "https://api.example.com/oauth/instagram/callback?{}",
        back.query().unwrap()
    ))
    .unwrap();
    let resp = h.follow(&at_api, Some("oauth_binding=x")).await;
    assert_error_redirect(&resp, FRONTEND, "instagram", "invalid_state");
    assert_eq!(h.stack.meta.calls("ig_code_exchange"), 0);

    // Bad bodies.
    let resp = h
        .call_callback(
            ApiRequest::post("/oauth/instagram/complete")
                .user("user-1")
                .body("{"),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.body_json()["error"], "invalid_request");
    let resp = h
        .call_callback(
            ApiRequest::post("/oauth/tiktok/complete")
                .user("user-1")
                .json(&json!({})),
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.body_json()["error"], "unknown_provider");
}

#[tokio::test]
async fn connect_refuses_bad_requests() {
    let h = Harness::new().await;
    let post = |path: &str| ApiRequest::post(path);

    let resp = h.call_authorize(post("/connect/tiktok").user("u")).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.body_json()["error"], "unknown_provider");
    assert!(resp.body_json()["message"].is_string());

    let resp = h.call_authorize(post("/connect/instagram")).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.body_json()["error"], "unauthenticated");

    for bad in [
        "//evil.com",
        "/\\evil.com",
        "/%2F%2Fevil.com",
        "/.//evil.com",
        "/..//evil.com",
        "/%2e%2e//evil.com",
        "https://app.example.com//evil.com",
        "https://app.example.com@evil.com",
        "/a\tb",
        "javascript:alert(1)",
        "https://app.example.com:8443/",
        "https://evil.com/",
    ] {
        let resp = h
            .call_authorize(
                post("/connect/instagram")
                    .user("u")
                    .json(&json!({"return_to": bad})),
            )
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(resp.body_json()["error"], "invalid_return_to", "{bad}");
        assert!(resp.set_cookies().is_empty());
    }
    let resp = h
        .call_authorize(post("/connect/instagram").user("u").body("not json"))
        .await;
    assert_eq!(resp.status(), 400);
    let resp = h
        .call_authorize(
            post("/connect/instagram")
                .user("u")
                .json(&json!({"mode": "popup"})),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert!(
        h.scan("STATES_TABLE").await.is_empty(),
        "nothing stored for refused requests"
    );
}

#[tokio::test]
async fn complete_mode_needs_a_complete_redirect_uri_and_disabled_providers_are_unknown() {
    let mut opts = StackOptions::for_tests();
    opts.complete_redirect_uri = None;
    let mut h = Harness::with(opts).await;
    let resp = h
        .call_authorize(
            ApiRequest::post("/connect/instagram")
                .user("u")
                .json(&json!({"mode": "complete"})),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.body_json()["error"], "complete_mode_disabled");

    h.stack.env.insert("FACEBOOK_APP_ID".into(), String::new());
    h.authorize = h.stack.authorize(h.clock.clone());
    let resp = h
        .call_authorize(ApiRequest::post("/connect/facebook").user("u"))
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.body_json()["error"], "unknown_provider");
    let resp = h
        .call_authorize(ApiRequest::post("/connect/instagram").user("u"))
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_transaction_alone_keeps_one_owner_per_account() {
    // A flow that passed the early ownership read while another flow was
    // connecting the same account reaches the transaction: its condition must
    // refuse. (Driven at the store: moto restores a snapshot when a
    // transaction fails, so truly concurrent transactions corrupt its state.)
    let h = Harness::new().await;
    let first = h.connect("instagram", "alice").await;
    assert_eq!(
        param(&first.location(), "status").as_deref(),
        Some("connected")
    );

    let store = shared::store::ConnectionStore::new(
        h.stack.dynamodb.clone(),
        h.stack.var("CONNECTIONS_TABLE"),
        h.stack.var("EVENTS_TABLE"),
    );
    let (alice_row, sealed) = store
        .get("alice", Provider::Instagram, "17841400000000001")
        .await
        .unwrap()
        .unwrap();
    let mut bobs = alice_row.clone();
    bobs.user_id = "bob".into();
    let now = h.clock.now();
    let event = shared::store::Event::lifecycle(
        shared::connection::Lifecycle::Connected,
        &bobs,
        now,
        std::time::Duration::from_secs(60),
    );
    let result = store
        .save_connected(&bobs, &sealed.unwrap(), &event, now)
        .await;
    assert!(
        matches!(result, Err(shared::store::SaveError::AlreadyLinked)),
        "{result:?}"
    );
    assert!(h.connections_of("bob").await.is_empty());
    assert_eq!(
        h.events("connection.connected").await.len(),
        1,
        "nothing of bob's half-written"
    );
    assert_eq!(
        store
            .owner_of("17841400000000001")
            .await
            .unwrap()
            .as_deref(),
        Some("alice")
    );
}

#[tokio::test]
async fn two_users_racing_for_one_account_get_one_connection() {
    let h = Harness::new().await;
    // Slow Meta: both flows pass the early ownership read before either
    // writes, so only the transaction's condition can keep the rule.
    h.stack.meta.set_delay(std::time::Duration::from_millis(80));
    let alice = h.start("instagram", "alice", json!({})).await;
    let bob = h.start("instagram", "bob", json!({})).await;
    let alice_back = h.stack.meta.approve(&alice.authorize_url);
    let bob_back = h.stack.meta.approve(&bob.authorize_url);
    let (a, b) = tokio::join!(
        h.follow(&alice_back, alice.cookie.as_deref()),
        h.follow(&bob_back, bob.cookie.as_deref())
    );
    let outcome = |r: &lambda_http::Response<lambda_http::Body>| {
        let loc = r.location();
        format!(
            "{}{}",
            param(&loc, "status").unwrap(),
            param(&loc, "reason").unwrap_or_default()
        )
    };
    let mut outcomes = vec![outcome(&a), outcome(&b)];
    outcomes.sort();
    assert_eq!(outcomes, ["connected", "erroraccount_already_linked"]);
    let rows = h.connections_of("alice").await.len() + h.connections_of("bob").await.len();
    assert_eq!(rows, 1);
    assert_eq!(h.events("connection.connected").await.len(), 1);
}

/// Starts an Instagram flow for `user` that Meta will approve as `username`.
async fn start_as(h: &Harness, user: &str, username: &str) -> (Started, Url) {
    let started = h.start("instagram", user, json!({})).await;
    let mut url = Url::parse(&started.authorize_url).unwrap();
    url.query_pairs_mut().append_pair("as_username", username);
    let back = h.stack.meta.approve(url.as_str());
    (started, back)
}

#[tokio::test]
async fn two_flows_in_one_browser_both_complete_in_either_order() {
    let h = Harness::new().await;
    for (first_done, names) in [(0, ["tab.one", "tab.two"]), (1, ["tab.three", "tab.four"])] {
        // Two tabs (or a double click): two cookies in one jar.
        let (a, a_back) = start_as(&h, "user-1", names[0]).await;
        let (b, b_back) = start_as(&h, "user-1", names[1]).await;
        let (ca, cb) = (a.cookie.clone().unwrap(), b.cookie.clone().unwrap());
        assert_ne!(
            cookie_name(&ca),
            cookie_name(&cb),
            "each flow has its own cookie"
        );
        let mut flows = vec![(ca, a_back), (cb, b_back)];
        if first_done == 1 {
            flows.reverse();
        }
        let mut jar: Vec<String> = flows.iter().map(|(c, _)| c.clone()).collect();
        for (cookie, back) in &flows {
            let sent: Vec<&str> = jar.iter().map(String::as_str).collect();
            let resp = h.follow_with_jar(back, &sent).await;
            assert_callback_headers(&resp, "instagram");
            assert_eq!(
                param(&resp.location(), "status").as_deref(),
                Some("connected"),
                "{}",
                resp.location()
            );
            // Only its own cookie is cleared; the other flow's stays.
            assert_clears_own_cookie(&resp, cookie);
            jar.retain(|c| c != cookie);
        }
    }
    let mut names: Vec<String> = h
        .connections_of("user-1")
        .await
        .iter()
        .map(|c| s(c, "username"))
        .collect();
    names.sort();
    assert_eq!(names, ["tab.four", "tab.one", "tab.three", "tab.two"]);
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn the_same_account_from_two_tabs_connects_once() {
    let h = Harness::new().await;
    let (a, a_back) = start_as(&h, "user-1", "same.account").await;
    let (b, b_back) = start_as(&h, "user-1", "same.account").await;
    let jar = [a.cookie.as_deref().unwrap(), b.cookie.as_deref().unwrap()];
    let first = h.follow_with_jar(&b_back, &jar).await;
    let second = h.follow_with_jar(&a_back, &jar[..1]).await;
    for resp in [&first, &second] {
        assert_eq!(
            param(&resp.location(), "status").as_deref(),
            Some("connected"),
            "{}",
            resp.location()
        );
    }
    assert_eq!(
        param(&first.location(), "account_id"),
        param(&second.location(), "account_id")
    );
    let conns = h.connections_of("user-1").await;
    assert_eq!(
        conns.len(),
        1,
        "the second flow updates the connection in place"
    );
    assert_eq!(s(&conns[0], "status"), "active");
}

#[tokio::test]
async fn a_cookie_planted_under_a_flows_name_does_not_bind_it() {
    let h = Harness::new().await;
    let (a, a_back) = start_as(&h, "user-1", "victim.one").await;
    let (b, _) = start_as(&h, "user-1", "victim.two").await;
    let a_name = cookie_name(a.cookie.as_deref().unwrap()).to_string();
    let b_value = b.cookie.as_deref().unwrap().split_once('=').unwrap().1;
    // Another flow's genuine value under A's name, an invented one, and B's
    // genuine cookie alone: none of them is A's binding.
    for jar in [
        vec![format!("{a_name}={b_value}")],
        vec![format!("{a_name}=planted-by-a-sibling-domain")],
        vec![b.cookie.clone().unwrap()],
    ] {
        let (a, a_back) = start_as(&h, "user-1", "victim.one").await;
        let sent: Vec<&str> = jar.iter().map(String::as_str).collect();
        let resp = h.follow_with_jar(&a_back, &sent).await;
        assert_error_redirect(&resp, FRONTEND, "instagram", "browser_mismatch");
        assert_clears_own_cookie(&resp, a.cookie.as_deref().unwrap());
    }
    // A planted value beside the genuine one does not hide it.
    let planted = format!("{a_name}=planted");
    let resp = h
        .follow_with_jar(&a_back, &[&planted, a.cookie.as_deref().unwrap()])
        .await;
    assert_eq!(
        param(&resp.location(), "status").as_deref(),
        Some("connected"),
        "{}",
        resp.location()
    );
    assert_eq!(h.connections_of("user-1").await.len(), 1);
}

#[tokio::test]
async fn facebook_flows_use_pkce_and_instagram_flows_do_not() {
    let h = Harness::new().await;
    let ig = h.start("instagram", "user-1", json!({})).await;
    let ig_url = Url::parse(&ig.authorize_url).unwrap();
    assert_eq!(param(&ig_url, "code_challenge"), None);
    assert_eq!(param(&ig_url, "code_challenge_method"), None);

    let fb = h.start("facebook", "user-1", json!({})).await;
    let url = Url::parse(&fb.authorize_url).unwrap();
    assert_eq!(
        param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let challenge = param(&url, "code_challenge").expect("a code challenge");
    assert_eq!(challenge.len(), 43);

    // The verifier is kept server-side with the state, never in the answer.
    let stored = h
        .scan("STATES_TABLE")
        .await
        .into_iter()
        .find(|i| s(i, "provider") == "facebook")
        .unwrap();
    let verifier = s(&stored, "code_verifier");
    assert_eq!(
        shared::oauth_state::PkceVerifier::from_stored(verifier.clone()).challenge(),
        challenge
    );
    assert!(!fb.response.body_text().contains(&verifier));
    let ig_state = h
        .scan("STATES_TABLE")
        .await
        .into_iter()
        .find(|i| s(i, "provider") == "instagram")
        .unwrap();
    assert!(!ig_state.contains_key("code_verifier"));

    // The exchange proves it, and the state (with the verifier) is gone.
    let back = h.stack.meta.approve(&fb.authorize_url);
    let resp = h.follow(&back, fb.cookie.as_deref()).await;
    assert_eq!(
        param(&resp.location(), "status").as_deref(),
        Some("connected"),
        "{}",
        resp.location()
    );
    assert_eq!(
        h.stack.meta.pkce_verifiers(),
        std::slice::from_ref(&verifier)
    );
    assert!(!h
        .scan("STATES_TABLE")
        .await
        .iter()
        .any(|i| s(i, "code_verifier") == verifier));
    h.assert_no_secret_leaked().await;
}

#[tokio::test]
async fn a_leaked_facebook_code_cannot_be_redeemed_with_another_state() {
    // RFC 9700 2.1.1: the victim's code leaks from the complete page; the
    // attacker redeems it with a state of their own to link the account.
    let h = Harness::new().await;
    let victim = h
        .start("facebook", "victim", json!({"mode": "complete"}))
        .await;
    let leaked = param(&h.stack.meta.approve(&victim.authorize_url), "code").unwrap();
    let attacker = h
        .start("facebook", "attacker", json!({"mode": "complete"}))
        .await;
    let resp = h
        .call_callback(
            ApiRequest::post("/oauth/facebook/complete")
                .user("attacker")
                .json(&json!({"code": leaked, "state": attacker.state})),
        )
        .await;
    assert_eq!(resp.status(), 400, "{}", resp.body_text());
    assert_eq!(resp.body_json()["error"], "exchange_failed");
    assert!(h.connections_of("attacker").await.is_empty());
    assert!(h.scan("CONNECTIONS_TABLE").await.is_empty());
}

#[tokio::test]
async fn kms_requests_and_failures_are_counted_for_the_metrics() {
    let h = Harness::new().await;
    let owner = shared::vault::TokenOwner {
        user_id: "user-kms".into(),
        provider: shared::Provider::Instagram,
        account_id: "17841499999999999".into(),
    };
    let vault = TokenVault::new(KmsDataKeys::new(
        h.stack.kms.clone(),
        h.stack.var("TOKEN_KEY_ID"),
    ));
    let token = shared::secrecy::SecretString::from("IGQ-kms-count".to_string());
    let sealed = vault.seal(&token, &owner).await.unwrap();
    vault.open(&sealed, &owner).await.unwrap();
    let usage = vault.take_usage();
    assert_eq!((usage.calls, usage.errors), (2, 0));
    assert_eq!(vault.take_usage().calls, 0, "taking the counts resets them");

    // A key KMS doesn't know: a KMS error, counted.
    let broken = TokenVault::new(KmsDataKeys::new(
        h.stack.kms.clone(),
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
    ));
    assert!(broken.seal(&token, &owner).await.is_err());
    let usage = broken.take_usage();
    assert_eq!((usage.calls, usage.errors), (1, 1));
}
