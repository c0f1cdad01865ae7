//! The collections a server holds: their metadata on disk, opening them,
//! creating and dropping them, and starting their builds (bulk loads).
//!
//! Owns: the data directory layout, `collection.json` (through the `Vfs`,
//! atomically rewritten), crash-safe create and drop, adopting an index
//! built by an earlier release as a collection's first segment, and RAM
//! accounting against the memory budget (`crate::budget`). Does not own:
//! searching (see `shard`), the write path (`live`, the engine's
//! `Collection`) or the wire types (see `service`).
//!
//! Layout under `data_dir` (docs/format.md, "The server's data directory"):
//! ```text
//! collections/<name>/collection.json   metadata (CollectionMeta)
//! collections/<name>/live/             the collection (engine layout:
//!                                      manifest, WAL, segments, tombstones)
//! collections/<name>/index-<gen>/      an earlier release's built index,
//!                                      adopted as the first segment
//! collections/.dropped-<name>-<n>/     a drop being finished
//! collections/.restore-<name>-<n>/     a restore being staged
//!                                      (`catalog_snapshot.rs`)
//! ```

use crate::budget::{MemoryBudget, Reservation};
use crate::error::ServiceError;
use crate::live::{Budget, Flusher, Live, WriteSettings};
pub use crate::meta::{CollectionMeta, IndexParams, Residency, State, META_VERSION};
use crate::operations::Operations;
pub use crate::operations::{OpState, Operation};
use quarry_engine::dataset::VectorFile;
use quarry_engine::format::StoredType;
use quarry_engine::graph::{BuildParams, NavParams};
use quarry_engine::index::{IndexBuildOptions, MemoryEstimate};
use quarry_engine::storage::{write_atomic, RealFs, Vfs};
use quarry_engine::Metric;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

/// One collection.
pub struct Entry {
    /// Metadata (the on-disk truth, mirrored).
    pub meta: RwLock<CollectionMeta>,
    /// Set when the collection is dropped (a running build then discards
    /// its result).
    pub dropped: std::sync::atomic::AtomicBool,
    /// The collection: searched, written, bulk-loaded by builds.
    pub live: Arc<Live>,
}

/// Every collection, the running operations, and the memory budget.
pub struct Catalog {
    /// Every durable change to the catalog goes through it (power-loss
    /// trials use `CrashFs`).
    fs: Arc<dyn Vfs>,
    root: PathBuf,
    cache_nodes: usize,
    budget: Arc<MemoryBudget>,
    build_threads: usize,
    entries: RwLock<BTreeMap<String, Arc<Entry>>>,
    ops: Operations,
    next_key: AtomicU64,
    writes: WriteSettings,
    flusher: OnceLock<Arc<Flusher>>,
    /// Bumped by every create, drop and replacement (a primary's Follow
    /// session ends on a change, and the standby's next handshake carries it).
    changes: AtomicU64,
    /// Called while a collection taken out of service waits for its
    /// holders (the shards: `Shards::nudge`).
    retire_hook: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Names held by running restores (`snapshot`).
    restoring: Mutex<std::collections::BTreeSet<String>>,
}

#[path = "catalog_replica.rs"]
mod replica;
#[path = "catalog_snapshot.rs"]
pub mod snapshot;

/// A collection name: 1..=64 characters from `[A-Za-z0-9_-]`.
pub(crate) fn check_name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::InvalidArgument(format!(
            "name {name:?} must be 1..=64 characters from [A-Za-z0-9_-]"
        )))
    }
}

/// Where a dropped collection's directory goes before it is deleted: the
/// rename makes the drop durable in one step, and a deletion cut short by a
/// crash is finished at the next start (never mistaken for a collection).
const DROPPED_PREFIX: &str = ".dropped-";

impl Catalog {
    /// Open `data_dir` (created if missing) and every READY collection in
    /// it. Collections that were BUILDING when the server stopped are
    /// marked FAILED (their previous index, if any, stays current).
    pub fn open(
        data_dir: &Path,
        cache_nodes: usize,
        budget: u64,
        build_threads: usize,
        writes: WriteSettings,
    ) -> Result<Catalog, ServiceError> {
        Self::open_on(Arc::new(RealFs), data_dir, cache_nodes, budget, build_threads, writes)
    }

    /// [`Catalog::open`] over the file system `fs` (the real one, or a
    /// fault-injecting one in tests).
    pub fn open_on(
        fs: Arc<dyn Vfs>,
        data_dir: &Path,
        cache_nodes: usize,
        budget: u64,
        build_threads: usize,
        writes: WriteSettings,
    ) -> Result<Catalog, ServiceError> {
        let root = data_dir.join("collections");
        let internal = |what: &str, p: &Path, e: std::io::Error| {
            ServiceError::Internal(format!("cannot {what} {}: {e}", p.display()))
        };
        // A directory made here is durable by name before anything is
        // written in it.
        for dir in [data_dir, root.as_path()] {
            if !fs.exists(dir) {
                fs.create_dir_all(dir).map_err(|e| internal("create", dir, e))?;
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs.sync_dir(parent).map_err(|e| internal("sync", parent, e))?;
                }
            }
        }
        let cat = Catalog {
            fs: fs.clone(),
            root,
            cache_nodes,
            budget: MemoryBudget::new(budget),
            build_threads,
            entries: RwLock::new(BTreeMap::new()),
            ops: Operations::open(fs.clone(), data_dir)?,
            next_key: AtomicU64::new(1),
            writes,
            flusher: OnceLock::new(),
            changes: AtomicU64::new(0),
            retire_hook: OnceLock::new(),
            restoring: Mutex::new(Default::default()),
        };
        let mut names = Vec::new();
        for n in fs.list(&cat.root).map_err(|e| internal("list", &cat.root, e))? {
            let dir = cat.root.join(&n);
            if n.starts_with(DROPPED_PREFIX) || snapshot::is_staging(&n) {
                tracing::info!(path = %dir.display(), "finishing the deletion of a dropped collection or a restore cut short");
                fs.remove_dir_all(&dir).map_err(|e| internal("remove", &dir, e))?;
            } else if fs.exists(&dir.join("collection.json")) {
                names.push(dir);
            } else {
                tracing::warn!(path = %dir.display(), "ignoring a directory without collection.json (a create cut short; a new create of that name replaces it)");
            }
        }
        for dir in names {
            let text = fs
                .read(&dir.join("collection.json"))
                .map_err(|e| ServiceError::Internal(format!("{}: {e}", dir.display())))?;
            let mut meta: CollectionMeta = serde_json::from_slice(&text)
                .map_err(|e| ServiceError::Internal(format!("{}/collection.json is corrupt: {e}", dir.display())))?;
            if meta.version != META_VERSION {
                return Err(ServiceError::FailedPrecondition(format!(
                    "{}/collection.json is version {}; this build reads version {META_VERSION} (run the Quarry release that wrote it)",
                    dir.display(),
                    meta.version
                )));
            }
            // Remove builds that never finished.
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp") && e.path().is_dir() {
                    tracing::warn!(path = %e.path().display(), "removing an unfinished build");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
            // Every collection takes writes. One written before that (built
            // from a file, read-only) adopts its index as its first segment,
            // its files untouched, and is recorded as such.
            let mut changed = false;
            if meta.state == State::Building {
                meta.error = "the build was interrupted by a server restart".into();
            }
            if meta.state != State::Ready {
                meta.state = State::Ready;
                changed = true;
            }
            if meta.incarnation == 0 {
                meta.incarnation = crate::meta::new_incarnation();
                changed = true;
            }
            let live = cat.open_live(&meta)?;
            if !meta.mutable {
                if let Some(d) = &meta.index_dir {
                    let t = Instant::now();
                    let n = live
                        .coll
                        .adopt_index(&format!("../{d}"))
                        .map_err(crate::live::live_error)?;
                    tracing::info!(
                        collection = %meta.name, index = %d, vectors = n,
                        ms = t.elapsed().as_secs_f64() * 1e3,
                        "adopted an index built before every collection took writes"
                    );
                }
                meta.mutable = true;
                changed = true;
            }
            if changed {
                write_atomic(
                    fs.as_ref(),
                    &dir.join("collection.json"),
                    &serde_json::to_vec_pretty(&meta).expect("json"),
                )
                .map_err(|e| ServiceError::Internal(format!("{}: {e}", dir.display())))?;
            }
            let in_use = cat.ram_in_use() + live.coll.ram().total() as u64;
            if in_use > cat.budget.limit() {
                return Err(ServiceError::ResourceExhausted(format!(
                    "opening collection {:?} brings RAM in use to {} MiB, over the memory budget of {} MiB (raise memory_budget_mb)",
                    meta.name,
                    in_use >> 20,
                    cat.budget.limit() >> 20
                )));
            }
            let entry = Arc::new(Entry {
                meta: RwLock::new(meta.clone()),
                dropped: Default::default(),
                live: Arc::new(live),
            });
            cat.entries.write().expect("lock").insert(meta.name.clone(), entry);
        }
        Ok(cat)
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// RAM the open collections hold (without reservations).
    pub fn ram_held(&self) -> u64 {
        self.entries
            .read()
            .expect("lock")
            .values()
            .map(|e| e.live.coll.ram().total() as u64)
            .sum()
    }

    /// RAM held by the open collections plus the reservations of running
    /// builds, bulk loads and flushes.
    pub fn ram_in_use(&self) -> u64 {
        self.ram_held() + self.budget.reserved()
    }

    /// Reserve `bytes` of the memory budget for `what`, checked and taken
    /// in one step; released when the guard is dropped.
    pub fn reserve(&self, bytes: u64, what: &str) -> Result<Reservation, ServiceError> {
        self.budget.try_reserve(self.ram_held(), bytes, what)
    }

    /// Segment build settings of a collection (graph, PQ, stored type).
    fn build_options(&self, meta: &CollectionMeta, n: usize, threads: usize) -> IndexBuildOptions {
        let threads = if threads > 0 { threads } else { self.build_threads };
        let threads = if threads > 0 {
            threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        let mut graph = BuildParams::new(meta.params.max_degree as usize, meta.params.build_list_size as usize);
        graph.alpha = meta.params.alpha;
        graph.threads = threads;
        IndexBuildOptions {
            metric: meta.metric(),
            graph,
            pq_bytes: meta.params.pq_bytes as usize,
            stored: meta.stored(),
            nav_sample: if meta.params.nav_sample > 0 {
                meta.params.nav_sample as usize
            } else {
                NavParams::default_sample(n)
            },
            rerank_file: false,
            opq: meta.params.opq,
            ram_budget: None,
            colocate: true,
        }
    }

    /// Open (or create) the `live/` directory of a collection.
    fn open_live(&self, meta: &CollectionMeta) -> Result<Live, ServiceError> {
        // nav_sample usize::MAX: each segment takes the default for its size.
        let mut build = self.build_options(meta, 0, 0);
        if meta.params.nav_sample == 0 {
            build.nav_sample = usize::MAX;
        }
        Live::open(
            self.fs.clone(),
            self.next_key.fetch_add(1, Ordering::Relaxed),
            &meta.name,
            &self.dir(&meta.name).join("live"),
            meta.dim as usize,
            build,
            &meta.write_settings(&self.writes),
        )
    }

    /// Start the background flusher (once the catalog is shared).
    pub fn start_flusher(self: &Arc<Self>) -> std::io::Result<()> {
        let weak: std::sync::Weak<dyn Budget> = Arc::downgrade(&(self.clone() as Arc<dyn Budget>));
        let f = Flusher::start(weak)?;
        for e in self.list() {
            f.kick(&e.live);
        }
        let _ = self.flusher.set(f);
        Ok(())
    }

    /// Stop the background flusher (at shutdown).
    pub fn stop_flusher(&self) {
        if let Some(f) = self.flusher.get() {
            f.shutdown();
        }
    }

    /// Queue a flush of `live` if it needs one.
    pub fn kick_flush(&self, live: &Arc<Live>) {
        if let Some(f) = self.flusher.get() {
            f.kick(live);
        }
    }

    /// Start a compaction (merge of everything) of collection
    /// `name` in the background.
    pub fn start_compact(&self, name: &str) -> Result<Operation, ServiceError> {
        let entry = self.get(name)?;
        let live = entry.live.clone();
        let Some(f) = self.flusher.get() else {
            return Err(ServiceError::Unavailable("the flusher is not running".into()));
        };
        let op = self.ops.start("compact", name, "queued", live.coll.len() as u64)?;
        f.compact(live, op.clone());
        let snapshot = op.lock().expect("lock").clone();
        Ok(snapshot)
    }

    /// The budget, bytes.
    pub fn budget(&self) -> u64 {
        self.budget.limit()
    }

    /// Create an empty collection.
    pub fn create(
        &self,
        name: &str,
        dim: u32,
        metric: Metric,
        params: IndexParams,
        stored: Option<StoredType>,
        residency: Residency,
    ) -> Result<CollectionMeta, ServiceError> {
        check_name(name)?;
        if !(1..=4096).contains(&dim) {
            return Err(ServiceError::InvalidArgument(format!(
                "dim = {dim} is out of range 1..=4096"
            )));
        }
        let params = params.resolve(dim)?;
        let stored = stored.unwrap_or(quarry_engine::index::IndexBuildOptions::default_stored(dim as usize));
        let mut entries = self.entries.write().expect("lock");
        if entries.contains_key(name) || self.restoring(name) {
            return Err(ServiceError::AlreadyExists(format!(
                "collection {name:?} already exists"
            )));
        }
        let meta = CollectionMeta {
            version: META_VERSION,
            name: name.into(),
            dim,
            metric: metric.to_string(),
            params,
            stored: stored.to_string(),
            state: State::Ready,
            index_dir: None,
            generation: 0,
            operation_id: String::new(),
            error: String::new(),
            vector_count: 0,
            mutable: true,
            incarnation: crate::meta::new_incarnation(),
            residency,
        };
        let dir = self.dir(name);
        let fs = self.fs.as_ref();
        let internal = |e: std::io::Error| ServiceError::Internal(format!("{}: {e}", dir.display()));
        // A directory of this name without collection.json is what a
        // create or drop cut short left: it must not lend its files (an
        // old WAL) to the new collection.
        if fs.exists(&dir) {
            tracing::warn!(path = %dir.display(), "removing the leftover of an interrupted create or drop");
            fs.remove_dir_all(&dir).map_err(internal)?;
        }
        // The directory's name is made durable before the metadata inside
        // it, so a create either survives a power cut whole or leaves a
        // directory without collection.json (ignored, then replaced).
        fs.create_dir_all(&dir).map_err(internal)?;
        fs.sync_dir(&self.root).map_err(internal)?;
        write_atomic(
            fs,
            &dir.join("collection.json"),
            &serde_json::to_vec_pretty(&meta).expect("json"),
        )
        .map_err(internal)?;
        let live = match self.open_live(&meta) {
            Ok(l) => Arc::new(l),
            Err(e) => {
                let _ = self.remove_collection_dir(name);
                return Err(e);
            }
        };
        entries.insert(
            name.into(),
            Arc::new(Entry {
                meta: RwLock::new(meta.clone()),
                dropped: Default::default(),
                live,
            }),
        );
        self.changes.fetch_add(1, Ordering::SeqCst);
        tracing::info!(collection = name, dim, %metric, %residency, "created");
        Ok(meta)
    }

    /// One collection.
    pub fn get(&self, name: &str) -> Result<Arc<Entry>, ServiceError> {
        self.entries
            .read()
            .expect("lock")
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("collection {name:?} does not exist")))
    }

    /// Every collection, by name.
    pub fn list(&self) -> Vec<Arc<Entry>> {
        self.entries.read().expect("lock").values().cloned().collect()
    }

    /// Drop a collection: forget it, then delete its files (searches in
    /// flight keep the open index alive until they finish; the files are
    /// unlinked, which Linux allows while they are open).
    pub fn drop_collection(&self, name: &str) -> Result<(), ServiceError> {
        let entry = self.get(name)?;
        // A running build is cancelled first (it removes what it wrote).
        let building = {
            let m = entry.meta.read().expect("lock");
            (m.state == State::Building).then(|| m.operation_id.clone())
        };
        if let Some(op) = building {
            tracing::info!(collection = name, operation = %op, "drop: cancelling the running build");
            self.ops.cancel_and_wait(&op, std::time::Duration::from_secs(300))?;
        }
        self.entries.write().expect("lock").remove(name);
        entry.dropped.store(true, Ordering::SeqCst);
        entry.live.retired.store(true, Ordering::SeqCst);
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.remove_collection_dir(name)?;
        tracing::info!(collection = name, "dropped");
        Ok(())
    }

    /// Delete a collection's directory crash-safely: rename it aside (one
    /// durable step: after it the collection is gone whatever happens
    /// next), then delete it. A deletion cut short is finished at the next
    /// open.
    fn remove_collection_dir(&self, name: &str) -> Result<(), ServiceError> {
        let fs = self.fs.as_ref();
        let dir = self.dir(name);
        let aside = self.root.join(format!(
            "{DROPPED_PREFIX}{name}-{}",
            self.next_key.fetch_add(1, Ordering::Relaxed)
        ));
        let internal = |p: &Path, e: std::io::Error| ServiceError::Internal(format!("{}: {e}", p.display()));
        fs.rename(&dir, &aside).map_err(|e| internal(&dir, e))?;
        fs.sync_dir(&self.root).map_err(|e| internal(&self.root, e))?;
        fs.remove_dir_all(&aside).map_err(|e| internal(&aside, e))
    }

    /// An operation by id.
    pub fn operation(&self, id: &str) -> Result<Operation, ServiceError> {
        self.ops.get(id)
    }

    /// Every operation held (see [`Operations::all`]).
    pub fn operations(&self) -> Vec<Operation> {
        self.ops.all()
    }

    /// Ask a running build or compaction to stop (see
    /// [`Operations::cancel`]).
    pub fn cancel_operation(&self, id: &str) -> Result<Operation, ServiceError> {
        self.ops.cancel(id)
    }

    /// Start building `name` from `source` in the background. Checks the
    /// file, the dimension and the memory budget first.
    pub fn start_build(
        self: &Arc<Self>,
        name: &str,
        source: &Path,
        ids_path: Option<&Path>,
        first_id: u64,
        threads: usize,
    ) -> Result<Operation, ServiceError> {
        let entry = self.get(name)?;
        let file = VectorFile::open(source)
            .map_err(|e| ServiceError::InvalidArgument(format!("source_path {}: {e}", source.display())))?;
        let (n, dim) = (file.len(), file.dim());
        if n == 0 {
            return Err(ServiceError::InvalidArgument(format!(
                "source_path {} holds no vectors",
                source.display()
            )));
        }
        let ids: Vec<u64> = match ids_path {
            None => {
                if first_id.checked_add(n as u64 - 1).is_none() {
                    return Err(ServiceError::InvalidArgument(format!(
                        "first_id = {first_id} plus {n} rows runs past the largest id (2^64 - 1)"
                    )));
                }
                (first_id..first_id + n as u64).collect()
            }
            Some(p) => {
                if first_id != 0 {
                    return Err(ServiceError::InvalidArgument(
                        "give either ids_path or first_id, not both".into(),
                    ));
                }
                read_ids(p, n)?
            }
        };
        let meta = entry.meta.read().expect("lock").clone();
        if dim != meta.dim as usize {
            return Err(ServiceError::InvalidArgument(format!(
                "source_path {} has dimension {dim}; collection {name:?} has dimension {}",
                source.display(),
                meta.dim
            )));
        }
        let o = self.build_options(&meta, n, threads);
        let detail = MemoryEstimate::for_build(n, dim, &o);
        let need = detail.total();
        // The build must fit beside what is open now while it runs, and so
        // must the segment's RAM parts once it is open.
        let held = match meta.residency {
            Residency::Disk => self.cache_nodes as u64 * meta.record_bytes(),
            Residency::Ram => n as u64 * meta.record_bytes(),
        };
        let after = n as u64 * (meta.params.pq_bytes as u64 + 8) + held;
        // A one-pass build that does not fit what is free is partitioned
        // within it (the engine refuses, with the figures, when even that
        // cannot fit); the open segment must still fit.
        let free = self.budget().saturating_sub(self.ram_in_use());
        let partition_within = (need > free && after <= free).then_some(free);
        let reservation = match partition_within {
            Some(b) => self.reserve(
                b,
                &format!(
                    "building {name:?} from {n} x {dim} vectors, partitioned within the {:.2} GiB free (one pass would need {detail})",
                    b as f64 / (1u64 << 30) as f64
                ),
            )?,
            None => self.reserve(
                need.max(after),
                &format!("building {name:?} from {n} x {dim} vectors ({detail})"),
            )?,
        };
        let op = {
            let mut m = entry.meta.write().expect("lock");
            // Refused before an operation is registered, so a refusal
            // leaves none behind.
            if m.state == State::Building {
                return Err(ServiceError::FailedPrecondition(format!(
                    "collection {name:?} is already building (operation {})",
                    m.operation_id
                )));
            }
            let op = self.ops.start("build", name, "reading", n as u64)?;
            let before = m.clone();
            m.state = State::Building;
            m.generation += 1;
            m.operation_id = op.lock().expect("lock").id.clone();
            m.error.clear();
            if let Err(e) = self.persist(&m) {
                *m = before;
                op.lock().expect("lock").finish(Err(e.to_string()));
                return Err(e);
            }
            op
        };
        let cat = self.clone();
        let name = name.to_string();
        let source = source.to_path_buf();
        let op_thread = op.clone();
        std::thread::Builder::new()
            .name(format!("build-{name}"))
            .spawn(move || {
                // The build yields the cores to the search shards.
                let _background = quarry_engine::runtime::BackgroundPriority::enter();
                let op = op_thread;
                let how = BuildHow {
                    threads,
                    ram_budget: partition_within,
                };
                let res = cat.run_build(&entry, &source, file, &ids, how, &op);
                drop(reservation);
                let mut m = entry.meta.write().expect("lock");
                let mut g = op.lock().expect("lock");
                // The collection serves throughout: before, during and
                // after the build, whatever its outcome.
                m.state = State::Ready;
                m.vector_count = entry.live.coll.len() as u64;
                match &res {
                    Ok(rep) => tracing::info!(
                        collection = %name, vectors = rep.vectors, replaced = rep.replaced,
                        seconds = g.started.elapsed().as_secs_f64(), "build done"
                    ),
                    Err(e) if g.cancel.is_cancelled() => {
                        m.error = e.to_string();
                        tracing::info!(collection = %name, "build cancelled; nothing of it kept");
                    }
                    Err(e) => {
                        m.error = e.to_string();
                        tracing::error!(collection = %name, error = %e, "build failed");
                    }
                }
                g.finish(res.map(|r| r.vectors as u64).map_err(|e| e.to_string()));
                if !entry.dropped.load(Ordering::SeqCst) {
                    if let Err(e) = cat.persist(&m) {
                        tracing::error!(collection = %name, error = %e, "cannot record the build's end");
                    }
                }
            })
            .map_err(|e| ServiceError::Internal(format!("cannot start the build thread: {e}")))?;
        let snapshot = op.lock().expect("lock").clone();
        Ok(snapshot)
    }

    /// Bulk-load `file` into the collection: one new segment, built at
    /// batch speed (see `quarry_engine::collection::Collection::bulk_load`).
    fn run_build(
        &self,
        entry: &Entry,
        source: &Path,
        file: VectorFile,
        ids: &[u64],
        how: BuildHow,
        op: &Mutex<Operation>,
    ) -> Result<quarry_engine::collection::BulkReport, ServiceError> {
        file.check_finite()
            .map_err(|e| ServiceError::InvalidArgument(format!("source_path {}: {e}", source.display())))?;
        let data = file.f32_data();
        // Taken out first: a guard in the call's arguments would be held
        // for the whole build, and the progress callback locks `op`.
        let cancel = op.lock().expect("lock").cancel.clone();
        entry
            .live
            .coll
            .bulk_load_within(
                data,
                ids,
                Vec::new(),
                how.threads,
                how.ram_budget,
                &cancel,
                &mut |stage, done, total| op.lock().expect("lock").report(stage, done, total),
            )
            .map_err(crate::live::live_error)
    }

    fn persist(&self, m: &CollectionMeta) -> Result<(), ServiceError> {
        let path = self.dir(&m.name).join("collection.json");
        write_atomic(self.fs.as_ref(), &path, &serde_json::to_vec_pretty(m).expect("json"))
            .map_err(|e| ServiceError::Internal(format!("{}: {e}", path.display())))
    }
}

/// How a bulk load's segment is built.
struct BuildHow {
    /// Build threads (0 = the server's setting).
    threads: usize,
    /// Partition within this many bytes (None: one pass, already reserved).
    ram_budget: Option<u64>,
}

fn read_ids(path: &Path, n: usize) -> Result<Vec<u64>, ServiceError> {
    let b =
        std::fs::read(path).map_err(|e| ServiceError::InvalidArgument(format!("ids_path {}: {e}", path.display())))?;
    if b.len() != n * 8 {
        return Err(ServiceError::InvalidArgument(format!(
            "ids_path {} has {} bytes; {n} vectors need {} (one little-endian u64 each)",
            path.display(),
            b.len(),
            n * 8
        )));
    }
    let ids: Vec<u64> = b
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(ServiceError::InvalidArgument(format!(
            "ids_path {}: id {} appears more than once",
            path.display(),
            w[0]
        )));
    }
    Ok(ids)
}

impl Budget for Catalog {
    fn reserve(&self, bytes: u64, what: &str) -> Result<Reservation, ServiceError> {
        Catalog::reserve(self, bytes, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("docs_v2-en").is_ok());
        for bad in ["", "a/b", "..", "x y", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn params_resolve_defaults_and_reject_out_of_range() {
        let z = IndexParams::default();
        let r = z.resolve(384).unwrap();
        assert_eq!((r.max_degree, r.build_list_size, r.pq_bytes), (64, 100, 96));
        let e = IndexParams { max_degree: 1000, ..z }.resolve(384).unwrap_err();
        assert!(e.to_string().contains("max_degree = 1000"), "{e}");
        let e = IndexParams { pq_bytes: 500, ..z }.resolve(384).unwrap_err();
        assert!(e.to_string().contains("pq_bytes = 500"), "{e}");
    }

    #[test]
    fn catalog_survives_reopen_and_refuses_duplicates() {
        let d = tempfile::tempdir().unwrap();
        let z = IndexParams::default();
        {
            let c = Catalog::open(d.path(), 0, 1 << 30, 1, WriteSettings::default()).unwrap();
            c.create("a", 8, Metric::L2, z, None, Residency::Disk).unwrap();
            assert!(matches!(
                c.create("a", 8, Metric::L2, z, None, Residency::Disk),
                Err(ServiceError::AlreadyExists(_))
            ));
        }
        let c = Catalog::open(d.path(), 0, 1 << 30, 1, WriteSettings::default()).unwrap();
        let e = c.get("a").unwrap();
        assert_eq!(e.meta.read().unwrap().state, State::Ready);
        let first = e.meta.read().unwrap().incarnation;
        assert_ne!(first, 0, "minted at create, kept across a reopen");
        c.drop_collection("a").unwrap();
        assert!(matches!(c.get("a"), Err(ServiceError::NotFound(_))));
        c.create("a", 8, Metric::L2, z, None, Residency::Disk).unwrap();
        let again = c.get("a").unwrap().meta.read().unwrap().incarnation;
        assert!(
            again != 0 && again != first,
            "a re-created collection is another incarnation"
        );
    }

    #[test]
    fn a_collection_json_without_an_incarnation_gets_one_that_stays() {
        let d = tempfile::tempdir().unwrap();
        {
            let c = Catalog::open(d.path(), 0, 1 << 30, 1, WriteSettings::default()).unwrap();
            c.create("old", 8, Metric::L2, IndexParams::default(), None, Residency::Disk)
                .unwrap();
        }
        // As an earlier release wrote it: no incarnation field.
        let path = d.path().join("collections/old/collection.json");
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("incarnation");
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        let inc = {
            let c = Catalog::open(d.path(), 0, 1 << 30, 1, WriteSettings::default()).unwrap();
            let i = c.get("old").unwrap().meta.read().unwrap().incarnation;
            assert_ne!(i, 0);
            i
        };
        let c = Catalog::open(d.path(), 0, 1 << 30, 1, WriteSettings::default()).unwrap();
        assert_eq!(
            c.get("old").unwrap().meta.read().unwrap().incarnation,
            inc,
            "written back at the first open"
        );
    }
}
