//! Tombstones: a deleted connection's Meta user → account link, kept for
//! the event retention, so that the person's later data-deletion request
//! still finds the account, whose stored events (and the proxy's stored
//! answers) outlive the connection.
//!
//! Item, in the connections table: `pk = USER#<user>`,
//! `sk = GONE#<provider>#<account>`, written in the delete's transaction:
//! `meta_user_id` (so the `by_meta_user` index lists it beside the person's
//! connections), `provider`, `account_id`, `user_id`, `deleted_at`,
//! `expires_at` (the table's TTL: as long as the events written until the
//! delete are kept). TTL deletion is late, so readers check `expires_at`
//! themselves. Deleting the account again later writes it again, later.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use time::OffsetDateTime;

use super::{
    epoch, get_consistent, get_s, get_time, item_key, s, user_pk, ConnectionStore, DeletionAccount,
    Item, StoreError,
};
use crate::connection::Connection;
use crate::provider::Provider;

const PREFIX: &str = "GONE#";

/// Whether a row of the connections table (by its `sk`) is a tombstone.
pub(super) fn is_tombstone(sk: &str) -> bool {
    sk.starts_with(PREFIX)
}

/// The tombstone of `conn`, deleted at `now`, kept until `expires_at`.
/// `None` for a connection that never recorded its Meta user (no request
/// of Meta's could name it).
pub(super) fn put(
    table: &str,
    conn: &Connection,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Option<TransactWriteItem> {
    if conn.meta_user_id.is_empty() {
        return None;
    }
    let mut item = item_key(
        user_pk(&conn.user_id),
        &format!("{PREFIX}{}#{}", conn.provider, conn.account_id),
    );
    item.extend([
        ("meta_user_id".into(), s(&conn.meta_user_id)),
        ("provider".into(), s(conn.provider.as_str())),
        ("account_id".into(), s(&conn.account_id)),
        ("user_id".into(), s(&conn.user_id)),
        ("deleted_at".into(), epoch(now)),
        ("expires_at".into(), epoch(expires_at)),
    ]);
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .expect("table and item are set");
    Some(TransactWriteItem::builder().put(put).build())
}

/// The account a tombstone stands for, if it is still in force at `now`.
fn parse(item: &Item, now: OffsetDateTime) -> Option<DeletionAccount> {
    if get_time(item, "expires_at")? <= now {
        return None;
    }
    Some(DeletionAccount {
        provider: Provider::parse(&get_s(item, "provider")?)?,
        account_id: get_s(item, "account_id")?,
        user_id: get_s(item, "user_id")?,
    })
}

impl ConnectionStore {
    /// The accounts of this Meta user's connections deleted within the
    /// retention (tombstones not expired at `now`).
    pub async fn deleted_accounts(
        &self,
        meta_user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<DeletionAccount>, StoreError> {
        let mut out = Vec::new();
        // The index holds keys only: read each tombstone (a person has few).
        for (pk, sk) in self.person_keys(meta_user_id).await? {
            if !is_tombstone(&sk) {
                continue;
            }
            let item = get_consistent(&self.client, &self.table, item_key(pk, &sk)).await?;
            out.extend(item.as_ref().and_then(|i| parse(i, now)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tombstone_names_the_account_until_it_expires() {
        let now = OffsetDateTime::from_unix_timestamp(1_795_260_000).unwrap();
        let mut conn = crate::connection::test_connection(Provider::Instagram, now);
        let expires = now + time::Duration::days(14);
        let write = put("t", &conn, now, expires).unwrap();
        let item = write.put().unwrap().item().clone();
        assert!(is_tombstone(&get_s(&item, "sk").unwrap()));
        assert_eq!(get_s(&item, "pk").unwrap(), user_pk(&conn.user_id));
        assert_eq!(get_s(&item, "meta_user_id").as_deref(), Some("m"));
        let account = DeletionAccount {
            provider: conn.provider,
            account_id: conn.account_id.clone(),
            user_id: conn.user_id.clone(),
        };
        assert_eq!(parse(&item, now), Some(account.clone()));
        assert_eq!(
            parse(&item, expires - time::Duration::seconds(1)),
            Some(account)
        );
        assert_eq!(parse(&item, expires), None, "expired, though TTL is late");

        conn.meta_user_id.clear();
        assert!(put("t", &conn, now, expires).is_none());
    }
}
