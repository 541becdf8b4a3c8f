//! What the handlers' unit tests share (feature `testing`, enabled by the
//! functions' dev-dependencies only, so never in a deployed binary): store
//! tables in memory that a test can take down, and fixtures. The key
//! service in memory is [`crate::vault::fake::FakeDataKeys`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::connection::Connection;
use crate::provider::Provider;
use crate::store::StoreError;
use crate::vault::SealedToken;

/// A store's tables in memory, shared by the handler and the test, which
/// reads them after a call and can take them down as in an outage (every
/// store call fails then). A function's test implements its store trait for
/// `InMemory<ItsTables>`.
pub struct InMemory<T> {
    tables: Arc<Mutex<T>>,
    down: Arc<AtomicBool>,
}

impl<T> Clone for InMemory<T> {
    fn clone(&self) -> Self {
        Self {
            tables: self.tables.clone(),
            down: self.down.clone(),
        }
    }
}

impl<T: Default> Default for InMemory<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> InMemory<T> {
    pub fn new(tables: T) -> Self {
        Self {
            tables: Arc::new(Mutex::new(tables)),
            down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The tables, down or not (a test's view).
    pub fn tables(&self) -> MutexGuard<'_, T> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the tables down (or brings them back).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The tables, unless they are down (a store call's view).
    pub fn up(&self) -> Result<MutexGuard<'_, T>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError("the table is down".into()));
        }
        Ok(self.tables())
    }
}

/// A sealed token whose parts are placeholders: for handlers that store or
/// delete a token and never open it.
pub fn sealed_token() -> SealedToken {
    SealedToken {
        version: 1,
        key_id: "key".into(),
        wrapped_key: vec![1; 8],
        nonce: vec![2; 12],
        ciphertext: b"never shown".to_vec(),
    }
}

/// Whether `conn` is the connection of `user_id` to `account_id` through
/// `provider` (what an in-memory store looks a row up by).
pub fn is_connection(
    conn: &Connection,
    user_id: &str,
    provider: Provider,
    account_id: &str,
) -> bool {
    (
        conn.user_id.as_str(),
        conn.provider,
        conn.account_id.as_str(),
    ) == (user_id, provider, account_id)
}
