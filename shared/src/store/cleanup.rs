//! The cleanup queue: a deleted connection's sealed token, kept only until
//! the refresher (which may use KMS) has unsubscribed and revoked it at Meta.
//!
//! Item, in the connections table: `pk = CLEANUP`,
//! `sk = <deleted at>#<user>#<provider>#<account>`.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use time::OffsetDateTime;

use super::connections::key_tag;
use super::items::{parse_token, token_attr};
use super::{get_s, s, ConnectionStore, Item, StoreError};
use crate::connection::Connection;
use crate::provider::Provider;
use crate::vault::SealedToken;

#[derive(Clone, Debug)]
pub struct CleanupJob {
    pub sk: String,
    pub user_id: String,
    pub provider: Provider,
    pub account_id: String,
    pub meta_user_id: String,
    pub page_id: Option<String>,
    pub token: SealedToken,
}

/// Queues the deleted connection's token (in the deletion's transaction).
pub(super) fn enqueue(
    table: &str,
    conn: &Connection,
    token: &SealedToken,
    now: OffsetDateTime,
) -> TransactWriteItem {
    let sk = format!(
        "{}#{}#{}#{}",
        now.unix_timestamp(),
        conn.user_id,
        conn.provider,
        conn.account_id
    );
    let mut job = Item::from([
        ("pk".into(), s("CLEANUP")),
        ("sk".into(), s(sk)),
        ("user_id".into(), s(&conn.user_id)),
        ("provider".into(), s(conn.provider.as_str())),
        ("account_id".into(), s(&conn.account_id)),
        ("meta_user_id".into(), s(&conn.meta_user_id)),
        ("token".into(), token_attr(token)),
    ]);
    if let Some(page) = &conn.page_id {
        job.insert("page_id".into(), s(page));
    }
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(job))
        .build()
        .expect("complete");
    TransactWriteItem::builder().put(put).build()
}

/// The queue's jobs, and the tags of those that do not parse.
#[derive(Debug, Default)]
pub struct CleanupJobs {
    pub jobs: Vec<CleanupJob>,
    /// [`key_tag`]s of jobs that cannot be read (left in the queue).
    pub unreadable: Vec<String>,
}

impl ConnectionStore {
    pub async fn cleanup_jobs(&self, limit: i32) -> Result<CleanupJobs, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s("CLEANUP"))
            .limit(limit)
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let mut found = CleanupJobs::default();
        for item in out.items() {
            match parse_job(item) {
                Some(job) => found.jobs.push(job),
                None => found
                    .unreadable
                    .push(key_tag("CLEANUP", &get_s(item, "sk").unwrap_or_default())),
            }
        }
        Ok(found)
    }

    /// Removes a cleanup job, and with it the last copy of the token.
    pub async fn finish_cleanup(&self, job: &CleanupJob) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s("CLEANUP"))
            .key("sk", s(&job.sk))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }
}

fn parse_job(item: &Item) -> Option<CleanupJob> {
    Some(CleanupJob {
        sk: get_s(item, "sk")?,
        user_id: get_s(item, "user_id")?,
        provider: Provider::parse(&get_s(item, "provider")?)?,
        account_id: get_s(item, "account_id")?,
        meta_user_id: get_s(item, "meta_user_id").unwrap_or_default(),
        page_id: get_s(item, "page_id"),
        token: parse_token(item)?,
    })
}
