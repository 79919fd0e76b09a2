//! [`AnyStore`]: the backend chosen at run time (`--store`), behind one type.
//!
//! The server and the command-line tools hold an `AnyStore`, so that every caller written
//! against [`EventStore`] works on either backend unchanged. What only the embedded backend
//! has (signed checkpoints, Merkle proofs, folder backups) is reached through
//! [`AnyStore::sled`], which is `None` on PostgreSQL.

use std::sync::Arc;

use crate::error::{AppendError, Result};
use crate::keys::KeyStore;
use crate::model::{AppendMeta, CommandId, Record, RecordRef, Seq, StreamId, Version};
use crate::pg_store::{PgStore, PgSubscription};
use crate::sled_store::{SledStore, SledSubscription};
use crate::store::{Appended, CommandOutcome, EventStore, Head, PendingAppend, StreamAppend, Subscription};

/// Either backend. Cheap to clone.
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// The embedded sled store (one node).
    Sled(SledStore),
    /// The PostgreSQL store (one or several nodes).
    Postgres(PgStore),
}

/// A subscription of either backend.
#[derive(Debug)]
pub enum AnySubscription {
    /// On sled.
    Sled(SledSubscription),
    /// On PostgreSQL.
    Postgres(PgSubscription),
}

/// Runs `$body` with `$s` bound to the backend inside `$store`.
macro_rules! either {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            AnyStore::Sled($s) => $body,
            AnyStore::Postgres($s) => $body,
        }
    };
}

impl AnyStore {
    /// The embedded store, if that is the backend.
    #[must_use]
    pub fn sled(&self) -> Option<&SledStore> {
        match self {
            AnyStore::Sled(store) => Some(store),
            AnyStore::Postgres(_) => None,
        }
    }

    /// After an erasure destroyed `ids` in this server's key store: on PostgreSQL, the keys'
    /// shared rows become tombstones ([`PgStore::share_erasure`]); nothing to do on sled.
    ///
    /// # Errors
    /// [`crate::Error::Database`].
    pub async fn share_erasure(&self, ids: &[crate::keys::KeyId]) -> Result<()> {
        match self {
            AnyStore::Sled(_) => Ok(()),
            AnyStore::Postgres(store) => store.share_erasure(ids).await,
        }
    }

    /// On PostgreSQL, the setup lock and the committed head ([`PgStore::setup_lock`]); on
    /// sled (one server per folder), none.
    ///
    /// # Errors
    /// [`crate::Error::Database`], [`crate::Error::Unavailable`].
    pub async fn setup_lock(&self) -> Result<Option<(crate::SetupLock, Seq)>> {
        match self {
            AnyStore::Sled(_) => Ok(None),
            AnyStore::Postgres(store) => store.setup_lock().await.map(Some),
        }
    }

    /// Whether the store can be reached now: always on sled; on PostgreSQL, whether the
    /// database answered the last look at the log's head ([`PgStore::reachable`]).
    #[must_use]
    pub fn reachable(&self) -> bool {
        match self {
            AnyStore::Sled(_) => true,
            AnyStore::Postgres(store) => store.reachable(),
        }
    }

    /// The log's head as committed by every writer: on the embedded store, this store's head;
    /// on PostgreSQL, read from the database ([`PgStore::committed_head`]).
    ///
    /// # Errors
    /// [`crate::Error::Unavailable`], [`crate::Error::Database`] on PostgreSQL.
    pub async fn committed_head(&self) -> Result<Seq> {
        match self {
            AnyStore::Sled(store) => Ok(store.head().seq),
            AnyStore::Postgres(store) => store.committed_head().await,
        }
    }

    /// Whether other processes may append to this log: on PostgreSQL, other servers; the
    /// embedded store has one writer, this process.
    #[must_use]
    pub fn several_writers(&self) -> bool {
        matches!(self, AnyStore::Postgres(_))
    }

    /// Why the store refuses appends, if it does ([`SledStore::refusing_appends`],
    /// [`PgStore::refusing_appends`]).
    #[must_use]
    pub fn refusing_appends(&self) -> Option<String> {
        match self {
            AnyStore::Sled(store) => store.refusing_appends(),
            AnyStore::Postgres(store) => store.refusing_appends(),
        }
    }
}

impl Subscription for AnySubscription {
    async fn next(&mut self) -> Option<Result<Record>> {
        match self {
            AnySubscription::Sled(feed) => feed.next().await,
            AnySubscription::Postgres(feed) => feed.next().await,
        }
    }
}

impl EventStore for AnyStore {
    type Subscription = AnySubscription;

    fn keys(&self) -> Option<&Arc<KeyStore>> {
        either!(self, s => s.keys())
    }

    async fn append_many(&self, appends: Vec<StreamAppend>, meta: AppendMeta) -> Result<Vec<Appended>, AppendError> {
        either!(self, s => s.append_many(appends, meta).await)
    }

    async fn submit_many(&self, appends: Vec<StreamAppend>, meta: AppendMeta) -> Result<PendingAppend, AppendError> {
        either!(self, s => s.submit_many(appends, meta).await)
    }

    async fn command_outcome(&self, command_id: CommandId) -> Result<Option<CommandOutcome>> {
        either!(self, s => s.command_outcome(command_id).await)
    }

    async fn read_all(&self, from: Seq, max: usize) -> Result<Vec<Record>> {
        either!(self, s => s.read_all(from, max).await)
    }

    async fn read_all_with<T, F>(&self, from: Seq, max: usize, out: Vec<T>, each: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: FnMut(RecordRef<'_>) -> T + Send + 'static,
    {
        either!(self, s => s.read_all_with(from, max, out, each).await)
    }

    async fn read_stream(&self, stream: &StreamId, from: Version, max: usize) -> Result<Vec<Record>> {
        either!(self, s => s.read_stream(stream, from, max).await)
    }

    fn head(&self) -> Head {
        either!(self, s => s.head())
    }

    fn subscribe(&self, from: Seq) -> AnySubscription {
        match self {
            AnyStore::Sled(s) => AnySubscription::Sled(s.subscribe(from)),
            AnyStore::Postgres(s) => AnySubscription::Postgres(s.subscribe(from)),
        }
    }
}

impl From<SledStore> for AnyStore {
    fn from(store: SledStore) -> AnyStore {
        AnyStore::Sled(store)
    }
}

impl From<PgStore> for AnyStore {
    fn from(store: PgStore) -> AnyStore {
        AnyStore::Postgres(store)
    }
}
