//! The embedded store: the contract on one redb file, for a node with no
//! etcd.
//!
//! Tables: `meta` (format, revision, compacted), `kv` (each key's current
//! value and revisions) and `log` (every event by revision, with the
//! key's previous value). A listing at an older revision is the current
//! state with the log's later events undone; a watch replays the log,
//! then follows new commits. Only the last [`HISTORY_REVISIONS`]
//! revisions are kept; older ones are compacted, as an etcd cluster
//! compacts its history.
//!
//! A transaction is acknowledged after redb's commit, which fsyncs
//! (`Durability::Immediate`, its default): a killed process loses nothing
//! acknowledged. The file is opened, never created over: a file that is
//! not a redb database, is locked by another process, or has a newer
//! format is refused and left as it is.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc};

use crate::{
    Compare, Event, KeyValue, Listing, Op, Revision, Store, StoreError, Txn, TxnOutcome, Watch,
};

/// Revisions of history kept for listings and watches at older revisions.
pub const HISTORY_REVISIONS: u64 = 10_000;

/// This build's layout of the file.
const FORMAT: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// key → (create_revision, mod_revision, version, value).
const KV: TableDefinition<&str, (u64, u64, u64, &[u8])> = TableDefinition::new("kv");
/// (revision, index within it) → an encoded event.
const LOG: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("log");

/// The embedded store, shared by cloning.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: Database,
    /// Revisions of history kept.
    history: u64,
    /// Held across a write's commit and its broadcast, so that watchers
    /// see commits in revision order.
    writer: Mutex<()>,
    committed: broadcast::Sender<Arc<Vec<Event>>>,
}

impl EmbeddedStore {
    /// Opens the store at `path`, creating it if the file does not exist
    /// or is empty.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_history(path, HISTORY_REVISIONS)
    }

    /// [`Self::open`], keeping `history` revisions (at least 1) of history.
    pub fn open_with_history(path: &Path, history: u64) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| open_error(path, e))?;
        let store = Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                db,
                history: history.max(1),
                writer: Mutex::new(()),
                committed: broadcast::channel(1024).0,
            }),
        };
        store.check_format()?;
        Ok(store)
    }

    /// Writes this build's format into a new file, or refuses a newer one.
    fn check_format(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let txn = inner.db.begin_write().map_err(|e| inner.io("begin", e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| inner.io("open meta", e))?;
            let found = meta
                .get("format")
                .map_err(|e| inner.io("read format", e))?
                .map(|v| v.value());
            match found {
                None => {
                    meta.insert("format", FORMAT)
                        .map_err(|e| inner.io("write format", e))?;
                }
                Some(found) if found > FORMAT => {
                    return Err(StoreError::NewerFormat {
                        path: inner.path.clone(),
                        found,
                        known: FORMAT,
                    });
                }
                Some(_) => {}
            }
            txn.open_table(KV).map_err(|e| inner.io("open kv", e))?;
            txn.open_table(LOG).map_err(|e| inner.io("open log", e))?;
        }
        txn.commit().map_err(|e| inner.io("commit", e))
    }

    /// The file this store is in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

fn open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    let path = path.to_owned();
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path },
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => {
            StoreError::Corrupt { path, reason }
        }
        // redb says a file that is not its own is invalid data.
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Corrupt {
                path,
                reason: io.to_string(),
            }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => StoreError::Io {
            path,
            op: "open",
            reason: io.to_string(),
        },
        other => StoreError::Corrupt {
            path,
            reason: other.to_string(),
        },
    }
}

impl Inner {
    fn io(&self, op: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            op,
            reason: e.to_string(),
        }
    }

    fn meta(
        &self,
        table: &impl ReadableTable<&'static str, u64>,
        name: &str,
    ) -> Result<u64, StoreError> {
        Ok(table
            .get(name)
            .map_err(|e| self.io("read meta", e))?
            .map_or(0, |v| v.value()))
    }

    fn revisions(&self) -> Result<(Revision, Revision), StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io("begin", e))?;
        let meta = txn.open_table(META).map_err(|e| self.io("open meta", e))?;
        Ok((
            self.meta(&meta, "revision")?,
            self.meta(&meta, "compacted")?,
        ))
    }

    fn list(&self, prefix: &str, at: Option<Revision>) -> Result<Listing, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io("begin", e))?;
        let meta = txn.open_table(META).map_err(|e| self.io("open meta", e))?;
        let current = self.meta(&meta, "revision")?;
        let compacted = self.meta(&meta, "compacted")?;
        let at = at.unwrap_or(current);
        if at > current {
            return Err(StoreError::FutureRevision {
                requested: at,
                current,
            });
        }
        if at < compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted,
            });
        }
        let kv = txn.open_table(KV).map_err(|e| self.io("open kv", e))?;
        let mut state = BTreeMap::new();
        for entry in kv.range(prefix..).map_err(|e| self.io("scan kv", e))? {
            let (key, value) = entry.map_err(|e| self.io("scan kv", e))?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            state.insert(key.to_owned(), row_kv(key, value.value()));
        }
        if at < current {
            // Undo, newest first, what happened after `at`.
            let log = txn.open_table(LOG).map_err(|e| self.io("open log", e))?;
            let later = log
                .range((at + 1, 0)..)
                .map_err(|e| self.io("scan log", e))?;
            for entry in later.rev() {
                let (_, event) = entry.map_err(|e| self.io("scan log", e))?;
                let event = codec::decode(event.value()).map_err(|reason| StoreError::Corrupt {
                    path: self.path.clone(),
                    reason,
                })?;
                if !event.key().starts_with(prefix) {
                    continue;
                }
                let key = event.key().to_owned();
                let prev = match event {
                    Event::Put { prev, .. } => prev,
                    Event::Delete { prev, .. } => Some(prev),
                };
                match prev {
                    Some(prev) => state.insert(key, prev),
                    None => state.remove(&key),
                };
            }
        }
        Ok(Listing {
            revision: at,
            kvs: state.into_values().collect(),
        })
    }

    /// Events of revisions `from..` under `prefix`, from the log.
    fn history(&self, prefix: &str, from: Revision) -> Result<Vec<Event>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io("begin", e))?;
        let meta = txn.open_table(META).map_err(|e| self.io("open meta", e))?;
        let compacted = self.meta(&meta, "compacted")?;
        if from <= compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted: compacted + 1,
            });
        }
        let log = txn.open_table(LOG).map_err(|e| self.io("open log", e))?;
        let mut events = Vec::new();
        for entry in log.range((from, 0)..).map_err(|e| self.io("scan log", e))? {
            let (_, event) = entry.map_err(|e| self.io("scan log", e))?;
            let event = codec::decode(event.value()).map_err(|reason| StoreError::Corrupt {
                path: self.path.clone(),
                reason,
            })?;
            if event.key().starts_with(prefix) {
                events.push(event);
            }
        }
        Ok(events)
    }

    fn txn(&self, txn: &Txn) -> Result<TxnOutcome, StoreError> {
        txn.check_limits()?;
        let _writer = self.writer.lock().map_err(|_| StoreError::Closed)?;
        let write = self.db.begin_write().map_err(|e| self.io("begin", e))?;
        let events = {
            let mut meta = write
                .open_table(META)
                .map_err(|e| self.io("open meta", e))?;
            let mut kv = write.open_table(KV).map_err(|e| self.io("open kv", e))?;
            let current = self.meta(&meta, "revision")?;
            for Compare { key, mod_revision } in &txn.compares {
                let found = kv
                    .get(key.as_str())
                    .map_err(|e| self.io("read kv", e))?
                    .map_or(0, |v| v.value().1);
                if found != *mod_revision {
                    return Ok(TxnOutcome {
                        succeeded: false,
                        revision: current,
                    });
                }
            }
            let revision = current + 1;
            let mut events = Vec::new();
            for op in &txn.ops {
                let key = match op {
                    Op::Put { key, .. } | Op::Delete { key } => key.as_str(),
                };
                let prev = kv
                    .get(key)
                    .map_err(|e| self.io("read kv", e))?
                    .map(|v| row_kv(key, v.value()));
                match op {
                    Op::Put { value, .. } => {
                        let kv_new = KeyValue {
                            key: key.to_owned(),
                            value: value.clone(),
                            create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                            mod_revision: revision,
                            version: prev.as_ref().map_or(1, |p| p.version + 1),
                        };
                        kv.insert(
                            key,
                            (
                                kv_new.create_revision,
                                revision,
                                kv_new.version,
                                value.as_slice(),
                            ),
                        )
                        .map_err(|e| self.io("write kv", e))?;
                        events.push(Event::Put { kv: kv_new, prev });
                    }
                    Op::Delete { .. } => {
                        if let Some(prev) = prev {
                            kv.remove(key).map_err(|e| self.io("write kv", e))?;
                            events.push(Event::Delete {
                                key: key.to_owned(),
                                revision,
                                prev,
                            });
                        }
                    }
                }
            }
            if events.is_empty() {
                // Deletes of absent keys change nothing, as in etcd.
                return Ok(TxnOutcome {
                    succeeded: true,
                    revision: current,
                });
            }
            let mut log = write.open_table(LOG).map_err(|e| self.io("open log", e))?;
            for (i, event) in events.iter().enumerate() {
                log.insert((revision, i as u32), codec::encode(event).as_slice())
                    .map_err(|e| self.io("write log", e))?;
            }
            meta.insert("revision", revision)
                .map_err(|e| self.io("write meta", e))?;
            if revision > self.history {
                let compacted = revision - self.history;
                if compacted > self.meta(&meta, "compacted")? {
                    log.retain_in((0, 0)..(compacted + 1, 0), |_, _| false)
                        .map_err(|e| self.io("compact log", e))?;
                    meta.insert("compacted", compacted)
                        .map_err(|e| self.io("write meta", e))?;
                }
            }
            events
        };
        write.commit().map_err(|e| self.io("commit", e))?;
        let revision = events[0].revision();
        // No watcher is no error.
        let _ = self.committed.send(Arc::new(events));
        Ok(TxnOutcome {
            succeeded: true,
            revision,
        })
    }
}

/// A `kv` row as a [`KeyValue`].
fn row_kv(
    key: &str,
    (create_revision, mod_revision, version, value): (u64, u64, u64, &[u8]),
) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision,
        mod_revision,
        version,
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    inner: &Arc<Inner>,
    work: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let inner = Arc::clone(inner);
    tokio::task::spawn_blocking(move || work(&inner))
        .await
        .map_err(|_| StoreError::Closed)?
}

impl Store for EmbeddedStore {
    async fn revision(&self) -> Result<Revision, StoreError> {
        blocking(&self.inner, |inner| Ok(inner.revisions()?.0)).await
    }

    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<Listing, StoreError> {
        let prefix = prefix.to_owned();
        blocking(&self.inner, move |inner| inner.list(&prefix, at)).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        // Subscribe before reading the log, so nothing committed between
        // the two is missed; what both deliver is skipped by revision.
        let mut live = self.inner.committed.subscribe();
        let (current, _) = blocking(&self.inner, |inner| inner.revisions()).await?;
        let from = if from == 0 { current + 1 } else { from };
        let prefix = prefix.to_owned();
        let replay = {
            let prefix = prefix.clone();
            blocking(&self.inner, move |inner| inner.history(&prefix, from)).await?
        };
        let (tx, rx) = mpsc::channel(256);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let mut next = from;
            for event in replay {
                next = event.revision() + 1;
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            loop {
                let batch = match live.recv().await {
                    Ok(batch) => batch,
                    Err(broadcast::error::RecvError::Closed) => return,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind the broadcast: catch up from the log.
                        let prefix = prefix.clone();
                        let caught =
                            blocking(&inner, move |inner| inner.history(&prefix, next)).await;
                        match caught {
                            Ok(events) => Arc::new(events),
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        }
                    }
                };
                for event in batch.iter() {
                    if event.revision() < next || !event.key().starts_with(&prefix) {
                        continue;
                    }
                    if tx.send(Ok(event.clone())).await.is_err() {
                        return;
                    }
                }
                if let Some(last) = batch.last() {
                    next = next.max(last.revision() + 1);
                }
            }
        });
        Ok(Watch::new(rx))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        blocking(&self.inner, move |inner| inner.txn(&txn)).await
    }
}

/// The log's encoding of an event: little-endian integers and
/// length-prefixed bytes.
mod codec {
    use crate::{Event, KeyValue};

    pub fn encode(event: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        let (tag, kv, prev) = match event {
            Event::Put { kv, prev } => (0u8, Some(kv), prev.as_ref()),
            Event::Delete { prev, .. } => (1u8, None, Some(prev)),
        };
        out.push(tag);
        bytes(&mut out, event.key().as_bytes());
        out.extend_from_slice(&event.revision().to_le_bytes());
        for kv in [kv, prev] {
            match kv {
                None => out.push(0),
                Some(kv) => {
                    out.push(1);
                    out.extend_from_slice(&kv.create_revision.to_le_bytes());
                    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
                    out.extend_from_slice(&kv.version.to_le_bytes());
                    bytes(&mut out, &kv.value);
                }
            }
        }
        out
    }

    pub fn decode(mut input: &[u8]) -> Result<Event, String> {
        let tag = take(&mut input, 1)?[0];
        let key = String::from_utf8(take_bytes(&mut input)?.to_vec())
            .map_err(|_| "a log key is not UTF-8".to_owned())?;
        let revision = u64_le(&mut input)?;
        let mut kvs = [None, None];
        for slot in &mut kvs {
            if take(&mut input, 1)?[0] == 1 {
                *slot = Some(KeyValue {
                    key: key.clone(),
                    create_revision: u64_le(&mut input)?,
                    mod_revision: u64_le(&mut input)?,
                    version: u64_le(&mut input)?,
                    value: take_bytes(&mut input)?.to_vec(),
                });
            }
        }
        let [kv, prev] = kvs;
        match (tag, kv, prev) {
            (0, Some(kv), prev) => Ok(Event::Put { kv, prev }),
            (1, None, Some(prev)) => Ok(Event::Delete {
                key,
                revision,
                prev,
            }),
            _ => Err(format!("a log event of revision {revision} is malformed")),
        }
    }

    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    }

    fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if input.len() < n {
            return Err("a log event is cut short".to_owned());
        }
        let (head, tail) = input.split_at(n);
        *input = tail;
        Ok(head)
    }

    fn u64_le(input: &mut &[u8]) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            take(input, 8)?.try_into().expect("8 bytes"),
        ))
    }

    fn take_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let n = u32::from_le_bytes(take(input, 4)?.try_into().expect("4 bytes"));
        take(input, n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_of_a_newer_format_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        drop(EmbeddedStore::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("format", FORMAT + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = EmbeddedStore::open(&path).err().expect("refused");
        assert_eq!(
            err,
            StoreError::NewerFormat {
                path: path.clone(),
                found: FORMAT + 1,
                known: FORMAT
            }
        );
        assert!(
            err.to_string().contains("run the newer lb-controller"),
            "{err}"
        );
        // Left as it was: the newer format still reads as written.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let format = txn
            .open_table(META)
            .unwrap()
            .get("format")
            .unwrap()
            .unwrap()
            .value();
        assert_eq!(format, FORMAT + 1);
    }

    #[test]
    fn log_events_round_trip_and_damage_is_reported() {
        let kv = |value: &str, rev| KeyValue {
            key: "/k".into(),
            value: value.into(),
            create_revision: 1,
            mod_revision: rev,
            version: rev,
        };
        for event in [
            Event::Put {
                kv: kv("a", 1),
                prev: None,
            },
            Event::Put {
                kv: kv("b", 2),
                prev: Some(kv("a", 1)),
            },
            Event::Delete {
                key: "/k".into(),
                revision: 3,
                prev: kv("b", 2),
            },
        ] {
            let bytes = codec::encode(&event);
            assert_eq!(codec::decode(&bytes).unwrap(), event);
            assert!(codec::decode(&bytes[..bytes.len() - 1]).is_err());
        }
    }
}
