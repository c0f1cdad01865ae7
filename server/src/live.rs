//! Collections in the service: opening them, the write path's limits, and
//! the background flusher.
//!
//! Owns: [`Live`] (a `quarry_engine::collection::Collection` plus
//! the service's bookkeeping: flush counters, the last flush error, the
//! write stall), the settings taken from the config ([`WriteSettings`]),
//! and [`Flusher`], the one background thread that folds fresh indexes
//! into disk segments when they pass `flush_at` and runs `Compact`
//! operations, each charged to the memory budget before it starts. Does
//! not own: durability, recovery or the merged search (the engine's
//! `Collection`), the catalog's life cycle (`catalog`) or wire types
//! (`service`).
//!
//! A collection's files are `collections/<name>/live/` (the engine's
//! layout: manifest, WAL, segments, tombstones; see docs/format.md).

use crate::error::ServiceError;
use crate::operations::Operation;
use quarry_engine::collection::{Collection, CollectionError, CollectionOptions, FlushReport, Op};
use quarry_engine::index::IndexBuildOptions;
use quarry_engine::io::IoBackend;
use quarry_engine::storage::Vfs;
use quarry_engine::wal::{Lsn, SyncPolicy, WalError, WalOptions};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// The config's write settings.
#[derive(Clone, Debug)]
pub struct WriteSettings {
    /// WAL durability.
    pub sync: SyncPolicy,
    /// WAL segment size, bytes.
    pub wal_segment_bytes: u64,
    /// Most WAL kept for followers, bytes.
    pub wal_retain_max_bytes: u64,
    /// Fresh vectors that start a flush.
    pub flush_at: usize,
    /// Fresh vectors that stall writes.
    pub stall_at: usize,
    /// Disk segments per search.
    pub max_segments: usize,
    /// Segments held whole in RAM up to this many vectors.
    pub ram_segment_nodes: usize,
    /// Hot-node cache of each larger segment, nodes.
    pub cache_nodes: usize,
    /// Largest payload, bytes.
    pub max_payload: usize,
    /// Reader backend.
    pub io: IoBackend,
    /// Hold back, at open, the records no follower acknowledged (a node
    /// in a replicated pair: see `CollectionOptions::hold_unacked`).
    pub hold_unacked: bool,
}

impl WriteSettings {
    /// From the validated config.
    pub fn from_config(c: &crate::Config) -> WriteSettings {
        WriteSettings {
            sync: c.wal_sync_policy(),
            wal_segment_bytes: c.wal_segment_mb << 20,
            wal_retain_max_bytes: c.wal_retain_max_mb << 20,
            flush_at: c.flush_at,
            stall_at: c.write_stall_at,
            max_segments: c.max_segments,
            ram_segment_nodes: c.ram_segment_nodes,
            cache_nodes: c.cache_nodes,
            max_payload: c.max_payload_bytes,
            io: c.io_backend(),
            hold_unacked: c.replication.role != crate::replication::settings::Role::None,
        }
    }
}

impl Default for WriteSettings {
    fn default() -> Self {
        let c = crate::Config::default();
        WriteSettings::from_config(&c)
    }
}

/// A collection as the service holds it.
pub struct Live {
    /// Unique for the process lifetime (shards key their readers by it).
    pub key: u64,
    /// Collection name.
    pub name: String,
    /// The engine's collection.
    pub coll: Collection,
    /// How its segments are built (for the budget estimate).
    pub build: IndexBuildOptions,
    stall_at: usize,
    /// Flushes and merges finished since start.
    pub flushes: AtomicU64,
    /// Why the last flush failed ("" if it did not).
    pub last_flush_error: Mutex<String>,
    /// A flush is queued or running (so it is queued once).
    queued: AtomicBool,
    /// Taken out of service (dropped, or being cut or replaced by a
    /// standby): shards let go of it once idle, queued flushes skip it.
    pub retired: AtomicBool,
    /// Queries, writes, latency, flush and merge times (for /metrics).
    pub stats: Arc<crate::metrics::CollectionStats>,
}

/// Map an engine error to a status: the caller's mistakes are
/// INVALID_ARGUMENT, a full disk RESOURCE_EXHAUSTED, a manifest of another
/// version or shape FAILED_PRECONDITION, everything else INTERNAL (with
/// the file named).
pub fn live_error(e: CollectionError) -> ServiceError {
    let disk_full = match &e {
        CollectionError::Io { source, .. } | CollectionError::Wal(WalError::Io { source, .. }) => {
            source.kind() == std::io::ErrorKind::StorageFull
        }
        _ => false,
    };
    if disk_full {
        return ServiceError::ResourceExhausted(format!(
            "the disk is full: {e}; nothing of this request was acknowledged"
        ));
    }
    match e {
        CollectionError::InvalidArgument(m) => ServiceError::InvalidArgument(m),
        CollectionError::Vector { .. } => ServiceError::InvalidArgument(e.to_string()),
        CollectionError::Search(se) => se.into(),
        CollectionError::Manifest(_) => ServiceError::FailedPrecondition(e.to_string()),
        CollectionError::Wal(WalError::TooLarge { .. }) => ServiceError::InvalidArgument(e.to_string()),
        CollectionError::Gate(g) => ServiceError::OutcomeUnknown {
            timeout: matches!(g, quarry_engine::collection::GateError::Timeout { .. }),
            message: g.to_string(),
        },
        other => ServiceError::Internal(other.to_string()),
    }
}

impl Live {
    /// Open (creating or recovering) the collection in `dir`.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        fs: Arc<dyn Vfs>,
        key: u64,
        name: &str,
        dir: &Path,
        dim: usize,
        build: IndexBuildOptions,
        s: &WriteSettings,
    ) -> Result<Live, ServiceError> {
        let t = Instant::now();
        let (coll, report) = Collection::open(fs, dir, Self::options_for(dim, &build, s)).map_err(live_error)?;
        if let Some((path, offset, lsn)) = &report.wal_cut {
            tracing::warn!(collection = name, file = %path.display(), offset, lsn, "cut a torn write-ahead log tail");
        }
        tracing::info!(
            collection = name,
            segments = report.segments,
            replayed = report.replayed,
            vectors = report.live,
            ms = t.elapsed().as_secs_f64() * 1e3,
            "opened a collection"
        );
        Ok(Live::wrap(key, name, coll, build, s))
    }

    /// The engine's options for a collection of `dim` built with `build`.
    pub fn options_for(dim: usize, build: &IndexBuildOptions, s: &WriteSettings) -> CollectionOptions {
        CollectionOptions {
            dim,
            metric: build.metric,
            fresh_r: build.graph.r,
            fresh_l: build.graph.l,
            build: build.clone(),
            flush_at: s.flush_at,
            max_segments: s.max_segments,
            wal: WalOptions {
                segment_bytes: s.wal_segment_bytes,
                sync: s.sync,
                max_retained_bytes: Some(s.wal_retain_max_bytes),
                ..WalOptions::default()
            },
            max_payload: s.max_payload,
            io: s.io,
            split_l: true,
            ram_segment_nodes: s.ram_segment_nodes,
            cache_nodes: s.cache_nodes,
            hold_unacked: s.hold_unacked,
        }
    }

    /// Hold an open collection.
    pub fn wrap(key: u64, name: &str, coll: Collection, build: IndexBuildOptions, s: &WriteSettings) -> Live {
        Live {
            key,
            name: name.into(),
            coll,
            build,
            stall_at: s.stall_at,
            flushes: AtomicU64::new(0),
            last_flush_error: Mutex::new(String::new()),
            queued: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            stats: Arc::default(),
        }
    }

    /// Why writes are held back now, if they are: the fresh index is at
    /// `write_stall_at` (the flush is behind, or failing).
    pub fn stalled(&self) -> Option<String> {
        let n = self.coll.fresh_len();
        if n < self.stall_at {
            return None;
        }
        let why = self.last_flush_error.lock().expect("lock").clone();
        Some(format!(
            "collection {:?} holds {n} unflushed vectors (write_stall_at = {}); {}",
            self.name,
            self.stall_at,
            if why.is_empty() {
                "the background flush is catching up: retry with backoff".to_string()
            } else {
                format!("the last flush failed: {why}")
            }
        ))
    }

    /// Apply a batch (blocking: WAL append, fsync, the commit gate of a
    /// replicated primary until `deadline`, insert). A refusal or timeout
    /// at the gate leaves the batch logged: its outcome is unknown
    /// ([`ServiceError::OutcomeUnknown`]).
    pub fn write(&self, ops: Vec<Op>, deadline: Option<Instant>) -> Result<Lsn, ServiceError> {
        self.coll.write_until(ops, deadline).map_err(live_error)
    }
}

enum Task {
    Flush(Arc<Live>),
    Compact(Arc<Live>, Arc<Mutex<Operation>>),
}

/// What the flusher needs from the catalog: a reservation of the memory
/// budget, checked and taken in one step (see `crate::budget`).
pub trait Budget: Send + Sync {
    /// Reserve `bytes` for `what`, or say why they do not fit.
    fn reserve(&self, bytes: u64, what: &str) -> Result<crate::budget::Reservation, ServiceError>;
}

/// The background flush thread.
pub struct Flusher {
    queue: Mutex<VecDeque<Task>>,
    cv: Condvar,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Flusher {
    /// Start the thread; it holds the budget weakly.
    pub fn start(budget: Weak<dyn Budget>) -> std::io::Result<Arc<Flusher>> {
        let f = Arc::new(Flusher {
            queue: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let me = f.clone();
        let t = std::thread::Builder::new()
            .name("flusher".into())
            .spawn(move || me.run(budget))?;
        *f.thread.lock().expect("lock") = Some(t);
        Ok(f)
    }

    /// Queue a flush of `live` if it needs one and none is queued.
    pub fn kick(&self, live: &Arc<Live>) {
        if live.coll.needs_flush() && !live.queued.swap(true, Ordering::AcqRel) {
            self.queue.lock().expect("lock").push_back(Task::Flush(live.clone()));
            self.cv.notify_one();
        }
    }

    /// Queue a compaction (merge of everything) tracked by `op`.
    pub fn compact(&self, live: Arc<Live>, op: Arc<Mutex<Operation>>) {
        self.queue.lock().expect("lock").push_back(Task::Compact(live, op));
        self.cv.notify_one();
    }

    /// Stop after the task in progress (a flush cut short by exit is
    /// recovered at the next start: the WAL still holds its writes).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cv.notify_all();
        if let Some(t) = self.thread.lock().expect("lock").take() {
            let _ = t.join();
        }
    }

    fn run(&self, budget: Weak<dyn Budget>) {
        loop {
            let task = {
                let mut q = self.queue.lock().expect("lock");
                loop {
                    if self.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Some(t) = q.pop_front() {
                        break t;
                    }
                    q = self.cv.wait_timeout(q, Duration::from_millis(500)).expect("lock").0;
                }
            };
            let Some(budget) = budget.upgrade() else { return };
            // Flushes and merges yield the cores to the search shards.
            let _background = quarry_engine::runtime::BackgroundPriority::enter();
            match task {
                Task::Flush(live) if live.retired.load(Ordering::SeqCst) => {
                    live.queued.store(false, Ordering::Release);
                }
                Task::Flush(live) => {
                    let never = quarry_engine::cancel::CancelToken::default();
                    let r = run_flush(&live, budget.as_ref(), false, &never, &mut |_, _, _| {});
                    live.queued.store(false, Ordering::Release);
                    match &r {
                        // Writes that arrived during the flush may have
                        // filled the new fresh index past `flush_at`; their
                        // kicks found this flush queued, so look again now
                        // (else it waits for the next write, which may never
                        // come).
                        Ok(_) => self.kick(&live),
                        Err(e) => {
                            // Retried at the next write that finds it needed;
                            // wait a little so a persistent failure does not spin.
                            tracing::error!(collection = %live.name, error = %e, "background flush failed");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
                Task::Compact(live, op) => {
                    let cancel = op.lock().expect("lock").cancel.clone();
                    let r = run_flush(&live, budget.as_ref(), true, &cancel, &mut |stage, done, total| {
                        op.lock().expect("lock").report(stage, done, total)
                    });
                    self.kick(&live);
                    op.lock()
                        .expect("lock")
                        .finish(r.map(|rep| rep.vectors as u64).map_err(|e| e.to_string()));
                }
            }
        }
    }
}

/// One flush or compaction of `live`, refused if its estimate does not fit
/// the memory budget, with the estimate reserved while it runs.
fn run_flush(
    live: &Live,
    budget: &dyn Budget,
    compact: bool,
    cancel: &quarry_engine::cancel::CancelToken,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<FlushReport, ServiceError> {
    let (merge, n) = live.coll.flush_plan(compact);
    let dim = live.coll.options().dim;
    let detail = quarry_engine::index::MemoryEstimate::for_build(n, dim, &live.build);
    let need = detail.total() + (n * dim * 4) as u64;
    let what = format!(
        "{} of {:?} ({n} vectors; {detail})",
        if merge { "a merge" } else { "a flush" },
        live.name
    );
    let reservation = match budget.reserve(need, &what) {
        Ok(r) => r,
        Err(e) => {
            *live.last_flush_error.lock().expect("lock") = e.to_string();
            return Err(e);
        }
    };
    let t = Instant::now();
    let r = if compact {
        live.coll.compact(cancel, progress)
    } else {
        live.coll.flush(progress)
    };
    drop(reservation);
    match r {
        Ok(rep) => {
            live.flushes.fetch_add(1, Ordering::Relaxed);
            live.stats.record_flush(rep.merged, t.elapsed().as_secs_f64());
            live.last_flush_error.lock().expect("lock").clear();
            tracing::info!(
                collection = %live.name,
                vectors = rep.vectors,
                merged = rep.merged,
                segments = rep.segments,
                checkpoint = rep.checkpoint,
                wal_segments_deleted = rep.wal_segments_deleted,
                seconds = t.elapsed().as_secs_f64(),
                "flushed"
            );
            Ok(rep)
        }
        Err(e) => {
            let e = live_error(e);
            *live.last_flush_error.lock().expect("lock") = e.to_string();
            Err(e)
        }
    }
}
