//! The webhook's store in memory: connections (with their owner claims and
//! Page aliases derived from them), events, tombstones and deletion records.

use std::collections::HashMap;

use shared::connection::{Connection, Status};
use shared::store::{
    DeletionAccount, DeletionPerson, DeletionRecord, Event, Owner, StoreError, Stored,
};
use shared::testing::InMemory;
use shared::time::OffsetDateTime;
use shared::Provider;

use crate::MetaStore;

#[derive(Default)]
pub struct Tables {
    pub rows: Vec<Stored>,
    pub events: Vec<Event>,
    /// Accounts people deleted (their tombstones), by Meta user.
    pub tombstones: Vec<(String, DeletionAccount)>,
    pub people: HashMap<String, DeletionPerson>,
    pub deletions: HashMap<String, DeletionRecord>,
}

/// Cloned by the test, which reads the tables after a call.
pub type Memory = InMemory<Tables>;

/// Tables holding `rows`.
pub fn with(rows: Vec<Stored>) -> Memory {
    InMemory::new(Tables {
        rows,
        ..Tables::default()
    })
}

fn same(a: &Connection, b: &Connection) -> bool {
    (&a.user_id, a.provider, &a.account_id) == (&b.user_id, b.provider, &b.account_id)
}

/// Stores `event` unless its id is stored; whether it was new.
fn put(tables: &mut Tables, event: &Event) -> bool {
    let new = !tables.events.iter().any(|e| e.event_id == event.event_id);
    if new {
        tables.events.push(event.clone());
    }
    new
}

impl MetaStore for Memory {
    async fn owners(&self, entry_ids: &[&str]) -> Result<HashMap<String, Owner>, StoreError> {
        let tables = self.up()?;
        let mut owners: HashMap<String, Owner> = HashMap::new();
        for (c, _) in &tables.rows {
            for id in [Some(&c.account_id), c.page_id.as_ref()]
                .into_iter()
                .flatten()
            {
                if !entry_ids.contains(&id.as_str()) {
                    continue;
                }
                let owner = owners.entry(id.clone()).or_insert_with(|| Owner {
                    user_id: c.user_id.clone(),
                    account_id: c.account_id.clone(),
                    providers: Vec::new(),
                });
                owner.providers.push(c.provider);
            }
        }
        Ok(owners)
    }

    async fn put_events(&self, events: &[Event], _concurrency: usize) -> Result<usize, StoreError> {
        let mut tables = self.up()?;
        Ok(events.iter().filter(|e| put(&mut tables, e)).count())
    }

    async fn put_event(&self, event: &Event) -> Result<bool, StoreError> {
        Ok(put(&mut *self.up()?, event))
    }

    async fn by_meta_user(&self, meta_user: &str) -> Result<Vec<Connection>, StoreError> {
        let tables = self.up()?;
        let mine = tables
            .rows
            .iter()
            .filter(|(c, _)| c.meta_user_id == meta_user);
        Ok(mine.map(|(c, _)| c.clone()).collect())
    }

    async fn connection(
        &self,
        user_id: &str,
        provider: Provider,
        account_id: &str,
    ) -> Result<Option<Stored>, StoreError> {
        let tables = self.up()?;
        let found = tables
            .rows
            .iter()
            .find(|(c, _)| shared::testing::is_connection(c, user_id, provider, account_id));
        Ok(found.cloned())
    }

    async fn revoke_granted_before(
        &self,
        conn: &Connection,
        issued_at: OffsetDateTime,
        event: &Event,
        _now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tables = self.up()?;
        let Some((row, token)) = tables.rows.iter_mut().find(|(c, _)| same(c, conn)) else {
            return Ok(false);
        };
        let changes = row.status != Status::Revoked || token.is_some();
        if !changes || row.token_issued_at > issued_at {
            return Ok(false);
        }
        row.status = Status::Revoked;
        row.version += 1;
        *token = None;
        put(&mut tables, event);
        Ok(true)
    }

    async fn deleted_accounts(
        &self,
        meta_user: &str,
        _now: OffsetDateTime,
    ) -> Result<Vec<DeletionAccount>, StoreError> {
        let tables = self.up()?;
        let mine = tables.tombstones.iter().filter(|(m, _)| m == meta_user);
        Ok(mine.map(|(_, a)| a.clone()).collect())
    }

    async fn owner_of(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        let tables = self.up()?;
        let holder = tables.rows.iter().find(|(c, _)| c.account_id == account_id);
        Ok(holder.map(|(c, _)| c.user_id.clone()))
    }

    async fn deletion_person(&self, meta_user: &str) -> Result<Option<DeletionPerson>, StoreError> {
        Ok(self.up()?.people.get(meta_user).cloned())
    }

    async fn deletion(&self, code: &str) -> Result<Option<DeletionRecord>, StoreError> {
        Ok(self.up()?.deletions.get(code).cloned())
    }

    async fn start_deletion(
        &self,
        meta_user: &str,
        issued_at: Option<i64>,
        record: &DeletionRecord,
        before: Option<&DeletionPerson>,
        count: i64,
    ) -> Result<bool, StoreError> {
        let mut tables = self.up()?;
        let now = tables.people.get(meta_user).map(|p| p.count);
        if now != before.map(|p| p.count) {
            return Ok(false);
        }
        let person = DeletionPerson {
            count,
            latest_code: record.code.clone(),
            latest_issued_at: issued_at,
        };
        tables.people.insert(meta_user.into(), person);
        tables.deletions.insert(record.code.clone(), record.clone());
        Ok(true)
    }
}
