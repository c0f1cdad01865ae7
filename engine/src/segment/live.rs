//! A mutable collection: upserts and deletes by u64 id with payloads, made
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
//! **Recovery.** Open the manifest, load its segments and tombstones, then
//! replay the WAL from the checkpoint LSN + 1 (the WAL cuts a torn tail
//! and refuses a corrupt record before it). Leftovers of an interrupted
//! flush (temporary or unreferenced segment directories, stale tombstone
//! files) are removed.

use super::fresh::{FreshIndex, InsertPlan};
use super::vfs::{write_atomic, Vfs};
use super::wal::{Lsn, Wal, WalError, WalOptions};
use crate::index::{build_index, DiskIndex, IndexBuildOptions, IndexError};
use crate::io::IoBackend;
use crate::search::{QueryStats, SearchParams, Searcher};
use crate::Metric;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

/// Errors of a mutable collection.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
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
    /// A merge would not fit the memory budget.
    #[error("{0}")]
    OverBudget(String),
}

type Result<T> = std::result::Result<T, LiveError>;

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> LiveError + 'a {
    move |source| LiveError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Settings of a mutable collection.
#[derive(Clone, Debug)]
pub struct LiveOptions {
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
    /// Fresh nodes that make [`LiveCollection::needs_flush`] true.
    pub flush_at: usize,
    /// Most disk segments a search visits; a flush past it merges.
    pub max_segments: usize,
    /// Write-ahead log settings.
    pub wal: WalOptions,
    /// Largest payload, bytes.
    pub max_payload: usize,
    /// Reader backend for searches.
    pub io: IoBackend,
    /// Bytes a merge may use (None = unlimited).
    pub merge_budget: Option<u64>,
    /// Split a search's list size L over the fresh indexes and segments in
    /// proportion to the vectors each holds (never below k), instead of
    /// searching every one with the full L. See
    /// [`LiveCollection::search_stats`].
    pub split_l: bool,
    /// Segments of at most this many nodes are read whole into RAM (the
    /// index's node cache) when opened, so searching them costs no disk
    /// reads; 0 keeps every segment on disk. A flush of a small fresh index
    /// makes such a segment: it then costs less RAM than the fresh index it
    /// replaces (stored vectors, not f32), and the one large merged segment
    /// stays the only one a search reads from disk.
    pub ram_segment_nodes: usize,
}

/// One write.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Insert or replace `id`.
    Upsert {
        /// External id.
        id: u64,
        /// The vector.
        vector: Vec<f32>,
        /// Opaque payload.
        payload: Vec<u8>,
    },
    /// Remove `id` (no error if absent).
    Delete {
        /// External id.
        id: u64,
    },
}

impl Op {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            Op::Upsert { id, vector, payload } => {
                b.push(1);
                b.extend_from_slice(&id.to_le_bytes());
                b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                b.extend_from_slice(payload);
                b.extend_from_slice(bytemuck::cast_slice(vector));
            }
            Op::Delete { id } => {
                b.push(2);
                b.extend_from_slice(&id.to_le_bytes());
            }
        }
        b
    }

    fn decode(b: &[u8], dim: usize) -> std::result::Result<Op, String> {
        let u64_at = |o: usize| b.get(o..o + 8).map(|s| u64::from_le_bytes(s.try_into().expect("8")));
        match b.first() {
            Some(1) => {
                let id = u64_at(1).ok_or("short upsert")?;
                let plen = b
                    .get(9..13)
                    .map(|s| u32::from_le_bytes(s.try_into().expect("4")))
                    .ok_or("short upsert")? as usize;
                let payload = b.get(13..13 + plen).ok_or("short payload")?.to_vec();
                let vb = &b[13 + plen..];
                if vb.len() != dim * 4 {
                    return Err(format!("vector of {} bytes, expected {}", vb.len(), dim * 4));
                }
                let vector = f32s(vb);
                Ok(Op::Upsert { id, vector, payload })
            }
            Some(2) if b.len() == 9 => Ok(Op::Delete {
                id: u64_at(1).expect("9 bytes"),
            }),
            other => Err(format!("unknown operation {other:?}")),
        }
    }
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

/// An immutable disk segment.
pub struct Segment {
    name: String,
    dir: PathBuf,
    index: Arc<DiskIndex>,
    /// slot → row.
    rows: HashMap<u64, u32>,
    fs: Arc<dyn Vfs>,
    retired: AtomicBool,
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            if let Err(e) = self.fs.remove_dir_all(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a retired segment");
            }
        }
    }
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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    dim: usize,
    metric: String,
    checkpoint_lsn: Lsn,
    /// Bumped by every manifest switch; part of new segment names, so a
    /// merge never reuses the name of a live segment.
    generation: u64,
    segments: Vec<String>,
    tombstones: Option<String>,
}

/// What opening found.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// Segments loaded.
    pub segments: usize,
    /// WAL records replayed.
    pub replayed: u64,
    /// Live vectors.
    pub live: usize,
    /// The WAL's torn tail cut, if any: (file, offset, bytes).
    pub wal_cut: Option<(PathBuf, u64, u64)>,
}

/// What a flush did.
#[derive(Clone, Debug, Default)]
pub struct FlushReport {
    /// Vectors written to the new segment.
    pub vectors: usize,
    /// Whether it merged every segment into one.
    pub merged: bool,
    /// Segments after it.
    pub segments: usize,
    /// Checkpoint LSN.
    pub checkpoint: Lsn,
    /// WAL segments deleted.
    pub wal_segments_deleted: usize,
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// External id.
    pub id: u64,
    /// Distance (smaller is closer).
    pub distance: f32,
}

/// RAM a mutable collection holds, bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveRam {
    /// The fresh (and frozen) in-RAM indexes at full precision.
    pub fresh: usize,
    /// The disk segments' RAM parts (PQ codes and pivots, navigation
    /// tier, cache), summed.
    pub segments: crate::index::RamUsage,
    /// The id map, slot table, segment row maps and payloads.
    pub ids: usize,
}

impl LiveRam {
    /// Sum of the parts.
    pub fn total(&self) -> usize {
        self.fresh + self.segments.total() as usize + self.ids
    }
}

/// Per-thread searchers over the segments (one io ring each), by segment
/// name. A handful at most (`max_segments`), so a list: a query finds its
/// readers by position without hashing or allocating.
#[derive(Default)]
pub struct Readers {
    open: Vec<(String, Searcher<Arc<DiskIndex>>)>,
}

/// A mutable collection.
pub struct LiveCollection {
    fs: Arc<dyn Vfs>,
    dir: PathBuf,
    opts: LiveOptions,
    wal: Wal,
    state: RwLock<State>,
    applied: Mutex<Lsn>,
    applied_cv: Condvar,
    broken: AtomicBool,
    /// Held by the one flush at a time; the manifest generation.
    flush_lock: Mutex<u64>,
}

fn seg_name(lsn: Lsn, generation: u64) -> String {
    format!("seg-{lsn:020}-{generation:08}")
}

/// The error every write gets once the log was poisoned under it.
fn broken() -> LiveError {
    LiveError::Wal(WalError::Poisoned("an earlier write failed to sync".into()))
}

/// Little-endian f32s from bytes (any alignment).
fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
        .collect()
}

fn with_crc(mut b: Vec<u8>) -> Vec<u8> {
    let c = crc32c::crc32c(&b);
    b.extend_from_slice(&c.to_le_bytes());
    b
}

fn check_crc<'a>(b: &'a [u8], path: &Path) -> Result<&'a [u8]> {
    if b.len() < 4 {
        return Err(LiveError::Corrupt(format!(
            "{}: {} bytes, too short",
            path.display(),
            b.len()
        )));
    }
    let (body, c) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(c.try_into().expect("4")) {
        return Err(LiveError::Corrupt(format!("{}: checksum mismatch", path.display())));
    }
    Ok(body)
}

impl LiveCollection {
    /// Open (or create) the collection in `dir`, recovering it.
    pub fn open(fs: Arc<dyn Vfs>, dir: &Path, opts: LiveOptions) -> Result<(LiveCollection, OpenReport)> {
        if opts.build.metric != opts.metric {
            return Err(LiveError::InvalidArgument("build.metric differs from metric".into()));
        }
        if !fs.exists(dir) {
            fs.create_dir_all(dir).map_err(io_err(dir, "create"))?;
            if let Some(p) = dir.parent() {
                fs.sync_dir(p).map_err(io_err(p, "sync"))?;
            }
        }
        let mpath = dir.join("manifest.json");
        let manifest: Manifest = if fs.exists(&mpath) {
            let b = fs.read(&mpath).map_err(io_err(&mpath, "read"))?;
            serde_json::from_slice(&b).map_err(|e| LiveError::Corrupt(format!("{}: {e}", mpath.display())))?
        } else {
            let m = Manifest {
                version: 1,
                dim: opts.dim,
                metric: opts.metric.name().into(),
                ..Manifest::default()
            };
            write_atomic(fs.as_ref(), &mpath, &serde_json::to_vec_pretty(&m).expect("json"))
                .map_err(io_err(&mpath, "write"))?;
            m
        };
        if manifest.version != 1 || manifest.dim != opts.dim || manifest.metric != opts.metric.name() {
            return Err(LiveError::InvalidArgument(format!(
                "{}: version {}, {}-d {}; this collection is opened as version 1, {}-d {}",
                mpath.display(),
                manifest.version,
                manifest.dim,
                manifest.metric,
                opts.dim,
                opts.metric.name()
            )));
        }
        // Leftovers of an interrupted flush.
        let mut removed = false;
        for name in fs.list(dir).map_err(io_err(dir, "list"))? {
            let p = dir.join(&name);
            let stale_seg = name.starts_with("seg-") && !manifest.segments.contains(&name);
            let stale_tomb = name.starts_with("tomb-") && manifest.tombstones.as_deref() != Some(name.as_str());
            if stale_seg || stale_tomb || name.ends_with(".tmp") {
                tracing::info!(path = %p.display(), "removing a leftover of an interrupted flush");
                if name.starts_with("seg-") {
                    fs.remove_dir_all(&p).map_err(io_err(&p, "remove"))?;
                } else {
                    fs.remove_file(&p).map_err(io_err(&p, "remove"))?;
                }
                removed = true;
            }
        }
        if removed {
            fs.sync_dir(dir).map_err(io_err(dir, "sync"))?;
        }
        let dead: std::collections::HashSet<u64> = match &manifest.tombstones {
            Some(t) => {
                let p = dir.join(t);
                let b = fs.read(&p).map_err(io_err(&p, "read"))?;
                check_crc(&b, &p)?
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
                    .collect()
            }
            None => Default::default(),
        };
        let mut st = State {
            active: FreshIndex::new(
                opts.dim,
                opts.metric,
                opts.fresh_r,
                opts.fresh_l,
                opts.build.graph.alpha,
            ),
            frozen: None,
            segments: Vec::new(),
            slots: HashMap::new(),
            ids: HashMap::new(),
        };
        for name in &manifest.segments {
            let (seg, records) = load_segment(&fs, dir, name, &opts)?;
            let k = st.segments.len() as u32;
            for (slot, id, payload) in records {
                if dead.contains(&slot) {
                    continue;
                }
                if let Some(old) = st.ids.insert(id, slot) {
                    return Err(LiveError::Corrupt(format!(
                        "{}: id {id} is live in slots {old} and {slot}",
                        dir.display()
                    )));
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
            st.segments.push(Arc::new(seg));
        }
        let (wal, rep) = Wal::open(
            fs.clone(),
            &dir.join("wal"),
            opts.wal.clone(),
            manifest.checkpoint_lsn + 1,
        )?;
        let from = manifest.checkpoint_lsn + 1;
        if wal.first_lsn() > from {
            return Err(LiveError::Corrupt(format!(
                "{}: the checkpoint is LSN {} but the write-ahead log starts at {}",
                dir.display(),
                manifest.checkpoint_lsn,
                wal.first_lsn()
            )));
        }
        let mut replayed = 0u64;
        let mut cur = wal.cursor(from)?;
        loop {
            let recs = wal.read(&mut cur, 4 << 20)?;
            if recs.is_empty() {
                break;
            }
            for (lsn, body) in recs {
                let op = Op::decode(&body, opts.dim)
                    .map_err(|e| LiveError::Corrupt(format!("{}: WAL record {lsn}: {e}", dir.display())))?;
                apply(&mut st, lsn, op, None);
                replayed += 1;
            }
        }
        let applied = wal.last_lsn();
        let report = OpenReport {
            segments: st.segments.len(),
            replayed,
            live: st.slots.len(),
            wal_cut: rep.cut,
        };
        tracing::info!(
            dir = %dir.display(), segments = report.segments, replayed, live = report.live,
            checkpoint = manifest.checkpoint_lsn, "collection opened"
        );
        Ok((
            LiveCollection {
                fs,
                dir: dir.to_path_buf(),
                opts,
                wal,
                state: RwLock::new(st),
                applied: Mutex::new(applied),
                applied_cv: Condvar::new(),
                broken: AtomicBool::new(false),
                flush_lock: Mutex::new(manifest.generation),
            },
            report,
        ))
    }

    /// Check one write before anything is logged.
    fn validate(&self, op: &Op) -> Result<()> {
        if let Op::Upsert { id, vector, payload } = op {
            if vector.len() != self.opts.dim {
                return Err(LiveError::InvalidArgument(format!(
                    "vector for id {id} has {} dimensions; the collection has {}",
                    vector.len(),
                    self.opts.dim
                )));
            }
            if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
                return Err(LiveError::InvalidArgument(format!(
                    "vector for id {id} has a NaN or infinite value at dimension {i}"
                )));
            }
            if payload.len() > self.opts.max_payload {
                return Err(LiveError::InvalidArgument(format!(
                    "payload for id {id} is {} bytes; the limit is {}",
                    payload.len(),
                    self.opts.max_payload
                )));
            }
        }
        Ok(())
    }

    /// Apply a batch of writes atomically with respect to validation (all
    /// or none are logged). Returns the LSN of the last; once this returns
    /// every later search and get sees the batch.
    pub fn write(&self, ops: Vec<Op>) -> Result<Lsn> {
        if ops.is_empty() {
            return Ok(self.wal.last_lsn());
        }
        for op in &ops {
            self.validate(op)?;
        }
        if self.broken.load(Ordering::Acquire) {
            return Err(broken());
        }
        let bodies: Vec<Vec<u8>> = ops.iter().map(Op::encode).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
        let first = match self.wal.append(&refs) {
            Ok(f) => f,
            Err(e) => {
                if matches!(e, WalError::Poisoned(_)) {
                    self.broken.store(true, Ordering::Release);
                    self.applied_cv.notify_all();
                }
                return Err(e.into());
            }
        };
        // Apply strictly in LSN order.
        let mut a = self.applied.lock().expect("lock");
        while *a + 1 != first {
            if self.broken.load(Ordering::Acquire) {
                return Err(broken());
            }
            a = self.applied_cv.wait(a).expect("lock");
        }
        let n = ops.len() as u64;
        // Each insert is planned under the read lock (the graph search and
        // prunes: most of the cost) and committed under the write lock (a
        // copy), one op at a time, so searches are held up for
        // microseconds, not for the batch. Holding `applied` keeps every
        // other writer and the flush's freeze out, so a plan stays valid
        // until its commit.
        for (i, op) in ops.into_iter().enumerate() {
            let plan = match &op {
                Op::Upsert { vector, .. } => Some(self.state.read().expect("lock").active.plan(vector)),
                Op::Delete { .. } => None,
            };
            apply(&mut self.state.write().expect("lock"), first + i as u64, op, plan);
        }
        *a = first + n - 1;
        self.applied_cv.notify_all();
        Ok(first + n - 1)
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
                let row = seg.rows[&slot] as u64;
                let p = seg.dir.join("vectors.bin");
                let d = self.opts.dim;
                let b = self
                    .fs
                    .read_at(&p, row * d as u64 * 4, d * 4)
                    .map_err(io_err(&p, "read"))?;
                if b.len() != d * 4 {
                    return Err(LiveError::Corrupt(format!("{}: short at row {row}", p.display())));
                }
                f32s(&b)
            }
        };
        Ok(Some((v, e.payload.to_vec())))
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

    /// The `k` nearest live vectors to `q` over the fresh index and every
    /// segment (list size `l`, beam width `w`).
    pub fn search(&self, q: &[f32], k: usize, l: usize, w: usize, readers: &mut Readers) -> Result<Vec<Hit>> {
        self.search_stats(q, k, l, w, readers).map(|(h, _)| h)
    }

    /// [`LiveCollection::search`] with the cost: reads, hops and cache
    /// hits summed over the segments, and the wall time.
    ///
    /// Every segment's disk search is started first, the in-RAM fresh
    /// indexes are searched while those reads are in flight, and then the
    /// segment searches are driven together (each on its own reader), so a
    /// query costs about its slowest part, not the sum. With
    /// [`LiveOptions::split_l`] each part searches with a list size in
    /// proportion to its share of the vectors, `ceil(L * n / N)` clamped to
    /// `k..=L`: the k nearest overall hold about that share from each part,
    /// so a small segment needs a short list, and the total reads stay
    /// near a single index's.
    pub fn search_stats(
        &self,
        q: &[f32],
        k: usize,
        l: usize,
        w: usize,
        readers: &mut Readers,
    ) -> Result<(Vec<Hit>, QueryStats)> {
        let t0 = std::time::Instant::now();
        let mut stats = QueryStats::default();
        if q.len() != self.opts.dim {
            return Err(LiveError::InvalidArgument(format!(
                "query has {} dimensions; the collection has {}",
                q.len(),
                self.opts.dim
            )));
        }
        if q.iter().any(|x| !x.is_finite()) {
            return Err(LiveError::InvalidArgument("query has a NaN or infinite value".into()));
        }
        if k == 0 || l < k {
            return Err(LiveError::InvalidArgument(format!(
                "need 1 <= k <= L (k = {k}, L = {l})"
            )));
        }
        let mut cand: Vec<(f32, u64)> = Vec::new();
        // Under one read lock (so a flush switching the fresh index into a
        // segment cannot hide vectors between the two): snapshot the
        // segments, start their disk searches, then search the in-RAM
        // fresh indexes while those reads are in flight.
        // Positions in `readers.open` of the searches started; a search's
        // token is its index here.
        let mut started: Vec<usize> = Vec::new();
        let mut first_err: Option<LiveError> = None;
        {
            let st = self.state.read().expect("lock");
            let segments = &st.segments;
            readers.open.retain(|(n, _)| segments.iter().any(|s| &s.name == n));
            let fresh_n = st.active.len() + st.frozen.as_ref().map_or(0, |f| f.len());
            let total = fresh_n + segments.iter().map(|s| s.index.len()).sum::<usize>();
            let share = |n: usize| -> usize {
                if self.opts.split_l && total > 0 {
                    (l * n).div_ceil(total).clamp(k, l)
                } else {
                    l
                }
            };
            for seg in segments {
                if seg.index.is_empty() {
                    continue;
                }
                let lk = share(seg.index.len()).min(seg.index.len());
                let p = SearchParams::new(lk, lk, w.max(1));
                let pos = match readers.open.iter().position(|(n, _)| n == &seg.name) {
                    Some(pos) => pos,
                    None => match Searcher::new(seg.index.clone(), self.opts.io, p.reader_depth(1)) {
                        Ok(s) => {
                            readers.open.push((seg.name.clone(), s));
                            readers.open.len() - 1
                        }
                        Err(e) => {
                            first_err.get_or_insert(LiveError::Index(IndexError::Invalid(format!(
                                "cannot open a reader: {e}"
                            ))));
                            continue;
                        }
                    },
                };
                match readers.open[pos].1.start_query(started.len() as u64, q, &p) {
                    Ok(()) => started.push(pos),
                    Err(e) => {
                        first_err.get_or_insert(LiveError::Index(IndexError::Invalid(e.to_string())));
                    }
                }
            }
            let live = |s: u64| st.slots.contains_key(&s);
            cand.extend(st.active.search(q, k, share(st.active.len()), live));
            if let Some(f) = &st.frozen {
                cand.extend(f.search(q, k, share(f.len()), live));
            }
        }
        // Drive every segment's search to its end (also after an error, so
        // no query is left in a reader for the next call to trip over).
        let mut results: Vec<Option<crate::search::QueryResult>> = vec![None; started.len()];
        let mut pending = started.len();
        while pending > 0 {
            for &pos in &started {
                let s = &mut readers.open[pos].1;
                if s.active() > 0 {
                    s.poll(false, &mut |tok, r| {
                        results[tok as usize] = Some(r);
                        pending -= 1;
                    });
                }
            }
            if pending > 0 {
                std::hint::spin_loop();
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        for r in results.into_iter().flatten() {
            let (nbs, qs) = r.map_err(|e| LiveError::Index(IndexError::Invalid(e.to_string())))?;
            stats.ios += qs.ios;
            stats.hops += qs.hops;
            stats.cache_hits += qs.cache_hits;
            stats.pq_distances += qs.pq_distances;
            stats.exact_distances += qs.exact_distances;
            stats.read_wait_micros += qs.read_wait_micros;
            stats.reads_waited += qs.reads_waited;
            cand.extend(nbs.into_iter().map(|n| (n.distance, n.id)));
        }
        let st = self.state.read().expect("lock");
        cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        cand.dedup_by_key(|c| c.1);
        let hits = cand
            .into_iter()
            .filter_map(|(d, s)| st.slots.get(&s).map(|e| Hit { id: e.id, distance: d }))
            .take(k)
            .collect();
        stats.micros = t0.elapsed().as_secs_f64() * 1e6;
        Ok((hits, stats))
    }

    /// Fold the fresh index (and, past `max_segments`, every segment) into
    /// a new disk segment and switch the manifest; see the module doc.
    pub fn flush(&self, progress: &mut dyn FnMut(&str, usize, usize)) -> Result<FlushReport> {
        self.flush_with(false, progress)
    }

    /// Merge the fresh index and every segment into one new segment now,
    /// dropping every dead vector (`quarryctl compact`).
    pub fn compact(&self, progress: &mut dyn FnMut(&str, usize, usize)) -> Result<FlushReport> {
        self.flush_with(true, progress)
    }

    /// The settings it was opened with.
    pub fn options(&self) -> &LiveOptions {
        &self.opts
    }

    /// Whether a flush or compaction is running.
    pub fn flushing(&self) -> bool {
        self.flush_lock.try_lock().is_err()
    }

    /// RAM held, bytes: the fresh indexes, the segments' PQ codes,
    /// navigation tiers and caches, and the id map with payloads.
    pub fn ram(&self) -> LiveRam {
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
        LiveRam { fresh, segments, ids }
    }

    fn flush_with(&self, force_merge: bool, progress: &mut dyn FnMut(&str, usize, usize)) -> Result<FlushReport> {
        let mut generation = self.flush_lock.lock().expect("lock");
        let dim = self.opts.dim;
        // Freeze: new writes go to a new fresh index from here on.
        let (checkpoint, merged, mut data, mut slots, mut ids, mut payloads) = {
            let applied = self.applied.lock().expect("lock");
            let mut st = self.state.write().expect("lock");
            let checkpoint = *applied;
            let fresh = std::mem::replace(
                &mut st.active,
                FreshIndex::new(
                    dim,
                    self.opts.metric,
                    self.opts.fresh_r,
                    self.opts.fresh_l,
                    self.opts.build.graph.alpha,
                ),
            );
            for e in st.slots.values_mut() {
                if let Loc::Active(i) = e.loc {
                    e.loc = Loc::Frozen(i);
                }
            }
            let mut data = Vec::new();
            let (mut sl, mut idv, mut pl) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..fresh.len() {
                let s = fresh.slot(i);
                if let Some(e) = st.slots.get(&s) {
                    data.extend_from_slice(fresh.vector(i));
                    sl.push(s);
                    idv.push(e.id);
                    pl.push(e.payload.clone());
                }
            }
            st.frozen = Some(fresh);
            let merged = force_merge || st.segments.len() >= self.opts.max_segments.max(1);
            (checkpoint, merged, data, sl, idv, pl)
        };
        if merged {
            // Every segment's live vectors join the frozen ones.
            let st = self.state.read().expect("lock");
            for (k, seg) in st.segments.iter().enumerate() {
                let p = seg.dir.join("vectors.bin");
                let b = self.fs.read(&p).map_err(io_err(&p, "read"))?;
                let all = f32s(&b);
                // Row order, not the map's (per-process random) order, so
                // a merge of the same state builds the same segment.
                let mut rows: Vec<(u32, u64)> = seg.rows.iter().map(|(&slot, &row)| (row, slot)).collect();
                rows.sort_unstable();
                for (row, slot) in rows {
                    if let Some(e) = st.slots.get(&slot) {
                        if e.loc == Loc::Segment(k as u32) {
                            data.extend_from_slice(&all[row as usize * dim..(row as usize + 1) * dim]);
                            slots.push(slot);
                            ids.push(e.id);
                            payloads.push(e.payload.clone());
                        }
                    }
                }
            }
        }
        if let Some(budget) = self.opts.merge_budget {
            let detail = crate::index::MemoryEstimate::for_build(slots.len(), dim, &self.opts.build);
            let need = detail.total() + data.len() as u64 * 4;
            if need > budget {
                self.unfreeze();
                return Err(LiveError::OverBudget(format!(
                    "a flush of {} vectors needs about {} MiB ({detail}); the merge budget is {} MiB",
                    slots.len(),
                    need >> 20,
                    budget >> 20
                )));
            }
        }
        let name = seg_name(checkpoint, *generation + 1);
        let n = slots.len();
        let built = if n > 0 {
            self.write_segment(&name, &data, &slots, &ids, &payloads, progress)
                .map(Some)
        } else {
            Ok(None)
        };
        let seg = match built {
            Ok(s) => s,
            Err(e) => {
                self.unfreeze();
                return Err(e);
            }
        };
        drop((data, ids, payloads));
        let seg = seg.map(Arc::new);
        // Tombstones: dead slots still present in the segments the new
        // manifest lists. Kills applied after this point have LSNs past
        // the checkpoint and are replayed from the WAL.
        let tomb = {
            let st = self.state.read().expect("lock");
            let kept: Vec<&Arc<Segment>> = if merged {
                Vec::new()
            } else {
                st.segments.iter().collect()
            };
            let mut dead: Vec<u64> = kept
                .into_iter()
                .chain(seg.iter())
                .flat_map(|s| s.rows.keys().copied())
                .filter(|s| !st.slots.contains_key(s))
                .collect();
            dead.sort_unstable();
            dead
        };
        let tomb_name = format!("tomb-{checkpoint:020}-{:08}.bin", *generation + 1);
        let prepared = (|| -> Result<Option<String>> {
            if tomb.is_empty() {
                return Ok(None);
            }
            let p = self.dir.join(&tomb_name);
            let bytes: Vec<u8> = tomb.iter().flat_map(|s| s.to_le_bytes()).collect();
            write_atomic(self.fs.as_ref(), &p, &with_crc(bytes)).map_err(io_err(&p, "write"))?;
            Ok(Some(tomb_name.clone()))
        })()
        .and_then(|t| {
            // Under the interval policy, make sure every write the
            // tombstones reflect is durable before the manifest refers to
            // them.
            self.wal.sync()?;
            Ok(t)
        });
        let tomb = match prepared {
            Ok(t) => t,
            Err(e) => {
                if let Some(s) = &seg {
                    s.retired.store(true, Ordering::Release);
                }
                drop(seg);
                self.unfreeze();
                return Err(e);
            }
        };
        // Switch: the new segment replaces the frozen index (and, merged,
        // every old segment) in one step for searches, then on disk.
        let mut st = self.state.write().expect("lock");
        let old = std::mem::take(&mut st.segments);
        let mut keep: Vec<Arc<Segment>> = if merged { Vec::new() } else { old.clone() };
        let newk = keep.len() as u32;
        keep.extend(seg);
        for e in st.slots.values_mut() {
            e.loc = match e.loc {
                Loc::Frozen(_) => Loc::Segment(newk),
                Loc::Segment(_) if merged => Loc::Segment(newk),
                a => a,
            };
        }
        let m = Manifest {
            version: 1,
            dim,
            metric: self.opts.metric.name().into(),
            checkpoint_lsn: checkpoint,
            generation: *generation + 1,
            segments: keep.iter().map(|s| s.name.clone()).collect(),
            tombstones: tomb,
        };
        let mpath = self.dir.join("manifest.json");
        let bytes = serde_json::to_vec_pretty(&m).expect("json");
        if let Err(e) = write_atomic(self.fs.as_ref(), &mpath, &bytes) {
            let err = LiveError::Io {
                path: mpath.clone(),
                op: "switch the manifest",
                source: e,
            };
            if self.fs.read(&mpath).ok().as_deref() == Some(bytes.as_slice()) {
                // The rename happened but its directory sync failed: the
                // switch may or may not survive a power cut. Serve what the
                // directory now says, keep every old segment and WAL record
                // (whichever manifest survives finds its files), and retry
                // the cleanup at the next flush.
                tracing::error!(error = %err, "manifest switched but not durably; keeping old segments and the WAL");
                st.segments = keep;
                st.frozen = None;
                *generation += 1;
                return Err(err);
            }
            // The old manifest is current: undo the switch in RAM.
            st.segments = old;
            if let Some(new) = keep.get(newk as usize) {
                new.retired.store(true, Ordering::Release);
            }
            drop(st);
            drop(keep);
            self.restore_after_failed_switch();
            return Err(err);
        }
        *generation += 1;
        st.segments = keep;
        st.frozen = None;
        if merged {
            for s in &old {
                s.retired.store(true, Ordering::Release);
            }
        }
        let segments = st.segments.len();
        drop(st);
        drop(old);
        // Old tombstone files and WAL segments before the checkpoint.
        for name in self.fs.list(&self.dir).map_err(io_err(&self.dir, "list"))? {
            if name.starts_with("tomb-") && Some(name.as_str()) != m.tombstones.as_deref() {
                let p = self.dir.join(&name);
                self.fs.remove_file(&p).map_err(io_err(&p, "remove"))?;
            }
        }
        let wal_segments_deleted = self.wal.retain_from(checkpoint + 1)?;
        Ok(FlushReport {
            vectors: n,
            merged,
            segments,
            checkpoint,
            wal_segments_deleted,
        })
    }

    /// A flush failed before the switch: the frozen index becomes active
    /// again (writes since the freeze went to the new active one and are
    /// re-inserted after it).
    fn unfreeze(&self) {
        // Writers plan inserts against the active index while holding
        // `applied`; swapping it under them would invalidate a plan.
        let _writers = self.applied.lock().expect("lock");
        let mut st = self.state.write().expect("lock");
        let Some(frozen) = st.frozen.take() else { return };
        let newer = std::mem::replace(&mut st.active, frozen);
        let base = st.active.len() as u32;
        let State { slots, active, .. } = &mut *st;
        for e in slots.values_mut() {
            match e.loc {
                Loc::Frozen(i) => e.loc = Loc::Active(i),
                Loc::Active(i) => e.loc = Loc::Active(base + i),
                _ => {}
            }
        }
        for i in 0..newer.len() {
            active.insert(newer.slot(i), newer.vector(i));
        }
    }

    /// The manifest switch failed: the old segments stay current, the
    /// frozen index becomes active again, and every live entry is located
    /// afresh.
    fn restore_after_failed_switch(&self) {
        let mut st = self.state.write().expect("lock");
        let mut loc: HashMap<u64, Loc> = HashMap::new();
        for (k, seg) in st.segments.iter().enumerate() {
            for &s in seg.rows.keys() {
                loc.insert(s, Loc::Segment(k as u32));
            }
        }
        if let Some(f) = &st.frozen {
            for i in 0..f.len() {
                loc.insert(f.slot(i), Loc::Frozen(i as u32));
            }
        }
        for i in 0..st.active.len() {
            loc.insert(st.active.slot(i), Loc::Active(i as u32));
        }
        for (s, e) in st.slots.iter_mut() {
            if let Some(l) = loc.get(s) {
                e.loc = *l;
            }
        }
        drop(st);
        self.unfreeze();
    }

    /// Write a segment directory under a temporary name, make every byte
    /// and name durable, and rename it into place.
    fn write_segment(
        &self,
        name: &str,
        data: &[f32],
        slots: &[u64],
        ids: &[u64],
        payloads: &[Arc<[u8]>],
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<Segment> {
        let fs = self.fs.as_ref();
        let tmp = self.dir.join(format!("{name}.tmp"));
        if fs.exists(&tmp) {
            fs.remove_dir_all(&tmp).map_err(io_err(&tmp, "remove"))?;
        }
        let idx = tmp.join("index");
        fs.create_dir_all(&idx).map_err(io_err(&idx, "create"))?;
        let mut o = self.opts.build.clone();
        o.nav_sample = crate::graph::NavParams::default_sample(slots.len()).min(o.nav_sample.max(1));
        build_index(data.into(), self.opts.dim, slots, &idx, &o, progress)?;
        for f in fs.list(&idx).map_err(io_err(&idx, "list"))? {
            let p = idx.join(f);
            fs.sync_file(&p).map_err(io_err(&p, "sync"))?;
        }
        fs.sync_dir(&idx).map_err(io_err(&idx, "sync"))?;
        let mut rec = Vec::new();
        for ((s, id), p) in slots.iter().zip(ids).zip(payloads) {
            rec.extend_from_slice(&s.to_le_bytes());
            rec.extend_from_slice(&id.to_le_bytes());
            rec.extend_from_slice(&(p.len() as u32).to_le_bytes());
            rec.extend_from_slice(p);
        }
        for (file, bytes) in [
            ("records.bin", with_crc(rec)),
            ("vectors.bin", bytemuck::cast_slice::<f32, u8>(data).to_vec()),
        ] {
            let p = tmp.join(file);
            let mut f = fs.create(&p).map_err(io_err(&p, "create"))?;
            f.append(&bytes).map_err(io_err(&p, "write"))?;
            f.sync().map_err(io_err(&p, "sync"))?;
        }
        fs.sync_dir(&tmp).map_err(io_err(&tmp, "sync"))?;
        let fin = self.dir.join(name);
        fs.rename(&tmp, &fin).map_err(io_err(&tmp, "rename"))?;
        fs.sync_dir(&self.dir).map_err(io_err(&self.dir, "sync"))?;
        let (seg, _) = load_segment(&self.fs, &self.dir, name, &self.opts)?;
        Ok(seg)
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
    }
}

/// Open segment `name` and read its records: (segment, [(slot, id, payload)]).
#[allow(clippy::type_complexity)]
fn load_segment(
    fs: &Arc<dyn Vfs>,
    dir: &Path,
    name: &str,
    opts: &LiveOptions,
) -> Result<(Segment, Vec<(u64, u64, Vec<u8>)>)> {
    let dim = opts.dim;
    let sdir = dir.join(name);
    let mut index = DiskIndex::open(&sdir.join("index"))?;
    let rp = sdir.join("records.bin");
    let b = fs.read(&rp).map_err(io_err(&rp, "read"))?;
    let body = check_crc(&b, &rp)?;
    let mut recs = Vec::new();
    let mut o = 0;
    while o < body.len() {
        let bad = || LiveError::Corrupt(format!("{}: record at byte {o} is cut short", rp.display()));
        let h = body.get(o..o + 20).ok_or_else(bad)?;
        let slot = u64::from_le_bytes(h[..8].try_into().expect("8"));
        let id = u64::from_le_bytes(h[8..16].try_into().expect("8"));
        let pl = u32::from_le_bytes(h[16..20].try_into().expect("4")) as usize;
        let p = body.get(o + 20..o + 20 + pl).ok_or_else(bad)?.to_vec();
        recs.push((slot, id, p));
        o += 20 + pl;
    }
    let vp = sdir.join("vectors.bin");
    let vlen = fs.file_len(&vp).map_err(io_err(&vp, "stat"))?;
    if vlen != (recs.len() * dim * 4) as u64 || index.len() != recs.len() {
        return Err(LiveError::Corrupt(format!(
            "{}: {} records, {} index nodes and {vlen} bytes of vectors disagree",
            sdir.display(),
            recs.len(),
            index.len()
        )));
    }
    if index.len() <= opts.ram_segment_nodes {
        let n = index.len();
        let cached = index.warm_cache(n, opts.io)?;
        if cached < n {
            tracing::debug!(
                segment = name,
                cached,
                nodes = n,
                "part of a RAM segment is unreachable from its entry points; the rest is read from disk"
            );
        }
    }
    let rows = recs.iter().enumerate().map(|(i, r)| (r.0, i as u32)).collect();
    Ok((
        Segment {
            name: name.to_string(),
            dir: sdir,
            index: Arc::new(index),
            rows,
            fs: fs.clone(),
            retired: AtomicBool::new(false),
        },
        recs,
    ))
}
