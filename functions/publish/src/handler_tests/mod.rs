//! The routes without a server: the store in memory ([`memory::Memory`]),
//! the key service in memory (`shared::vault::fake::FakeDataKeys`), a fixed
//! clock, no media bucket. Each test calls `Publisher::answer` (or a door)
//! as a user would and checks the answer and what was stored. The run
//! (Meta's container flow, leases, the due index), a cancel racing a run,
//! uploads and what only DynamoDB can show stay in the integration tests
//! (`tests/tests/publish*`).

mod create;
mod doors;
mod memory;
mod reads;

use serde_json::{json, Value};
use shared::connection::{Connection, Status as ConnStatus};
use shared::secrets::SecretsCache;
use shared::time::{Duration, OffsetDateTime};
use shared::vault::fake::FakeDataKeys;
use shared::{Clock, EnvReader, FromEnv, Provider};
use time::macros::datetime;

use crate::{Action, Answer, PublishConfig, Publisher, Request};
use memory::{Memory, Row};

/// The instant every test's clock starts at.
const NOW: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);
/// Ada's account (Bob's is [`BOBS`]).
const ACCOUNT: &str = "17841400000000001";
const BOBS: &str = "17841400000000002";

type Handler = Publisher<FakeDataKeys, Memory>;

fn config() -> PublishConfig {
    let vars = [
        ("CONNECTIONS_TABLE", "connections"),
        ("EVENTS_TABLE", "events"),
        ("POSTS_TABLE", "posts"),
        ("TOKEN_KEY_ID", "alias/tokens"),
        ("META_SECRET_ID", "meta"),
        ("INSTAGRAM_APP_ID", "1000"),
        ("PUBLISH_DOOR", "invoke"),
        ("META_GRAPH_URL", "http://127.0.0.1:9"),
        ("META_INSTAGRAM_GRAPH_URL", "http://127.0.0.1:9"),
    ];
    let vars = vars.map(|(k, v)| (k.to_string(), v.to_string()));
    PublishConfig::from_env(EnvReader::from_map(vars.into())).expect("a complete configuration")
}

/// The function over `store`, its clock `clock`.
fn handler_at(store: &Memory, clock: &Clock) -> Handler {
    let secrets = SecretsCache::in_memory(json!({"instagram_app_secret": "s"}).to_string());
    let keys = FakeDataKeys::default();
    Publisher::with_store(config(), store.clone(), secrets, keys, clock.clone(), None).unwrap()
}

/// The function over `store`, its clock at [`NOW`].
fn handler(store: &Memory) -> Handler {
    handler_at(store, &Clock::fixed(NOW))
}

/// `user`'s Instagram connection to `account`, connected three days ago.
fn conn(user: &str, account: &str, status: ConnStatus) -> Connection {
    let at = NOW - Duration::days(3);
    Connection {
        version: 1,
        status,
        ..Connection::new(user, Provider::Instagram, account, "name", at)
    }
}

/// Ada's connection to [`ACCOUNT`] and Bob's to [`BOBS`], both active.
fn ada_and_bob() -> Memory {
    memory::with(vec![
        conn("ada", ACCOUNT, ConnStatus::Active),
        conn("bob", BOBS, ConnStatus::Active),
    ])
}

/// `user`'s request on `account`.
async fn ask(h: &Handler, user: &str, account: &str, action: Action) -> Answer {
    let req = Request {
        user_id: user.into(),
        provider: Provider::Instagram,
        account_id: account.into(),
        action,
    };
    h.answer(req).await
}

/// A create by `user` on `account`.
async fn create(h: &Handler, user: &str, account: &str, post: Value, key: Option<&str>) -> Answer {
    let idempotency_key = key.map(str::to_string);
    let action = Action::Create {
        post,
        idempotency_key,
    };
    ask(h, user, account, action).await
}

/// A feed image with `caption`, for tomorrow at noon.
fn scheduled(caption: &str) -> Value {
    json!({"type": "feed", "media": [{"kind": "image", "url": "https://cdn.example.com/a.jpg"}],
        "caption": caption, "publish_at": "2026-11-22T12:00:00Z"})
}

/// A feed image to publish now.
fn for_now() -> Value {
    json!({"type": "feed", "media": [{"kind": "image", "url": "https://cdn.example.com/a.jpg"}],
        "caption": "now", "publish_at": null})
}

/// A post created by Ada on [`ACCOUNT`]: its id.
async fn ada_creates(h: &Handler, post: Value) -> String {
    let answer = create(h, "ada", ACCOUNT, post, None).await;
    assert!(matches!(answer.status, 201 | 202), "{}", answer.body);
    answer.body["post_id"].as_str().expect("an id").to_string()
}

/// The answer's status and error code.
fn said(answer: &Answer) -> (u16, Option<&str>) {
    (answer.status, answer.body["error"].as_str())
}

/// The stored row of a post.
fn row(store: &Memory, post_id: &str) -> Row {
    store.tables().posts.get(post_id).expect("stored").clone()
}
