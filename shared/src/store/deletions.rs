//! Data deletion: the request's record (what the status page shows and what
//! the asynchronous job works through), a per-person counter that bounds how
//! many records one person can have. (The revoke that never touches a grant
//! newer than Meta's request is `ConnectionStore::revoke_granted_before`.)
//!
//! Items, in the connections table:
//! - `pk = DELETION#<code>`, `sk = REQUEST`: `status` (`pending`, `complete`),
//!   `requested_at`, `completed_at`, `accounts` (while pending: the accounts
//!   whose events the job deletes), `events_deleted`, `expires_at` (TTL).
//! - `pk = DELETIONS#<meta user>`, `sk = PERSON`: `count`, `latest_code`,
//!   `latest_issued_at`, `expires_at` (TTL).

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use time::{Duration, OffsetDateTime};

use super::{
    epoch, get_consistent, get_n, get_s, get_time, item_key, n, s, transacted, ConnectionStore,
    Item, StoreError,
};
use crate::provider::Provider;

/// How long a deletion record (and the per-person counter) is kept: the
/// status page answers for this long after the request.
pub const DELETION_RECORD_LIFETIME: Duration = Duration::days(90);

/// At most this many deletion records per person within
/// [`DELETION_RECORD_LIFETIME`]; a request beyond it reuses the latest
/// record (and its code), so no sequence of requests grows the table.
pub const DELETIONS_PER_PERSON: i64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionStatus {
    Pending,
    Complete,
}

impl DeletionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Complete => "complete",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            // Records written before the job existed said "completed".
            "complete" | "completed" => Some(Self::Complete),
            _ => None,
        }
    }
}

/// An account whose stored events a deletion removes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionAccount {
    pub provider: Provider,
    pub account_id: String,
    pub user_id: String,
}

/// A data-deletion request, for the status page Meta links to and for the
/// job that carries it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionRecord {
    pub code: String,
    pub status: DeletionStatus,
    pub requested_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    /// What is left to do (empty once complete).
    pub accounts: Vec<DeletionAccount>,
    pub events_deleted: u64,
}

/// A person's deletion requests so far (within the records' lifetime).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionPerson {
    pub count: i64,
    pub latest_code: String,
    pub latest_issued_at: Option<i64>,
}

fn deletion_key(code: &str) -> Item {
    item_key(format!("DELETION#{code}"), "REQUEST")
}

fn person_key(meta_user_id: &str) -> Item {
    item_key(format!("DELETIONS#{meta_user_id}"), "PERSON")
}

fn account_attr(a: &DeletionAccount) -> AttributeValue {
    AttributeValue::M(Item::from([
        ("provider".into(), s(a.provider.as_str())),
        ("account_id".into(), s(&a.account_id)),
        ("user_id".into(), s(&a.user_id)),
    ]))
}

fn parse_account(v: &AttributeValue) -> Option<DeletionAccount> {
    let m = v.as_m().ok()?;
    Some(DeletionAccount {
        provider: Provider::parse(&get_s(m, "provider")?)?,
        account_id: get_s(m, "account_id")?,
        user_id: get_s(m, "user_id")?,
    })
}

fn record_item(record: &DeletionRecord) -> Item {
    let mut item = deletion_key(&record.code);
    item.insert("status".into(), s(record.status.as_str()));
    item.insert("requested_at".into(), epoch(record.requested_at));
    item.insert(
        "expires_at".into(),
        epoch(record.requested_at + DELETION_RECORD_LIFETIME),
    );
    item.insert("events_deleted".into(), n(record.events_deleted));
    if let Some(done) = record.completed_at {
        item.insert("completed_at".into(), epoch(done));
    }
    if !record.accounts.is_empty() {
        let accounts = record.accounts.iter().map(account_attr).collect();
        item.insert("accounts".into(), AttributeValue::L(accounts));
    }
    item
}

impl ConnectionStore {
    /// What this person asked before, if anything.
    pub async fn deletion_person(
        &self,
        meta_user_id: &str,
    ) -> Result<Option<DeletionPerson>, StoreError> {
        let item = get_consistent(&self.client, &self.table, person_key(meta_user_id)).await?;
        Ok(item.as_ref().map(|i| DeletionPerson {
            count: get_n(i, "count").unwrap_or_default(),
            latest_code: get_s(i, "latest_code").unwrap_or_default(),
            latest_issued_at: get_n(i, "latest_issued_at"),
        }))
    }

    /// Writes `record` and counts it for the person, in one transaction that
    /// holds only if the person's counter is still `before` (two requests at
    /// once can't both pass the cap). `Ok(false)`: it changed meanwhile.
    pub async fn start_deletion(
        &self,
        meta_user_id: &str,
        issued_at: Option<i64>,
        record: &DeletionRecord,
        before: Option<&DeletionPerson>,
        count: i64,
    ) -> Result<bool, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(record_item(record)))
            .build()
            .expect("table and item are set");
        let mut person = Update::builder()
            .table_name(&self.table)
            .set_key(Some(person_key(meta_user_id)))
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":count", n(count))
            .expression_attribute_values(":code", s(&record.code))
            .expression_attribute_values(
                ":expires",
                epoch(record.requested_at + DELETION_RECORD_LIFETIME),
            );
        let mut set = "SET #count = :count, latest_code = :code, expires_at = :expires".to_string();
        match issued_at {
            Some(t) => {
                set.push_str(", latest_issued_at = :issued");
                person = person.expression_attribute_values(":issued", n(t));
            }
            None => set.push_str(" REMOVE latest_issued_at"),
        }
        person = person.update_expression(set);
        person = match before {
            None => person.condition_expression("attribute_not_exists(pk)"),
            Some(p) => person
                .condition_expression("#count = :before")
                .expression_attribute_values(":before", n(p.count)),
        };
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder()
                .update(person.build().expect("person update is complete"))
                .build(),
        ];
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        transacted(result)
    }

    pub async fn get_deletion(&self, code: &str) -> Result<Option<DeletionRecord>, StoreError> {
        let item = get_consistent(&self.client, &self.table, deletion_key(code)).await?;
        Ok(item.as_ref().and_then(|i| {
            Some(DeletionRecord {
                code: code.to_string(),
                status: DeletionStatus::parse(&get_s(i, "status")?)?,
                requested_at: get_time(i, "requested_at")?,
                completed_at: get_time(i, "completed_at"),
                accounts: i
                    .get("accounts")
                    .and_then(|v| v.as_l().ok())
                    .map(|l| l.iter().filter_map(parse_account).collect())
                    .unwrap_or_default(),
                events_deleted: get_n(i, "events_deleted")
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or_default(),
            })
        }))
    }

    /// Counts `deleted` more events towards a pending deletion (progress, for
    /// the logs and the record; the job resumes from the data itself).
    pub async fn deletion_progress(&self, code: &str, deleted: u64) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(deletion_key(code)))
            .update_expression("ADD events_deleted :n")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":n", n(deleted))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }

    /// Marks a deletion complete and forgets which accounts it was about.
    pub async fn complete_deletion(
        &self,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(deletion_key(code)))
            .update_expression("SET #status = :complete, completed_at = :now REMOVE accounts")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":complete", s(DeletionStatus::Complete.as_str()))
            .expression_attribute_values(":now", epoch(now))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_from_its_item() {
        let record = DeletionRecord {
            code: "ABC".into(),
            status: DeletionStatus::Pending,
            requested_at: OffsetDateTime::from_unix_timestamp(1_795_260_000).unwrap(),
            completed_at: None,
            accounts: vec![DeletionAccount {
                provider: Provider::Facebook,
                account_id: "178".into(),
                user_id: "u".into(),
            }],
            events_deleted: 3,
        };
        let item = record_item(&record);
        assert_eq!(
            get_n(&item, "expires_at"),
            Some(1_795_260_000 + 90 * 86_400),
            "records expire"
        );
        let accounts: Vec<DeletionAccount> = item["accounts"]
            .as_l()
            .unwrap()
            .iter()
            .filter_map(parse_account)
            .collect();
        assert_eq!(accounts, record.accounts);
        assert_eq!(
            DeletionStatus::parse("completed"),
            Some(DeletionStatus::Complete)
        );
        assert_eq!(
            DeletionStatus::parse("pending"),
            Some(DeletionStatus::Pending)
        );
    }
}
