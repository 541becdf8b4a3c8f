//! The proxy's store in memory: connections, blocks, buckets (the same
//! `buckets::take` decision DynamoDB's conditional writes carry out) and
//! idempotency records.

use std::collections::HashMap;

use shared::connection::{Connection, Status};
use shared::graph::buckets::{self, BucketRule, Take};
use shared::graph::store::{Block, Bucket, Claim, IdemKey, StoredAnswer, Taken};
use shared::store::{Event, StoreError, Stored};
use shared::testing::InMemory;
use shared::time::{Duration, OffsetDateTime};
use shared::Provider;

use crate::ProxyStore;

/// An idempotency record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    InFlight {
        fingerprint: String,
        lease_until: OffsetDateTime,
    },
    Done {
        fingerprint: String,
        answer: StoredAnswer,
    },
    Unknown {
        fingerprint: String,
    },
}

impl Record {
    fn fingerprint(&self) -> &str {
        match self {
            Self::InFlight { fingerprint, .. }
            | Self::Done { fingerprint, .. }
            | Self::Unknown { fingerprint } => fingerprint,
        }
    }
}

#[derive(Default)]
pub struct Tables {
    pub rows: Vec<Stored>,
    pub events: Vec<Event>,
    pub blocks: HashMap<(Provider, String), Block>,
    pub app_blocks: HashMap<Provider, Block>,
    /// Each bucket's `full_at` (µs), by the bucket.
    pub buckets: HashMap<String, i64>,
    /// By the key as scoped: owner, connection instant, the caller's key.
    pub records: HashMap<String, Record>,
}

pub type Memory = InMemory<Tables>;

/// Tables holding `rows`.
pub fn with(rows: Vec<Stored>) -> Memory {
    InMemory::new(Tables {
        rows,
        ..Tables::default()
    })
}

/// The record's key: what `IdemKey` scopes it to.
pub fn scoped(key: &IdemKey<'_>) -> String {
    let (p, a, u, at) = (key.provider, key.account_id, key.user_id, key.connected_at);
    format!("{p}#{a}#{u}#{}#{}", at.unix_timestamp(), key.key)
}

fn in_force(block: Option<&Block>, now: OffsetDateTime) -> Option<Block> {
    block.filter(|b| b.until > now).cloned()
}

/// A later block never shortens an earlier one.
fn keep_later(slot: Option<&mut Block>, block: &Block) -> Option<Block> {
    match slot {
        Some(old) if old.until >= block.until => None,
        _ => Some(block.clone()),
    }
}

impl ProxyStore for Memory {
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

    async fn block(
        &self,
        provider: Provider,
        account_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Block>, StoreError> {
        let tables = self.up()?;
        Ok(in_force(
            tables.blocks.get(&(provider, account_id.into())),
            now,
        ))
    }

    async fn app_block(
        &self,
        provider: Provider,
        now: OffsetDateTime,
    ) -> Result<Option<Block>, StoreError> {
        Ok(in_force(self.up()?.app_blocks.get(&provider), now))
    }

    async fn put_block(
        &self,
        provider: Provider,
        account_id: &str,
        block: &Block,
    ) -> Result<(), StoreError> {
        let mut tables = self.up()?;
        let key = (provider, account_id.to_string());
        if let Some(b) = keep_later(tables.blocks.get_mut(&key), block) {
            tables.blocks.insert(key, b);
        }
        Ok(())
    }

    async fn put_app_block(&self, provider: Provider, block: &Block) -> Result<(), StoreError> {
        let mut tables = self.up()?;
        if let Some(b) = keep_later(tables.app_blocks.get_mut(&provider), block) {
            tables.app_blocks.insert(provider, b);
        }
        Ok(())
    }

    async fn take(
        &self,
        bucket: Bucket<'_>,
        rule: BucketRule,
        now: OffsetDateTime,
    ) -> Result<Taken, StoreError> {
        let mut tables = self.up()?;
        let key = format!("{bucket:?}");
        match buckets::take(rule, tables.buckets.get(&key).copied(), now) {
            Take::Refill { full_at } | Take::Spend { full_at } => {
                tables.buckets.insert(key, full_at);
                Ok(Taken::Allowed)
            }
            Take::Limited { retry_after } => Ok(Taken::Limited { retry_after }),
        }
    }

    async fn claim(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let mut tables = self.up()?;
        let record = tables.records.get(&scoped(key));
        let free = match record {
            None => true,
            Some(Record::InFlight {
                fingerprint: f,
                lease_until,
            }) => *lease_until <= now && f == fingerprint,
            Some(_) => false,
        };
        if free {
            let claimed = Record::InFlight {
                fingerprint: fingerprint.into(),
                lease_until: now + lease,
            };
            tables.records.insert(scoped(key), claimed);
            return Ok(Claim::Started);
        }
        Ok(match record {
            Some(r) if r.fingerprint() != fingerprint => Claim::Reused,
            Some(Record::Done { answer, .. }) => Claim::Replay(answer.clone()),
            Some(Record::Unknown { .. }) => Claim::OutcomeUnknown,
            _ => Claim::InProgress,
        })
    }

    async fn finish(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        let done = Record::Done {
            fingerprint: fingerprint.into(),
            answer: answer.clone(),
        };
        self.up()?.records.insert(scoped(key), done);
        Ok(())
    }

    /// Only a claim still in flight, of this request.
    async fn release(&self, key: &IdemKey<'_>, fingerprint: &str) -> Result<(), StoreError> {
        let mut tables = self.up()?;
        let ours = matches!(tables.records.get(&scoped(key)),
            Some(Record::InFlight { fingerprint: f, .. }) if f == fingerprint);
        if ours {
            tables.records.remove(&scoped(key));
        }
        Ok(())
    }

    async fn outcome_unknown(
        &self,
        key: &IdemKey<'_>,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        let unknown = Record::Unknown {
            fingerprint: fingerprint.into(),
        };
        self.up()?.records.insert(scoped(key), unknown);
        Ok(())
    }

    async fn mark_needs_reauth(
        &self,
        conn: &Connection,
        event: &Event,
        _now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tables = self.up()?;
        let same = |c: &Connection| {
            (&c.user_id, c.provider, &c.account_id)
                == (&conn.user_id, conn.provider, &conn.account_id)
        };
        let Some((row, _)) = tables.rows.iter_mut().find(|(c, _)| same(c)) else {
            return Ok(false);
        };
        if row.status != Status::Active || row.version != conn.version {
            return Ok(false);
        }
        row.status = Status::NeedsReauth;
        tables.events.push(event.clone());
        Ok(true)
    }
}
