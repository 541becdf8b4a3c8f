//! What the proxy answers before it would call Meta, and what it stores.

use shared::connection::Status;
use shared::graph::store::{Block, IdemKey, StoredAnswer};

use super::memory::{scoped, Record};
use super::*;

#[tokio::test]
async fn only_the_connections_owner_reaches_it() {
    let h = proxy(memory::with(vec![conn("bob", ACCOUNT)]));
    let answer = h.proxy(request(GraphMethod::Get, "me/media", None)).await;
    assert_eq!(
        said(&answer),
        (404, Some("not_found")),
        "ada's request for bob's account"
    );
    let mut nobody = request(GraphMethod::Get, "me/media", None);
    nobody.user_id.clear();
    assert_eq!(said(&h.proxy(nobody).await), (404, Some("not_found")));
}

#[tokio::test]
async fn what_the_contract_refuses_is_refused_before_anything_is_sent() {
    let h = proxy(memory::with(vec![conn("ada", ACCOUNT)]));
    for path in ["evil", "v25.0/me", "ME"] {
        let refused = h.proxy(request(GraphMethod::Get, path, None)).await;
        assert_eq!(said(&refused), (400, Some("path_not_allowed")), "{path}");
    }
    let mut facebook = request(GraphMethod::Get, "me", None);
    facebook.provider = Provider::Facebook;
    assert_eq!(
        said(&h.proxy(facebook).await),
        (404, Some("unknown_provider"))
    );
    let mut huge = request(GraphMethod::Post, "me/messages", Some(json!({"text": "x"})));
    huge.body_len = crate::MAX_BODY_BYTES + 1;
    assert_eq!(said(&h.proxy(huge).await), (413, Some("body_too_large")));
}

#[tokio::test]
async fn a_caller_over_its_bucket_waits_and_others_do_not() {
    let store = memory::with(vec![conn("ada", ACCOUNT), conn("bob", "17841400000000002")]);
    let h = proxy(store.clone());
    // The connection's burst is 20 at one instant (the clock stands still):
    // each call takes a token, and the 21st is held. A blocked account
    // stops each call before Meta, so none reaches it.
    let block = Block {
        until: NOW + Duration::minutes(5),
        meta: json!({"code": 4}),
    };
    store
        .tables()
        .blocks
        .insert((Provider::Instagram, ACCOUNT.into()), block);
    for _ in 0..20 {
        let answer = h.proxy(request(GraphMethod::Get, "me/media", None)).await;
        assert_eq!(said(&answer), (429, Some("meta_rate_limited")));
    }
    let held = h.proxy(request(GraphMethod::Get, "me/media", None)).await;
    assert_eq!(said(&held), (429, Some("rate_limited")));
    assert!(held
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("retry-after") && v == "1"));
    // Bob's buckets are his own.
    let mut bob = request(GraphMethod::Get, "me/media", None);
    (bob.user_id, bob.account_id) = ("bob".into(), "17841400000000002".into());
    assert_ne!(said(&h.proxy(bob).await).1, Some("rate_limited"));
}

#[tokio::test]
async fn a_connection_that_needs_the_person_again_is_not_used() {
    let mut stale = conn("ada", ACCOUNT);
    stale.0.status = Status::NeedsReauth;
    let mut gone = conn("ada", "17841400000000003");
    gone.0.status = Status::Revoked;
    let h = proxy(memory::with(vec![stale, gone]));
    let answer = h.proxy(request(GraphMethod::Get, "me", None)).await;
    assert_eq!(said(&answer), (409, Some("connection_needs_reauth")));
    let mut revoked = request(GraphMethod::Get, "me", None);
    revoked.account_id = "17841400000000003".into();
    assert_eq!(
        said(&h.proxy(revoked).await),
        (409, Some("connection_revoked"))
    );
}

#[tokio::test]
async fn a_blocked_account_leaves_the_idempotency_key_free() {
    let store = memory::with(vec![conn("ada", ACCOUNT)]);
    let until = NOW + Duration::minutes(5);
    let block = Block {
        until,
        meta: json!({"code": 4}),
    };
    store.tables().app_blocks.insert(Provider::Instagram, block);
    let h = proxy(store.clone());
    let mut send = request(
        GraphMethod::Post,
        "me/messages",
        Some(json!({"text": "hi"})),
    );
    send.idempotency_key = Some("k-1".into());
    let answer = h.proxy(send).await;
    assert_eq!(said(&answer), (429, Some("meta_rate_limited")));
    assert!(
        store.tables().records.is_empty(),
        "Meta was not called: the key is free"
    );
}

/// `ada`'s connection with an idempotency record for key `k-1`.
fn with_record(record: impl FnOnce(&str) -> Record) -> (Memory, ProxyRequest) {
    let stored = conn("ada", ACCOUNT);
    let key = IdemKey {
        provider: Provider::Instagram,
        account_id: ACCOUNT,
        user_id: "ada",
        connected_at: stored.0.connected_at,
        key: "k-1",
    };
    let mut send = request(
        GraphMethod::Post,
        "me/messages",
        Some(json!({"text": "hi"})),
    );
    send.idempotency_key = Some("k-1".into());
    let body = Some(json!({"text": "hi"}));
    let fp = shared::graph::store::request_fingerprint("POST", "me/messages", &[], body.as_ref());
    let store = memory::with(vec![stored]);
    store.tables().records.insert(scoped(&key), record(&fp));
    (store, send)
}

#[tokio::test]
async fn an_answered_key_is_answered_again_without_meta() {
    let answer = StoredAnswer {
        status: 200,
        headers: vec![],
        body: json!({"message_id": "m-1"}),
    };
    let (store, send) = with_record(|fp| Record::Done {
        fingerprint: fp.into(),
        answer,
    });
    let h = proxy(store);
    let again = h.proxy(send.clone()).await;
    assert_eq!((again.status, again.replayed), (200, true));
    assert_eq!(again.body, json!({"message_id": "m-1"}));
    // The same key for another message is refused.
    let mut other = send;
    other.body = Some(GraphBody::Json(json!({"text": "something else"})));
    assert_eq!(
        said(&h.proxy(other).await),
        (422, Some("idempotency_key_reused"))
    );
}

#[tokio::test]
async fn a_key_in_flight_or_of_unknown_outcome_is_never_sent_again() {
    let lease_until = NOW + Duration::seconds(30);
    let (store, send) = with_record(|fp| Record::InFlight {
        fingerprint: fp.into(),
        lease_until,
    });
    let answer = proxy(store).proxy(send).await;
    assert_eq!(said(&answer), (409, Some("request_in_progress")));
    let (store, send) = with_record(|fp| Record::Unknown {
        fingerprint: fp.into(),
    });
    let answer = proxy(store.clone()).proxy(send).await;
    assert_eq!(said(&answer), (409, Some("outcome_unknown")));
    assert!(matches!(
        store.tables().records.values().next(),
        Some(Record::Unknown { .. })
    ));
}

#[tokio::test]
async fn a_store_outage_is_a_503_and_nothing_is_sent() {
    let store = memory::with(vec![conn("ada", ACCOUNT)]);
    store.set_down(true);
    let answer = proxy(store)
        .proxy(request(GraphMethod::Get, "me", None))
        .await;
    assert_eq!(said(&answer), (503, Some("service_unavailable")));
}
