//! Data keys shared by the servers on one PostgreSQL log.
//!
//! Each server keeps its key store (`crate::keys`) in its own data folder; the keys travel
//! through the `oacis_keys` table, wrapped under the key-encryption key all servers share
//! (never in plain). A key is shared before any append sealed with it is queued, so before
//! it can be acknowledged; a server meeting a record sealed with a key it does not hold takes
//! the key from the table before handing the record to any reader. An erasure replaces the
//! key's row by a tombstone (NULL), which every server reads as "destroyed".
//!
//! Invariants: a key named by an acknowledged record is in the table (or a tombstone);
//! a server never takes back a key it destroyed; readers never see a record whose key is
//! in the table but not yet held here.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;

use super::{database, pooled, schema};
use crate::error::{Error, Result};
use crate::keys::{KeyError, KeyId, KeyState, KeyStore};
use crate::model::Record;
use crate::store::StreamAppend;

/// This server's key store and what of it is known to be in the table.
#[derive(Debug)]
pub(super) struct SharedKeys {
    pub keys: Arc<KeyStore>,
    shared: Mutex<HashSet<KeyId>>,
}

fn lock(shared: &Mutex<HashSet<KeyId>>) -> std::sync::MutexGuard<'_, HashSet<KeyId>> {
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn import(keys: &Arc<KeyStore>, entries: Vec<(KeyId, Option<Vec<u8>>)>) -> Result<usize> {
    if entries.is_empty() {
        return Ok(0);
    }
    let keys = keys.clone();
    tokio::task::spawn_blocking(move || keys.import(&entries)).await.map_err(|_| Error::Closed)?.map_err(|e| match e {
        KeyError::WrongKek { stored, given } => Error::Database(format!(
            "the servers on this database share personal-data keys wrapped by key-encryption key {stored}, \
             and this server was given {given}: start it with the same key as the others \
             (--key-file FILE or OACIS_KEY_ENCRYPTION_KEY)"
        )),
        other => Error::Database(format!("taking in shared keys: {other}")),
    })
}

fn entries(rows: &[tokio_postgres::Row]) -> Vec<(KeyId, Option<Vec<u8>>)> {
    rows.iter()
        .filter_map(|row| {
            let id: KeyId = row.get::<_, &[u8]>(0).try_into().ok()?;
            Some((id, row.get::<_, Option<Vec<u8>>>(1)))
        })
        .collect()
}

impl SharedKeys {
    /// At open: takes in every key (and tombstone) other servers shared, and shares every
    /// key held here that the table lacks, and every key destroyed here that it does not
    /// hold as a tombstone (a log migrated from a data folder, erasures included).
    pub(super) async fn open(keys: Arc<KeyStore>, pool: &Pool) -> Result<SharedKeys> {
        let client = pooled(pool).await?;
        let rows = client.query(schema::KEYS_ALL, &[]).await.map_err(database)?;
        drop(client);
        let known = entries(&rows);
        let in_table: HashSet<KeyId> = known.iter().map(|(id, _)| *id).collect();
        let tombstones: HashSet<KeyId> = known.iter().filter(|(_, r)| r.is_none()).map(|(id, _)| *id).collect();
        import(&keys, known).await?;
        let shared = SharedKeys { keys, shared: Mutex::new(in_table) };
        let local = shared.keys.key_ids();
        shared.share(pool, &local).await?;
        let destroyed: Vec<KeyId> =
            shared.keys.destroyed_ids().into_iter().filter(|id| !tombstones.contains(id)).collect();
        shared.destroyed(pool, &destroyed).await?;
        Ok(shared)
    }

    /// Shares the keys `ids` (and the keys waiting to be given out, so that a batch goes in
    /// one statement) that are not known to be in the table.
    async fn share(&self, pool: &Pool, ids: &[KeyId]) -> Result<()> {
        let missing: Vec<KeyId> = {
            let shared = lock(&self.shared);
            let waiting = self.keys.waiting_ids();
            let mut missing: Vec<KeyId> =
                ids.iter().chain(&waiting).filter(|id| !shared.contains(*id)).copied().collect();
            missing.sort_unstable();
            missing.dedup();
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        let records = self.keys.wrapped_records(&missing);
        let (ids, bytes): (Vec<&[u8]>, Vec<&[u8]>) =
            records.iter().map(|(id, record)| (id.as_slice(), record.as_slice())).unzip();
        let client = pooled(pool).await?;
        client.execute(schema::SHARE_KEYS, &[&ids, &bytes]).await.map_err(database)?;
        lock(&self.shared).extend(records.iter().map(|(id, _)| *id));
        Ok(())
    }

    /// Before an append is queued: shares the keys its sealed payloads name.
    pub(super) async fn share_used(&self, pool: &Pool, appends: &[StreamAppend]) -> Result<()> {
        let used: Vec<KeyId> = appends
            .iter()
            .flat_map(|part| &part.events)
            .flat_map(|event| crate::seal::key_ids(&event.payload))
            .collect();
        let unshared = {
            let shared = lock(&self.shared);
            used.iter().any(|id| !shared.contains(id))
        };
        if unshared {
            self.share(pool, &used).await?;
        }
        Ok(())
    }

    /// Before records reach a reader: takes in the keys they name that are not held here.
    pub(super) async fn hold_for(&self, pool: &Pool, records: &[Record]) -> Result<()> {
        let mut missing: Vec<KeyId> = records
            .iter()
            .flat_map(|record| crate::seal::key_ids(&record.payload))
            .filter(|id| matches!(self.keys.get(id), KeyState::Missing))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        let ids: Vec<&[u8]> = missing.iter().map(<[u8; 16]>::as_slice).collect();
        let client = pooled(pool).await?;
        let rows = client.query(schema::KEYS_OF, &[&ids]).await.map_err(database)?;
        drop(client);
        let found = entries(&rows);
        lock(&self.shared).extend(found.iter().map(|(id, _)| *id));
        import(&self.keys, found).await?;
        Ok(())
    }

    /// After an erasure here: the keys' rows become tombstones.
    pub(super) async fn destroyed(&self, pool: &Pool, ids: &[KeyId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<&[u8]> = ids.iter().map(<[u8; 16]>::as_slice).collect();
        let client = pooled(pool).await?;
        client.execute(schema::DESTROY_KEYS, &[&ids]).await.map_err(database)?;
        Ok(())
    }
}
