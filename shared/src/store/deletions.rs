//! Data-deletion records: the status page Meta links a person to.
//!
//! Item, in the connections table: `pk = DELETION#<code>`, `sk = REQUEST`.

use time::OffsetDateTime;

use super::{epoch, get_s, get_time, s, ConnectionStore, Item, StoreError};

/// A data-deletion request, for the status page Meta links to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionRecord {
    pub code: String,
    pub status: String,
    pub requested_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
}

fn deletion_key(code: &str) -> Item {
    Item::from([
        ("pk".into(), s(format!("DELETION#{code}"))),
        ("sk".into(), s("REQUEST")),
    ])
}

impl ConnectionStore {
    pub async fn put_deletion(&self, record: &DeletionRecord) -> Result<(), StoreError> {
        let mut item = deletion_key(&record.code);
        item.insert("status".into(), s(&record.status));
        item.insert("requested_at".into(), epoch(record.requested_at));
        if let Some(done) = record.completed_at {
            item.insert("completed_at".into(), epoch(done));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }

    pub async fn get_deletion(&self, code: &str) -> Result<Option<DeletionRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(deletion_key(code)))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(out.item.as_ref().and_then(|i| {
            Some(DeletionRecord {
                code: code.to_string(),
                status: get_s(i, "status")?,
                requested_at: get_time(i, "requested_at")?,
                completed_at: get_time(i, "completed_at"),
            })
        }))
    }
}
