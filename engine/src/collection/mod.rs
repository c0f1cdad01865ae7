//! A collection: upserts and deletes by u64 id with payloads, made
//! durable by the WAL, searchable at once through the fresh index, folded
//! into immutable disk segments by flushes, and recovered after a crash.
//!
//! Owns: the collection directory (below), the id map and tombstones, the
//! apply order of writes, the merged search over fresh and disk parts, the
//! flush/merge that writes segments, and recovery.
//!
//! ```text
//! <dir>/manifest.json        current segments, checkpoint LSN, tombstones
//! <dir>/wal/                 write-ahead log (wal.rs)
//! <dir>/seg-<lsn>/index/     a disk index (docs/format.md) whose ids are slots
//! <dir>/seg-<lsn>/records.bin  per node: slot, id, payload (crc32c at the end)
//! <dir>/seg-<lsn>/vectors.bin  per node: the f32 vector (for merges and Get)
//! <dir>/tomb-<lsn>.bin       dead slots of the segments (crc32c at the end)
//! ```
//!
//! **Slots.** Every upsert gets a slot equal to its LSN, so replaying the
//! WAL assigns the same slots again. A slot is live while the id map
//! points at it; an overwrite or a delete makes the old slot dead (a
//! tombstone), which filters it from results without touching the new
//! version. Segments keep dead slots until a merge drops them.
//!
//! **Order and read-your-writes.** A write is appended to the WAL (durable
//! under the default sync policy, group-committed with concurrent writes),
//! then applied to the in-RAM state strictly in LSN order, and only then
//! acknowledged: every search or get that starts after the
//! acknowledgement sees it.
//!
//! **Flush.** The fresh index is frozen (new writes go to a new one and
//! searches read both), its live vectors are built into a new segment
//! directory under a temporary name, every file is fsynced, the directory
//! renamed, and the manifest switched atomically (temporary file, fsync,
//! rename, fsync of the directory) with the checkpoint LSN. When the
//! segment count would pass `max_segments`, the flush instead merges every
//! segment's live vectors with the frozen ones into one new segment (PQ
//! retrained on the current data). WAL segments wholly before the
//! checkpoint are then deleted. A retired segment's files are deleted
//! when the last search holding it lets go.
//!
//! **Backups** (`backup.rs`, `restore.rs`): the files of one consistent
//! state at LSN S, taken while the collection serves (segments
//! hard-linked, the log after the checkpoint copied), checked, and
//! restored as a new collection directory whose recovery replays the
//! copied log up to S.
//!
//! **Recovery.** Open the manifest, load its segments and tombstones, then
//! replay the WAL from the checkpoint LSN + 1 (the WAL cuts a torn tail
//! and refuses a corrupt record before it). Leftovers of an interrupted
//! flush (temporary or unreferenced segment directories, stale tombstone
//! files) are removed.

mod apply;
mod backup;
mod backup_desc;
#[cfg(test)]
mod backup_tests;
mod bulk;
#[cfg(test)]
mod cancel_tests;
mod flush;
mod manifest;
mod op;
mod query;
mod recovery;
mod replica;
#[cfg(test)]
mod replica_tests;
mod restore;
mod segment;
mod ship;
mod snapshot;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;

pub use backup::{BackupError, BackupInfo, Placement};
pub use backup_desc::{
    backup_path_kind, BackupDescriptor, PathKind, DESCRIPTOR_FILE, DESCRIPTOR_MAGIC, DESCRIPTOR_VERSION,
};
pub use bulk::BulkReport;
pub use flush::FlushReport;
pub use manifest::{Manifest, MANIFEST_FILE, MANIFEST_VERSION};
pub use op::Op;
pub use query::{CollectionResult, CollectionSearcher};
pub use recovery::OpenReport;
pub use replica::{CommitGate, GateError};
pub use restore::{read_descriptor, restore_backup, verify_backup, BackupReport, RestoreReport};
pub use segment::{decode_records, decode_tombstones, encode_records, encode_tombstones, Segment};
pub use ship::install_segment;
pub use snapshot::{finish_install, install_snapshot, needs_snapshot, FetchFn, Snapshot, SnapshotFile, NEEDS_SNAPSHOT};

use crate::graph::{FreshIndex, InsertPlan};
use crate::index::{IndexBuildOptions, IndexError};
use crate::io::IoBackend;
use crate::storage::Vfs;
use crate::wal::{Lsn, Wal, WalError, WalOptions};
use crate::Metric;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, RwLock};

/// Errors of a collection.
#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    /// The caller's input is wrong (names the field and the limit).
    #[error("{0}")]
    InvalidArgument(String),
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A file operation failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// OS error.
        source: std::io::Error,
    },
    /// A segment's index failed to build or open.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A file is damaged.
    #[error("{0}")]
    Corrupt(String),
    /// The manifest was written by another format version, or for another
    /// collection shape, than the one being opened.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestMismatch),
    /// The WAL ends before the manifest's checkpoint: records the segments
    /// already hold are missing from the log (fsynced bytes were lost).
    /// Opening would hand out their LSNs, and so their slots, again.
    #[error("{path}: the write-ahead log ends at LSN {last_lsn}, before the manifest's checkpoint LSN {checkpoint}; fsynced log records were lost (storage damage). Refusing to open: new writes would reuse LSNs and slots the segments already hold. Restore this collection from the standby or a snapshot")]
    WalBehindCheckpoint {
        /// The newest WAL file.
        path: PathBuf,
        /// The last LSN found in the log.
        last_lsn: Lsn,
        /// The manifest's checkpoint LSN.
        checkpoint: Lsn,
    },
    /// A vector or query is not acceptable.
    #[error("{}", .error.describe(.field))]
    Vector {
        /// What it was ("vector for id 7", "query").
        field: String,
        /// Why.
        error: crate::vector::VectorError,
    },
    /// The disk search of a segment failed.
    #[error(transparent)]
    Search(#[from] crate::search::SearchError),
    /// The commit gate refused a logged write (see [`CommitGate`]): it is
    /// in the log, not applied, and nothing later is applied until the
    /// collection is reopened.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// Cutting the log after `lsn` would reach into what the segments
    /// already hold (the manifest's checkpoint): the collection must be
    /// replaced from a snapshot instead.
    #[error("{dir}: cannot cut the write-ahead log after LSN {lsn}: segments already hold records up to the checkpoint LSN {checkpoint}; this collection needs a snapshot from the primary")]
    NeedsSnapshot {
        /// The collection directory.
        dir: PathBuf,
        /// Where the cut was asked for.
        lsn: Lsn,
        /// The manifest's checkpoint.
        checkpoint: Lsn,
    },
}

type Result<T> = std::result::Result<T, CollectionError>;

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> CollectionError + 'a {
    move |source| CollectionError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Settings of a collection.
#[derive(Clone, Debug)]
pub struct CollectionOptions {
    /// Vector dimension.
    pub dim: usize,
    /// Metric.
    pub metric: Metric,
    /// How segments are built (metric must match).
    pub build: IndexBuildOptions,
    /// Fresh graph degree.
    pub fresh_r: usize,
    /// Fresh graph insert list size.
    pub fresh_l: usize,
    /// Fresh nodes that make [`Collection::needs_flush`] true.
    pub flush_at: usize,
    /// Most disk segments a search visits; a flush past it merges.
    pub max_segments: usize,
    /// Write-ahead log settings.
    pub wal: WalOptions,
    /// Largest payload, bytes.
    pub max_payload: usize,
    /// Reader backend for searches.
    pub io: IoBackend,
    /// Split a search's list size L over the fresh indexes and segments in
    /// proportion to the vectors each holds (never below k), instead of
    /// searching every one with the full L. See
    /// [`Collection::search_stats`].
    pub split_l: bool,
    /// Segments of at most this many nodes are read whole into RAM (the
    /// index's node cache) when opened, so searching them costs no disk
    /// reads; 0 keeps every segment on disk. A flush of a small fresh index
    /// makes such a segment: it then costs less RAM than the fresh index it
    /// replaces (stored vectors, not f32), and the one large merged segment
    /// stays the only one a search reads from disk.
    pub ram_segment_nodes: usize,
    /// Larger segments keep this many of their nodes (breadth-first from
    /// the entry points) in a hot-node cache; 0 = none.
    pub cache_nodes: usize,
    /// A sync primary's setting: when opened, records after the lowest
    /// registered follower's acknowledged LSN are replayed into the
    /// pending map, not applied (they were never acknowledged to a client
    /// and a failover may lose them), until [`Collection::apply_through`]
    /// reaches them. With no follower registered, everything is applied.
    pub hold_unacked: bool,
}

/// Where a live slot's vector is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// Node in the active fresh index.
    Active(u32),
    /// Node in the frozen fresh index (being flushed).
    Frozen(u32),
    /// Row in a segment (index into `State::segments` by name).
    Segment(u32),
}

#[derive(Clone, Debug)]
struct Entry {
    id: u64,
    payload: Arc<[u8]>,
    loc: Loc,
}

struct State {
    active: FreshIndex,
    frozen: Option<FreshIndex>,
    segments: Vec<Arc<Segment>>,
    /// Live slots.
    slots: HashMap<u64, Entry>,
    /// id → live slot.
    ids: HashMap<u64, u64>,
}

impl State {
    fn kill(&mut self, id: u64) {
        if let Some(s) = self.ids.remove(&id) {
            self.slots.remove(&s);
        }
    }
}

/// RAM a collection holds, bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct CollectionRam {
    /// The fresh (and frozen) in-RAM indexes at full precision.
    pub fresh: usize,
    /// The disk segments' RAM parts (PQ codes and pivots, navigation
    /// tier, cache), summed.
    pub segments: crate::index::RamUsage,
    /// The id map, slot table, segment row maps and payloads.
    pub ids: usize,
}

impl CollectionRam {
    /// Sum of the parts.
    pub fn total(&self) -> usize {
        self.fresh + self.segments.total() as usize + self.ids
    }
}

/// A collection: disk segments, a fresh index and a write-ahead log.
pub struct Collection {
    fs: Arc<dyn Vfs>,
    dir: PathBuf,
    opts: CollectionOptions,
    wal: Wal,
    state: RwLock<State>,
    /// The applied LSN and the records logged but not applied
    /// (`apply.rs`).
    applied: Mutex<apply::Applier>,
    applied_cv: Condvar,
    broken: AtomicBool,
    /// Held by the one flush, bulk load switch or adoption at a time
    /// (each changes the segment list); the manifest generation.
    flush_lock: Mutex<u64>,
    /// The next bulk load's number (one more than any bulk slot in the
    /// segments or the replayed log).
    next_bulk: std::sync::atomic::AtomicU64,
    /// What a logged write waits for before it is applied (`replica.rs`);
    /// none: only the log's own durability.
    gate: RwLock<Option<Arc<dyn CommitGate>>>,
}

/// The error every write gets once the log was poisoned under it.
fn broken() -> CollectionError {
    CollectionError::Wal(WalError::Poisoned(
        "an earlier write failed to sync, or the commit gate refused it".into(),
    ))
}

impl Collection {
    /// Check one write before anything is logged.
    fn validate(&self, op: &Op) -> Result<()> {
        if let Op::AddSegment { name } = op {
            return Err(CollectionError::InvalidArgument(format!(
                "segment {name:?} cannot be added by a write (use bulk_load)"
            )));
        }
        if let Op::Epoch { epoch } = op {
            return Err(CollectionError::InvalidArgument(format!(
                "epoch {epoch} cannot begin by a write (use begin_epoch)"
            )));
        }
        if let Op::Upsert { id, vector, payload } = op {
            crate::vector::check_vector(self.opts.dim, vector).map_err(|error| CollectionError::Vector {
                field: format!("vector for id {id}"),
                error,
            })?;
            if payload.len() > self.opts.max_payload {
                return Err(CollectionError::InvalidArgument(format!(
                    "payload for id {id} is {} bytes; the limit is {}",
                    payload.len(),
                    self.opts.max_payload
                )));
            }
        }
        Ok(())
    }

    /// Insert or replace one vector.
    pub fn upsert(&self, id: u64, vector: Vec<f32>, payload: Vec<u8>) -> Result<Lsn> {
        self.write(vec![Op::Upsert { id, vector, payload }])
    }

    /// Delete one id.
    pub fn delete(&self, id: u64) -> Result<Lsn> {
        self.write(vec![Op::Delete { id }])
    }

    /// Vector and payload of `id`, if live.
    pub fn get(&self, id: u64) -> Result<Option<(Vec<f32>, Vec<u8>)>> {
        let st = self.state.read().expect("lock");
        let Some(&slot) = st.ids.get(&id) else { return Ok(None) };
        let e = &st.slots[&slot];
        let v = match e.loc {
            Loc::Active(i) => st.active.vector(i as usize).to_vec(),
            Loc::Frozen(i) => st.frozen.as_ref().expect("frozen").vector(i as usize).to_vec(),
            Loc::Segment(k) => {
                let seg = &st.segments[k as usize];
                seg.vector(self.opts.dim, seg.rows[&slot])?
            }
        };
        Ok(Some((v, e.payload.to_vec())))
    }

    /// The payloads of `ids` (none for an id not in the collection), in
    /// order, from RAM under one read lock.
    pub fn payloads(&self, ids: &[u64]) -> Vec<Option<Arc<[u8]>>> {
        let st = self.state.read().expect("lock");
        ids.iter()
            .map(|id| st.ids.get(id).map(|slot| st.slots[slot].payload.clone()))
            .collect()
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.state.read().expect("lock").slots.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Disk segments now.
    pub fn segments(&self) -> usize {
        self.state.read().expect("lock").segments.len()
    }

    /// Nodes in the active fresh index.
    pub fn fresh_len(&self) -> usize {
        self.state.read().expect("lock").active.len()
    }

    /// Whether the fresh index has passed `flush_at`.
    pub fn needs_flush(&self) -> bool {
        self.fresh_len() >= self.opts.flush_at
    }

    /// The write-ahead log (for replication readers and retention).
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Bytes on disk: the collection directory (manifest, WAL, segments,
    /// tombstones) and any adopted index directory outside it.
    pub fn disk_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => std::fs::read_dir(p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| walk(&e.path()))
                    .sum(),
                Ok(m) => m.len(),
                Err(_) => 0,
            }
        }
        let adopted: u64 = {
            let st = self.state.read().expect("lock");
            st.segments
                .iter()
                .filter(|s| s.name.starts_with("../"))
                .map(|s| s.dir.clone())
                .collect::<Vec<_>>()
        }
        .iter()
        .map(|d| walk(d))
        .sum();
        walk(&self.dir) + adopted
    }

    /// The settings it was opened with.
    pub fn options(&self) -> &CollectionOptions {
        &self.opts
    }

    /// RAM held, bytes: the fresh indexes, the segments' PQ codes,
    /// navigation tiers and caches, and the id map with payloads.
    pub fn ram(&self) -> CollectionRam {
        let st = self.state.read().expect("lock");
        let fresh = st.active.ram_bytes() + st.frozen.as_ref().map_or(0, |f| f.ram_bytes());
        let mut segments = crate::index::RamUsage::default();
        let mut rows = 0;
        for seg in &st.segments {
            segments += seg.index.ram();
            rows += seg.rows.capacity() * 16;
        }
        let ids = st.ids.capacity() * 24
            + st.slots.capacity() * 48
            + rows
            + st.slots.values().map(|e| e.payload.len()).sum::<usize>();
        CollectionRam { fresh, segments, ids }
    }
}

/// Apply one logged operation with slot = its LSN; an upsert uses `plan`
/// if one was made on the unchanged fresh index.
fn apply(st: &mut State, lsn: Lsn, op: Op, plan: Option<InsertPlan>) {
    match op {
        Op::Upsert { id, vector, payload } => {
            st.kill(id);
            let node = st.active.len() as u32;
            match plan {
                Some(p) => st.active.commit(lsn, &vector, p),
                None => st.active.insert(lsn, &vector),
            }
            st.ids.insert(id, lsn);
            st.slots.insert(
                lsn,
                Entry {
                    id,
                    payload: payload.into(),
                    loc: Loc::Active(node),
                },
            );
        }
        Op::Delete { id } => st.kill(id),
        Op::AddSegment { .. } => unreachable!("write refuses it; bulk_load and replay add segments"),
        Op::Epoch { .. } => {}
    }
}

/// A segment joins the state (bulk load, adoption, replay): each of its
/// ids replaces whatever version was live. Returns how many it replaced.
fn apply_segment(st: &mut State, seg: Arc<Segment>, records: Vec<(u64, u64, Vec<u8>)>) -> usize {
    let k = st.segments.len() as u32;
    let mut replaced = 0;
    for (slot, id, payload) in records {
        if let Some(old) = st.ids.insert(id, slot) {
            st.slots.remove(&old);
            replaced += 1;
        }
        st.slots.insert(
            slot,
            Entry {
                id,
                payload: payload.into(),
                loc: Loc::Segment(k),
            },
        );
    }
    st.segments.push(seg);
    replaced
}
