//! `POST /meta/deauthorize`, `POST /meta/data-deletion` and the status page.

use serde_json::json;
use shared::connection::{Lifecycle, Status};
use shared::event_kind::EventKind;
use shared::store::{DeletionAccount, DeletionStatus};
use shared::webhook::make_signed_request;

use super::*;

/// Meta's form body: a `signed_request` for `meta_user`, issued at `at`.
fn form(path: &str, meta_user: &str, at: OffsetDateTime, secret: &str) -> Request {
    let payload = json!({
        "algorithm": "HMAC-SHA256",
        "issued_at": at.unix_timestamp(),
        "user_id": meta_user,
    });
    let signed = make_signed_request(secret.as_bytes(), &payload);
    let body = format!("signed_request={signed}");
    let headers = json!({"content-type": "application/x-www-form-urlencoded"});
    request("POST", path, headers, &body)
}

/// Two grants of `m-1`: account 1 thirty days ago, account 2 an hour
/// after the request (the person connected again).
fn grants() -> Memory {
    let mut newer = conn("ada", "2", "m-1", 0);
    newer.0.token_issued_at = NOW + Duration::hours(1);
    memory::with(vec![
        conn("ada", "1", "m-1", 30),
        newer,
        conn("bob", "3", "m-2", 30),
    ])
}

fn status_of(store: &Memory, account: &str) -> (Status, bool) {
    let tables = store.tables();
    let (c, token) = tables
        .rows
        .iter()
        .find(|(c, _)| c.account_id == account)
        .unwrap();
    (c.status, token.is_some())
}

#[tokio::test]
async fn deauthorize_revokes_grants_before_the_request_and_never_a_newer_one() {
    let store = grants();
    let secrets = SecretsCache::in_memory(secrets_json(IG_SECRET));
    let h = handler(store.clone(), &secrets);
    let req = || form("/s3cr3t/meta/deauthorize", "m-1", NOW, IG_SECRET);

    assert_eq!(
        call(&h, req()).await,
        (StatusCode::OK, json!({"revoked": 1}))
    );
    assert_eq!(
        status_of(&store, "1"),
        (Status::Revoked, false),
        "token deleted"
    );
    assert_eq!(
        status_of(&store, "2"),
        (Status::Active, true),
        "the newer grant"
    );
    assert_eq!(
        status_of(&store, "3"),
        (Status::Active, true),
        "someone else"
    );
    let kinds: Vec<EventKind> = store
        .tables()
        .events
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(kinds, [EventKind::Lifecycle(Lifecycle::Revoked)]);

    // Meta's retry: nothing more to revoke, no second event.
    assert_eq!(
        call(&h, req()).await,
        (StatusCode::OK, json!({"revoked": 0}))
    );
    assert_eq!(store.tables().events.len(), 1);
}

#[tokio::test]
async fn a_signed_request_not_signed_by_an_app_secret_changes_nothing() {
    let store = grants();
    let secrets = SecretsCache::in_memory(secrets_json(IG_SECRET));
    let h = handler(store.clone(), &secrets);
    for path in ["/meta/deauthorize", "/meta/data-deletion"] {
        let (status, body) = call(&h, form(path, "m-1", NOW, "forged")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_signed_request"))
        );
    }
    assert_eq!(status_of(&store, "1"), (Status::Active, true));
    let tables = store.tables();
    assert!(tables.events.is_empty() && tables.deletions.is_empty());
}

#[tokio::test]
async fn data_deletion_revokes_tells_the_product_and_answers_one_code_per_request() {
    let store = grants();
    // An account the person deleted earlier, held by nobody now.
    let gone = DeletionAccount {
        provider: Provider::Instagram,
        account_id: "9".into(),
        user_id: "ada".into(),
    };
    store.tables().tombstones.push(("m-1".into(), gone));
    let secrets = SecretsCache::in_memory(secrets_json(IG_SECRET));
    let h = handler(store.clone(), &secrets);
    let req = || form("/s3cr3t/meta/data-deletion", "m-1", NOW, FB_SECRET);

    let (status, body) = call(&h, req()).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("pending"))
    );
    let code = body["confirmation_code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 20);
    let url = format!("https://api.example.com/meta/data-deletion/{code}");
    assert_eq!(
        body["url"].as_str(),
        Some(url.as_str()),
        "never under Meta's prefix"
    );
    assert_eq!(status_of(&store, "1"), (Status::Revoked, false));
    assert_eq!(status_of(&store, "2"), (Status::Active, true));
    {
        let tables = store.tables();
        let record = &tables.deletions[&code];
        let accounts: Vec<&str> = record
            .accounts
            .iter()
            .map(|a| a.account_id.as_str())
            .collect();
        assert_eq!(accounts, ["1", "9"]);
        let notices = tables
            .events
            .iter()
            .filter(|e| e.kind == EventKind::DataDeletionRequested);
        let mut noticed: Vec<&str> = notices.map(|e| e.account_id.as_str()).collect();
        noticed.sort_unstable();
        assert_eq!(noticed, ["1", "9"], "the product is told, per account");
    }

    // Meta's retry of the same request: the same code, nothing new.
    let events = store.tables().events.len();
    let (_, again) = call(&h, req()).await;
    assert_eq!(again["confirmation_code"].as_str(), Some(code.as_str()));
    let tables = store.tables();
    assert_eq!((tables.events.len(), tables.deletions.len()), (events, 1));
}

#[tokio::test]
async fn the_status_page_shows_the_request_and_nothing_personal() {
    let store = grants();
    let secrets = SecretsCache::in_memory(secrets_json(IG_SECRET));
    let h = handler(store.clone(), &secrets);
    let (_, body) = call(&h, form("/meta/data-deletion", "m-1", NOW, IG_SECRET)).await;
    let code = body["confirmation_code"].as_str().unwrap();

    let page = |path: &str| request("GET", path, json!({}), "");
    let (status, shown) = call(&h, page(&format!("/meta/data-deletion/{code}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["confirmation_code"].as_str(), Some(code));
    assert_eq!(
        shown["status"].as_str(),
        Some(DeletionStatus::Pending.as_str())
    );
    assert_eq!(shown["requested_at"].as_str(), Some("2026-11-21T10:00:00Z"));
    for personal in ["m-1", "ada", "\"1\""] {
        assert!(
            !shown.to_string().contains(personal),
            "{personal} in {shown}"
        );
    }
    for unknown in ["/meta/data-deletion/NOPE", "/meta/data-deletion/a-b"] {
        assert_eq!(call(&h, page(unknown)).await.0, StatusCode::NOT_FOUND);
    }
    store.set_down(true);
    let down = call(&h, page(&format!("/meta/data-deletion/{code}"))).await;
    assert_eq!(down.0, StatusCode::SERVICE_UNAVAILABLE);
}
