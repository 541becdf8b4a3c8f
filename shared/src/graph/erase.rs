//! Erasing the proxy's stored answers of an account, for data deletion.
//!
//! Every idempotency record (`pk = IDEM#...`, [`super::store`]) carries
//! `account_key = "<provider>#<account>"`, the partition key of the sparse,
//! keys-only index `by_account` of the proxy's table (nothing else in the
//! table has the attribute). The data-deletion job pages through an
//! account's records there and deletes each one (`DeleteItem`: the job may
//! not write anything else in this table).

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use crate::provider::Provider;
use crate::store::{s, Item, StoreError};

/// The attribute every idempotency record carries, and the index it keys.
pub const ACCOUNT_KEY: &str = "account_key";
pub const BY_ACCOUNT: &str = "by_account";

/// Keys read per page of an account's records.
const PAGE: i32 = 500;
/// Deletes in flight at once.
const CONCURRENCY: usize = 16;

/// `account_key` of the records of `(provider, account_id)`.
pub fn account_key(provider: Provider, account_id: &str) -> AttributeValue {
    s(format!("{provider}#{account_id}"))
}

/// Where a run of [`StoredAnswers::erase_page`] got to.
#[derive(Debug, PartialEq)]
pub enum Erased {
    /// This many deleted; more pages follow from the key.
    More(usize, Item),
    /// This many deleted, and the account has no record left.
    Done(usize),
}

/// The proxy's table, as the data-deletion job sees it.
#[derive(Clone)]
pub struct StoredAnswers {
    client: Client,
    table: String,
}

impl StoredAnswers {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Deletes one page of the account's records, from `start` (`None`: the
    /// first page). What was deleted stays deleted when a later one fails,
    /// and a deleted record's key still listed by the index (it is
    /// eventually consistent) is deleted again, harmlessly.
    pub async fn erase_page(
        &self,
        provider: Provider,
        account_id: &str,
        start: Option<Item>,
    ) -> Result<Erased, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_ACCOUNT)
            .key_condition_expression("#account = :account")
            .expression_attribute_names("#account", ACCOUNT_KEY)
            .expression_attribute_values(":account", account_key(provider, account_id))
            .set_exclusive_start_key(start)
            .limit(PAGE)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let keys: Vec<AttributeValue> = page
            .items()
            .iter()
            .filter_map(|i| i.get("pk").cloned())
            .collect();
        let mut deleted = 0;
        for chunk in keys.chunks(CONCURRENCY) {
            let mut running = tokio::task::JoinSet::new();
            for pk in chunk {
                let delete = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", pk.clone());
                running.spawn(async move { delete.send().await.map_err(StoreError::from_sdk) });
            }
            while let Some(done) = running.join_next().await {
                done.map_err(|e| StoreError(format!("a delete task failed: {e}")))??;
                deleted += 1;
            }
        }
        Ok(match page.last_evaluated_key {
            Some(next) => Erased::More(deleted, next),
            None => Erased::Done(deleted),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_one_account_share_a_key_that_names_provider_and_account() {
        assert_eq!(account_key(Provider::Instagram, "178"), s("instagram#178"));
        assert_ne!(
            account_key(Provider::Facebook, "178"),
            account_key(Provider::Instagram, "178")
        );
    }
}
