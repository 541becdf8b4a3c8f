//! How a connection and its sealed token are stored as attributes.

use aws_sdk_dynamodb::types::AttributeValue;

use time::OffsetDateTime;

use super::{epoch, get_b, get_n, get_s, get_time, n, s, webhooks_attr, Item, UpdateExpr};
use crate::connection::{Connection, Status};
use crate::provider::Provider;
use crate::refresh::Due;
use crate::vault::SealedToken;

pub(crate) fn token_attr(t: &SealedToken) -> AttributeValue {
    AttributeValue::M(Item::from([
        ("v".into(), n(t.version)),
        ("key_id".into(), s(&t.key_id)),
        (
            "wrapped_key".into(),
            AttributeValue::B(t.wrapped_key.clone().into()),
        ),
        ("nonce".into(), AttributeValue::B(t.nonce.clone().into())),
        (
            "ciphertext".into(),
            AttributeValue::B(t.ciphertext.clone().into()),
        ),
    ]))
}

pub(crate) fn parse_token(item: &Item) -> Option<SealedToken> {
    let m = item.get("token")?.as_m().ok()?;
    Some(SealedToken {
        version: u8::try_from(get_n(m, "v")?).ok()?,
        key_id: get_s(m, "key_id")?,
        wrapped_key: get_b(m, "wrapped_key")?,
        nonce: get_b(m, "nonce")?,
        ciphertext: get_b(m, "ciphertext")?,
    })
}

/// The first attribute a connection row needs that is missing or malformed
/// (what a log may say about a row that does not parse: a name, never a
/// value).
pub(crate) fn unreadable_attribute(item: &Item) -> &'static str {
    let text = |k: &'static str| get_s(item, k).map(|_| k);
    let checks: [(&'static str, bool); 6] = [
        ("pk", user_of(item).is_some()),
        (
            "provider",
            get_s(item, "provider")
                .and_then(|p| Provider::parse(&p))
                .is_some(),
        ),
        ("account_id", text("account_id").is_some()),
        (
            "status",
            get_s(item, "status")
                .and_then(|v| Status::parse(&v))
                .is_some(),
        ),
        ("connected_at", get_time(item, "connected_at").is_some()),
        (
            "token_issued_at",
            get_time(item, "token_issued_at").is_some(),
        ),
    ];
    checks
        .iter()
        .find(|(_, ok)| !ok)
        .map_or("unknown", |(name, _)| name)
}

/// The owner of a connection row: its key (`USER#<sub>`), never an
/// attribute a write could have set otherwise.
fn user_of(item: &Item) -> Option<String> {
    let pk = get_s(item, "pk")?;
    let user = pk.strip_prefix("USER#")?;
    (!user.is_empty()).then(|| user.to_string())
}

pub(crate) fn parse_connection(item: &Item) -> Option<Connection> {
    Some(Connection {
        user_id: user_of(item)?,
        provider: Provider::parse(&get_s(item, "provider")?)?,
        account_id: get_s(item, "account_id")?,
        username: get_s(item, "username").unwrap_or_default(),
        status: Status::parse(&get_s(item, "status")?)?,
        webhooks_subscribed: get_s(item, "webhooks").as_deref() == Some("subscribed"),
        scopes: item
            .get("scopes")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        connected_at: get_time(item, "connected_at")?,
        token_expires_at: get_time(item, "token_expires_at"),
        token_issued_at: get_time(item, "token_issued_at")?,
        last_refreshed_at: get_time(item, "last_refreshed_at"),
        meta_user_id: get_s(item, "meta_user_id").unwrap_or_default(),
        page_id: get_s(item, "page_id"),
        page_name: get_s(item, "page_name"),
        version: get_n(item, "version").unwrap_or(0) as u64,
        refresh_failures: get_n(item, "refresh_failures").unwrap_or(0) as u32,
        last_refresh_failure_at: get_time(item, "last_refresh_failure_at"),
    })
}

/// The connection row as connecting writes it: everything from `conn`, the
/// refresh bookkeeping reset, its place in the refresh index.
pub(super) fn connected_update(
    conn: &Connection,
    token: &SealedToken,
    now: OffsetDateTime,
) -> UpdateExpr {
    let mut u = UpdateExpr::default();
    set_identity(&mut u, conn);
    set_token(&mut u, conn, token, now);
    set_page(&mut u, conn);
    u
}

/// Who and what the connection is: owner, account, profile, grant.
fn set_identity(u: &mut UpdateExpr, conn: &Connection) {
    u.set("user_id = :user_id", ":user_id", s(&conn.user_id));
    let provider = s(conn.provider.as_str());
    u.set("provider = :provider", ":provider", provider);
    let account = s(&conn.account_id);
    u.set("account_id = :account_id", ":account_id", account);
    u.set("username = :username", ":username", s(&conn.username));
    u.set("#status = :status", ":status", s(Status::Active.as_str()));
    u.name("#status", "status");
    let webhooks = webhooks_attr(conn.webhooks_subscribed);
    u.set("webhooks = :webhooks", ":webhooks", webhooks);
    let scopes = AttributeValue::L(conn.scopes.iter().map(s).collect());
    u.set("scopes = :scopes", ":scopes", scopes);
    let connected_at = "connected_at = if_not_exists(connected_at, :connected_at)";
    u.set(connected_at, ":connected_at", epoch(conn.connected_at));
    let meta_user = s(&conn.meta_user_id);
    u.set("meta_user_id = :meta_user_id", ":meta_user_id", meta_user);
}

/// The sealed token, its dates, the refresh bookkeeping reset and the
/// connection's place in the refresh index.
fn set_token(u: &mut UpdateExpr, conn: &Connection, token: &SealedToken, now: OffsetDateTime) {
    let due = Due::when_connected(conn, now);
    let issued = epoch(conn.token_issued_at);
    u.set("token_issued_at = :issued_at", ":issued_at", issued);
    u.set("#token = :token", ":token", token_attr(token));
    u.name("#token", "token");
    let bucket = s(due.bucket.as_str());
    u.set("due_bucket = :due_bucket", ":due_bucket", bucket);
    u.set("due_at = :due_at", ":due_at", epoch(due.at));
    u.set("updated_at = :now", ":now", epoch(now));
    u.set("refresh_failures = :zero", ":zero", n(0));
    let version = "version = if_not_exists(version, :zero) + :one";
    u.set(version, ":one", n(1));
    u.remove("last_refreshed_at");
    u.remove("last_refresh_failure_at");
    let expires = conn.token_expires_at.map(epoch);
    let set_expires = "token_expires_at = :expires";
    u.set_or_remove(set_expires, ":expires", "token_expires_at", expires);
}

/// The Page of a `facebook` connection, or none.
fn set_page(u: &mut UpdateExpr, conn: &Connection) {
    match &conn.page_id {
        Some(id) => {
            u.set("page_id = :page_id", ":page_id", s(id));
            let name = conn.page_name.clone().unwrap_or_default();
            u.set("page_name = :page_name", ":page_name", s(name));
        }
        None => {
            u.remove("page_id");
            u.remove("page_name");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pk: &str, user_attr: &str) -> Item {
        Item::from([
            ("pk".into(), s(pk)),
            ("user_id".into(), s(user_attr)),
            ("provider".into(), s("instagram")),
            ("account_id".into(), s("1784")),
            ("status".into(), s("active")),
            ("connected_at".into(), n(1_795_000_000)),
            ("token_issued_at".into(), n(1_795_000_000)),
        ])
    }

    #[test]
    fn the_owner_is_the_rows_key_never_its_user_id_attribute() {
        let conn = parse_connection(&row("USER#alice", "mallory")).unwrap();
        assert_eq!(conn.user_id, "alice");
        assert!(parse_connection(&row("USER#", "alice")).is_none());
        assert!(parse_connection(&row("PAGE#alice", "alice")).is_none());
        assert_eq!(unreadable_attribute(&row("USER#", "alice")), "pk");
    }
}
