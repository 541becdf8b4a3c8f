//! The refresher's side of the connections table: what is due (the sparse
//! `by_due` index, `due_bucket` + `due_at`, see `refresh::Due`), a lease per
//! connection, and the outcome written only over the version leased.

use aws_sdk_dynamodb::types::{ReturnValue, TransactWriteItem, Update};
use time::OffsetDateTime;

use super::connections::{key_tag, DueKeys, Lease};
use super::items::{parse_connection, parse_token, token_attr, unreadable_attribute};
use super::{
    epoch, get_s, n, query_each, s, webhooks_attr, ConnectionKey, ConnectionStore, Event, Item,
    StoreError, UpdateExpr,
};
use super::{transacted, update_alone, written};
use crate::connection::Connection;
use crate::provider::Provider;
use crate::refresh::RefreshOutcome;
use crate::vault::SealedToken;

impl ConnectionStore {
    /// Keys of connections in `bucket` due up to `until`, soonest first,
    /// and the tags of entries that are not a connection's keys.
    pub async fn due(
        &self,
        bucket: Provider,
        until: OffsetDateTime,
        limit: usize,
    ) -> Result<DueKeys, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by_due")
            .key_condition_expression("due_bucket = :b AND due_at <= :until")
            .expression_attribute_values(":b", s(bucket.as_str()))
            .expression_attribute_values(":until", epoch(until));
        let mut due = DueKeys::default();
        // Each page's keys are parsed as it arrives: a run holds its due
        // keys, never every raw index item at once.
        let read = |item: &Item| {
            let (pk, sk) = (get_s(item, "pk"), get_s(item, "sk"));
            let (pk, sk) = (pk.unwrap_or_default(), sk.unwrap_or_default());
            match ConnectionKey::parse(&pk, &sk) {
                Some(key) => due.keys.push(key),
                None => due.unreadable.push(key_tag(&pk, &sk)),
            }
        };
        let found = query_each(query, limit, read).await?;
        due.capped = found >= limit;
        Ok(due)
    }

    /// Takes a lease on one connection (a conditional write: only one run
    /// holds it) and returns the connection as it is now, re-read by the
    /// same write.
    pub async fn take_lease(
        &self,
        key: &ConnectionKey,
        lease_owner: &str,
        now: OffsetDateTime,
        lease_for: time::Duration,
    ) -> Result<Lease, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.item()))
            .update_expression("SET lease_owner = :o, lease_until = :until")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(lease_until) OR lease_until < :now)",
            )
            .expression_attribute_values(":o", s(lease_owner))
            .expression_attribute_values(":until", epoch(now + lease_for))
            .expression_attribute_values(":now", epoch(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                Ok(match parse_connection(&item) {
                    Some(conn) => Lease::Taken(Box::new((conn, parse_token(&item)))),
                    None => Lease::Unreadable {
                        attribute: unreadable_attribute(&item),
                    },
                })
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(Lease::Busy)
            }
            Err(e) => Err(StoreError::from_sdk(e)),
        }
    }

    /// Writes a run's outcome (with the refreshed token, when there is one,
    /// and its lifecycle events) and releases the lease, only if the connection is still at the
    /// version leased and the lease is still ours. `Ok(false)`: it changed
    /// meanwhile (reconnected, deleted): nothing written.
    pub async fn settle(
        &self,
        conn: &Connection,
        lease_owner: &str,
        outcome: &RefreshOutcome,
        new_token: Option<&SealedToken>,
        events: &[Event],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let update = outcome_update(outcome, new_token, now)
            .apply(Update::builder())
            .table_name(&self.table)
            .set_key(Some(ConnectionKey::of(conn).item()))
            .condition_expression("version = :v AND lease_owner = :o")
            .expression_attribute_values(":v", n(conn.version))
            .expression_attribute_values(":o", s(lease_owner))
            .build()
            .expect("complete");
        if events.is_empty() {
            // Nothing to write with it (a daily check that found all well):
            // one conditional UpdateItem, half a transaction's write units.
            return written(update_alone(&self.client, update).send().await);
        }
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build());
        for e in events {
            tx = tx.transact_items(
                TransactWriteItem::builder()
                    .put(e.to_put(&self.events_table))
                    .build(),
            );
        }
        transacted(tx.send().await)
    }
}

/// Status, subscription, failures and the last refresh, as the outcome
/// says.
fn set_bookkeeping(u: &mut UpdateExpr, outcome: &RefreshOutcome) {
    if let Some(status) = outcome.status {
        u.set("#status = :status", ":status", s(status.as_str()));
        u.name("#status", "status");
    }
    if let Some(subscribed) = outcome.webhooks_subscribed {
        let webhooks = webhooks_attr(subscribed);
        u.set("webhooks = :webhooks", ":webhooks", webhooks);
    }
    if let Some(failures) = outcome.failures {
        let days = n(failures.days);
        u.set("refresh_failures = :failures", ":failures", days);
        let last = failures.last_at.map(epoch);
        let clause = "last_refresh_failure_at = :failed_at";
        u.set_or_remove(clause, ":failed_at", "last_refresh_failure_at", last);
    }
    if let Some(refreshed) = outcome.refreshed {
        let at = epoch(refreshed.at);
        u.set("last_refreshed_at = :refreshed_at", ":refreshed_at", at);
    }
}

/// The changes an outcome makes to the connection's row.
fn outcome_update(
    outcome: &RefreshOutcome,
    new_token: Option<&SealedToken>,
    now: OffsetDateTime,
) -> UpdateExpr {
    let mut u = UpdateExpr::default();
    u.set("version = version + :one", ":one", n(1));
    u.set("updated_at = :now", ":now", epoch(now));
    u.remove("lease_owner");
    u.remove("lease_until");
    if let (Some(token), Some(refreshed)) = (new_token, outcome.refreshed) {
        u.set("#token = :token", ":token", token_attr(token));
        u.name("#token", "token");
        u.set_clause("token_issued_at = :now");
        let expires = refreshed.expires_at.map(epoch);
        let clause = "token_expires_at = :expires";
        u.set_or_remove(clause, ":expires", "token_expires_at", expires);
    }
    set_bookkeeping(&mut u, outcome);
    match outcome.due {
        Some(due) => {
            u.set("due_bucket = :bucket", ":bucket", s(due.bucket.as_str()));
            u.set("due_at = :due", ":due", epoch(due.at));
        }
        None => {
            u.remove("due_bucket");
            u.remove("due_at");
        }
    }
    u
}
