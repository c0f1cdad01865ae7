//! The collections a server holds: their metadata on disk, their open
//! indexes, their builds, and the memory budget they share.
//!
//! Owns: the data directory layout, collection metadata (atomically
//! rewritten), the life cycle EMPTY → BUILDING → READY / FAILED, opening
//! indexes at start, and the RAM accounting that refuses what would exceed
//! the budget. Does not own: searching (see `shard`) or the wire types
//! (see `service`).
//!
//! Layout under `data_dir`:
//! ```text
//! collections/<name>/collection.json   metadata (CollectionMeta)
//! collections/<name>/index-<gen>/      an engine index (docs/format.md)
//! collections/<name>/index-<gen>.tmp/  a build in progress
//! collections/<name>/live/             a mutable collection (engine
//!                                      `segment::live` layout: manifest,
//!                                      WAL, segments, tombstones)
//! ```
//! A build writes `index-<gen>.tmp`, renames it to `index-<gen>` and then
//! switches `collection.json` (written to a temporary file, fsynced,
//! renamed, directory fsynced). A crash at any point leaves either the old
//! index or the new one current, never a half-written one; stale `.tmp`
//! directories are removed at start.

use crate::error::ServiceError;
use crate::live::{Budget, Flusher, Live, WriteSettings};
use quarry_engine::dataset::VectorFile;
use quarry_engine::format::StoredType;
use quarry_engine::graph::{BuildParams, NavParams};
use quarry_engine::index::{build_index, DiskIndex, IndexBuildOptions, MemoryEstimate, RamUsage};
use quarry_engine::io::IoBackend;
use quarry_engine::storage::{write_atomic, RealFs, Vfs};
use quarry_engine::Metric;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

/// Graph and PQ parameters (all zeros = every default; see `resolve`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexParams {
    /// R.
    pub max_degree: u32,
    /// Build L.
    pub build_list_size: u32,
    /// RobustPrune alpha.
    pub alpha: f32,
    /// PQ bytes per vector.
    pub pq_bytes: u32,
    /// OPQ rotation.
    pub opq: bool,
    /// Navigation sample (0 = 1 % of n).
    pub nav_sample: u32,
}

impl IndexParams {
    /// Fill zeros with defaults for `dim` and check ranges.
    pub fn resolve(mut self, dim: u32) -> Result<Self, ServiceError> {
        let bad = |m: String| Err(ServiceError::InvalidArgument(m));
        if self.max_degree == 0 {
            self.max_degree = 64;
        }
        if self.build_list_size == 0 {
            self.build_list_size = self.max_degree.max(100);
        }
        if self.alpha == 0.0 {
            self.alpha = 1.2;
        }
        if self.pq_bytes == 0 {
            self.pq_bytes = (dim / 4).clamp(1, 128);
        }
        if !(4..=512).contains(&self.max_degree) {
            return bad(format!(
                "index_params.max_degree = {} is out of range 4..=512",
                self.max_degree
            ));
        }
        if self.build_list_size < self.max_degree || self.build_list_size > 2000 {
            return bad(format!(
                "index_params.build_list_size = {} must be in max_degree..=2000 ({}..=2000)",
                self.build_list_size, self.max_degree
            ));
        }
        if !(1.0..=2.0).contains(&self.alpha) {
            return bad(format!("index_params.alpha = {} is out of range 1.0..=2.0", self.alpha));
        }
        if self.pq_bytes > dim {
            return bad(format!(
                "index_params.pq_bytes = {} must be in 1..=dim ({dim})",
                self.pq_bytes
            ));
        }
        Ok(self)
    }
}

/// Life-cycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No index yet.
    Empty,
    /// A build runs.
    Building,
    /// Serving.
    Ready,
    /// The last build failed.
    Failed,
}

/// What `collection.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectionMeta {
    /// [`META_VERSION`] when written. Files written before versions were
    /// recorded have none and read as version 1 (the same fields).
    #[serde(default = "meta_version_1")]
    pub version: u32,
    /// Name.
    pub name: String,
    /// Dimension.
    pub dim: u32,
    /// Metric ("l2", "ip", "cosine").
    pub metric: String,
    /// Resolved parameters.
    pub params: IndexParams,
    /// Stored-vector type ("f32", "f16", "i8").
    pub stored: String,
    /// State.
    pub state: State,
    /// Current index directory name (under the collection), if any.
    pub index_dir: Option<String>,
    /// Last build generation used.
    pub generation: u64,
    /// Last build operation id.
    pub operation_id: String,
    /// Last build error.
    pub error: String,
    /// Vectors in the current index.
    pub vector_count: u64,
    /// Filled by writes (a `live/` directory) rather than by builds.
    #[serde(default)]
    pub mutable: bool,
}

fn meta_version_1() -> u32 {
    1
}

impl CollectionMeta {
    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric.parse().expect("validated when created")
    }
    /// The stored-vector type.
    pub fn stored(&self) -> StoredType {
        self.stored.parse().expect("validated when created")
    }
}

/// An index open for search, shared by every shard.
pub struct OpenIndex {
    /// Unique for the process lifetime (shards key their searchers by it).
    pub key: u64,
    /// The engine index.
    pub index: Arc<DiskIndex>,
    /// External id → internal slot (None when ids are 0..n-1).
    id_map: Option<HashMap<u64, u32>>,
    /// The graph file, for Get (buffered positional reads).
    graph: std::fs::File,
    /// Bytes on disk.
    pub disk_bytes: u64,
}

impl OpenIndex {
    /// RAM held, by component (the id map included).
    pub fn ram(&self) -> RamUsage {
        let mut r = self.index.ram();
        if let Some(m) = &self.id_map {
            r.ids += m.capacity() * 16;
        }
        r
    }

    /// The stored vector of external id `id` (f16/i8 decoded to f32).
    pub fn get(&self, id: u64) -> Result<Option<Vec<f32>>, ServiceError> {
        use std::os::unix::fs::FileExt;
        let slot = match &self.id_map {
            Some(m) => match m.get(&id) {
                Some(&s) => s,
                None => return Ok(None),
            },
            None if id < self.index.len() as u64 => id as u32,
            None => return Ok(None),
        };
        let layout = self.index.header().layout;
        let (sector, off) = layout.locate(slot);
        let mut buf = vec![0u8; layout.read_sectors() * quarry_engine::io::SECTOR];
        self.graph
            .read_exact_at(&mut buf, sector * quarry_engine::io::SECTOR as u64)
            .map_err(|e| ServiceError::Internal(format!("reading node {slot}: {e}")))?;
        let node = layout
            .node(&buf[off..off + layout.node_size])
            .map_err(|e| ServiceError::Internal(format!("node {slot} is corrupt: {e}")))?;
        let mut v = Vec::new();
        node.vector.to_f32(&mut v);
        Ok(Some(v))
    }
}

/// Progress of a build, shared with GetOperation.
#[derive(Clone, Debug)]
pub struct Operation {
    /// Id.
    pub id: String,
    /// Collection.
    pub collection: String,
    /// Running, done or failed.
    pub state: OpState,
    /// Stage name.
    pub stage: String,
    /// 0..=1.
    pub progress: f64,
    /// Start time.
    pub started: Instant,
    /// End time, once finished.
    pub finished: Option<Instant>,
    /// Failure.
    pub error: String,
    /// Source vectors.
    pub vector_count: u64,
}

/// Build state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpState {
    /// Running.
    Running,
    /// Finished and serving.
    Done,
    /// Failed.
    Failed,
}

/// One collection.
pub struct Entry {
    /// Metadata (the on-disk truth, mirrored).
    pub meta: RwLock<CollectionMeta>,
    /// The open index, when READY.
    pub open: RwLock<Option<Arc<OpenIndex>>>,
    /// Set when the collection is dropped (a running build then discards
    /// its result).
    pub dropped: std::sync::atomic::AtomicBool,
    /// The mutable collection (None for collections built from files).
    pub live: Option<Arc<Live>>,
}

/// Every collection, the running operations, and the memory budget.
pub struct Catalog {
    /// Every durable change to the catalog goes through it (power-loss
    /// trials use `CrashFs`).
    fs: Arc<dyn Vfs>,
    root: PathBuf,
    io: IoBackend,
    cache_nodes: usize,
    budget: u64,
    build_threads: usize,
    entries: RwLock<BTreeMap<String, Arc<Entry>>>,
    ops: Mutex<HashMap<String, Arc<Mutex<Operation>>>>,
    /// Bytes reserved by running builds (their estimate).
    reserved: AtomicU64,
    next_key: AtomicU64,
    next_op: AtomicU64,
    writes: WriteSettings,
    flusher: OnceLock<Arc<Flusher>>,
}

fn check_name(name: &str) -> Result<(), ServiceError> {
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

/// The version of `collection.json` this build writes and reads
/// (docs/format.md, "Collection metadata").
pub const META_VERSION: u32 = 1;

impl Catalog {
    /// Open `data_dir` (created if missing) and every READY collection in
    /// it. Collections that were BUILDING when the server stopped are
    /// marked FAILED (their previous index, if any, stays current).
    pub fn open(
        data_dir: &Path,
        io: IoBackend,
        cache_nodes: usize,
        budget: u64,
        build_threads: usize,
        writes: WriteSettings,
    ) -> Result<Catalog, ServiceError> {
        Self::open_on(
            Arc::new(RealFs),
            data_dir,
            io,
            cache_nodes,
            budget,
            build_threads,
            writes,
        )
    }

    /// [`Catalog::open`] over the file system `fs` (the real one, or a
    /// fault-injecting one in tests).
    pub fn open_on(
        fs: Arc<dyn Vfs>,
        data_dir: &Path,
        io: IoBackend,
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
            io,
            cache_nodes,
            budget,
            build_threads,
            entries: RwLock::new(BTreeMap::new()),
            ops: Mutex::new(HashMap::new()),
            reserved: AtomicU64::new(0),
            next_key: AtomicU64::new(1),
            next_op: AtomicU64::new(1),
            writes,
            flusher: OnceLock::new(),
        };
        let mut names = Vec::new();
        for n in fs.list(&cat.root).map_err(|e| internal("list", &cat.root, e))? {
            let dir = cat.root.join(&n);
            if n.starts_with(DROPPED_PREFIX) {
                tracing::info!(path = %dir.display(), "finishing the deletion of a dropped collection");
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
            if meta.state == State::Building {
                meta.state = if meta.index_dir.is_some() {
                    State::Ready
                } else {
                    State::Failed
                };
                meta.error = "the build was interrupted by a server restart".into();
                write_atomic(
                    fs.as_ref(),
                    &dir.join("collection.json"),
                    &serde_json::to_vec_pretty(&meta).expect("json"),
                )
                .map_err(|e| ServiceError::Internal(format!("{}: {e}", dir.display())))?;
            }
            let live = if meta.mutable {
                let live = cat.open_live(&meta)?;
                let in_use = cat.ram_in_use() + live.coll.ram().total() as u64;
                if in_use > cat.budget {
                    return Err(ServiceError::ResourceExhausted(format!(
                        "opening mutable collection {:?} brings RAM in use to {} MiB, over the memory budget of {} MiB (raise memory_budget_mb)",
                        meta.name,
                        in_use >> 20,
                        cat.budget >> 20
                    )));
                }
                Some(Arc::new(live))
            } else {
                None
            };
            let entry = Arc::new(Entry {
                meta: RwLock::new(meta.clone()),
                open: RwLock::new(None),
                dropped: Default::default(),
                live,
            });
            if meta.state == State::Ready && !meta.mutable {
                let idx_dir = dir.join(meta.index_dir.as_deref().expect("ready has an index"));
                let t = Instant::now();
                let open = cat.open_index(&idx_dir, 0)?;
                tracing::info!(
                    collection = %meta.name,
                    vectors = open.index.len(),
                    ram_bytes = open.ram().total(),
                    ms = t.elapsed().as_secs_f64() * 1e3,
                    "opened"
                );
                *entry.open.write().expect("lock") = Some(Arc::new(open));
            }
            cat.entries.write().expect("lock").insert(meta.name.clone(), entry);
        }
        Ok(cat)
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// RAM held by open indexes and mutable collections plus
    /// reservations of running builds and flushes.
    pub fn ram_in_use(&self) -> u64 {
        let open: u64 = self
            .entries
            .read()
            .expect("lock")
            .values()
            .map(|e| {
                e.open.read().expect("lock").as_ref().map_or(0, |o| o.ram().total())
                    + e.live.as_ref().map_or(0, |l| l.coll.ram().total() as u64)
            })
            .sum();
        open + self.reserved.load(Ordering::Relaxed)
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

    /// Open (or create) the `live/` directory of a mutable collection.
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
            &self.writes,
        )
    }

    /// Start the background flusher (once the catalog is shared).
    pub fn start_flusher(self: &Arc<Self>) -> std::io::Result<()> {
        let weak: std::sync::Weak<dyn Budget> = Arc::downgrade(&(self.clone() as Arc<dyn Budget>));
        let f = Flusher::start(weak)?;
        for e in self.list() {
            if let Some(l) = &e.live {
                f.kick(l);
            }
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

    /// Start a compaction (merge of everything) of mutable collection
    /// `name` in the background.
    pub fn start_compact(&self, name: &str) -> Result<Operation, ServiceError> {
        let entry = self.get(name)?;
        let Some(live) = entry.live.clone() else {
            return Err(ServiceError::FailedPrecondition(format!(
                "collection {name:?} is not mutable; it has nothing to compact (rebuild it with BuildIndex)"
            )));
        };
        let Some(f) = self.flusher.get() else {
            return Err(ServiceError::Unavailable("the flusher is not running".into()));
        };
        let op_id = format!("compact-{}-{}", name, self.next_op.fetch_add(1, Ordering::Relaxed));
        let op = Arc::new(Mutex::new(Operation {
            id: op_id.clone(),
            collection: name.into(),
            state: OpState::Running,
            stage: "queued".into(),
            progress: 0.0,
            started: Instant::now(),
            finished: None,
            error: String::new(),
            vector_count: live.coll.len() as u64,
        }));
        self.ops.lock().expect("lock").insert(op_id, op.clone());
        f.compact(live, op.clone());
        let snapshot = op.lock().expect("lock").clone();
        Ok(snapshot)
    }

    /// The budget, bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Open an index directory, refusing it if it would push RAM past the
    /// budget (`replacing` bytes are about to be released).
    fn open_index(&self, dir: &Path, replacing: u64) -> Result<OpenIndex, ServiceError> {
        let mut index = DiskIndex::open(dir).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let mut ram = index.ram().total();
        let id_map = if index.ids().iter().enumerate().all(|(i, &x)| x == i as u64) {
            None
        } else {
            let m: HashMap<u64, u32> = index.ids().iter().enumerate().map(|(i, &x)| (x, i as u32)).collect();
            ram += m.capacity() as u64 * 16;
            Some(m)
        };
        let cache_bytes = (self.cache_nodes * index.header().layout.node_size) as u64;
        let in_use = self.ram_in_use().saturating_sub(replacing);
        if in_use + ram + cache_bytes > self.budget {
            return Err(ServiceError::ResourceExhausted(format!(
                "opening {} needs {} MiB of RAM (PQ codes, navigation tier, id map, cache) but only {} of the memory budget's {} MiB are free",
                dir.display(),
                (ram + cache_bytes) >> 20,
                self.budget.saturating_sub(in_use) >> 20,
                self.budget >> 20
            )));
        }
        if self.cache_nodes > 0 {
            index
                .warm_cache(self.cache_nodes, self.io)
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
        }
        let graph = std::fs::File::open(index.graph_path())
            .map_err(|e| ServiceError::Internal(format!("{}: {e}", index.graph_path().display())))?;
        let disk_bytes = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .sum();
        Ok(OpenIndex {
            key: self.next_key.fetch_add(1, Ordering::Relaxed),
            index: Arc::new(index),
            id_map,
            graph,
            disk_bytes,
        })
    }

    /// Create an empty collection.
    pub fn create(
        &self,
        name: &str,
        dim: u32,
        metric: Metric,
        params: IndexParams,
        stored: Option<StoredType>,
        mutable: bool,
    ) -> Result<CollectionMeta, ServiceError> {
        check_name(name)?;
        if !(1..=4096).contains(&dim) {
            return Err(ServiceError::InvalidArgument(format!(
                "dim = {dim} is out of range 1..=4096"
            )));
        }
        let params = params.resolve(dim)?;
        let stored = stored.unwrap_or(if dim >= 512 { StoredType::F16 } else { StoredType::F32 });
        let mut entries = self.entries.write().expect("lock");
        if entries.contains_key(name) {
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
            state: if mutable { State::Ready } else { State::Empty },
            index_dir: None,
            generation: 0,
            operation_id: String::new(),
            error: String::new(),
            vector_count: 0,
            mutable,
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
        let live = if mutable {
            match self.open_live(&meta) {
                Ok(l) => Some(Arc::new(l)),
                Err(e) => {
                    let _ = self.remove_collection_dir(name);
                    return Err(e);
                }
            }
        } else {
            None
        };
        entries.insert(
            name.into(),
            Arc::new(Entry {
                meta: RwLock::new(meta.clone()),
                open: RwLock::new(None),
                dropped: Default::default(),
                live,
            }),
        );
        tracing::info!(collection = name, dim, %metric, mutable, "created");
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
        if entry.meta.read().expect("lock").state == State::Building {
            return Err(ServiceError::FailedPrecondition(format!(
                "collection {name:?} is building; wait for the build to finish"
            )));
        }
        self.entries.write().expect("lock").remove(name);
        entry.dropped.store(true, Ordering::SeqCst);
        *entry.open.write().expect("lock") = None;
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

    /// A build operation by id.
    pub fn operation(&self, id: &str) -> Result<Operation, ServiceError> {
        self.ops
            .lock()
            .expect("lock")
            .get(id)
            .map(|o| o.lock().expect("lock").clone())
            .ok_or_else(|| ServiceError::NotFound(format!("operation {id:?} does not exist")))
    }

    /// Start building `name` from `source` in the background. Checks the
    /// file, the dimension and the memory budget first.
    pub fn start_build(
        self: &Arc<Self>,
        name: &str,
        source: &Path,
        ids_path: Option<&Path>,
        threads: usize,
    ) -> Result<Operation, ServiceError> {
        let entry = self.get(name)?;
        let file = VectorFile::open(source)
            .map_err(|e| ServiceError::InvalidArgument(format!("source_path {}: {e}", source.display())))?;
        let (n, dim) = (file.len(), file.dim());
        let ids: Vec<u64> = match ids_path {
            None => (0..n as u64).collect(),
            Some(p) => read_ids(p, n)?,
        };
        let meta = entry.meta.read().expect("lock").clone();
        if meta.mutable {
            return Err(ServiceError::FailedPrecondition(format!(
                "collection {name:?} is mutable: fill it with Upsert or BulkUpsert (BuildIndex is for read-only collections)"
            )));
        }
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
        // The finished index's RAM must fit beside what is open now, and
        // the build itself beside it while it runs.
        let after = n as u64 * (meta.params.pq_bytes as u64 + 8) + (self.cache_nodes as u64 * 4096);
        let in_use = self.ram_in_use();
        if in_use + need.max(after) > self.budget {
            return Err(ServiceError::ResourceExhausted(format!(
                "building {name:?} from {n} x {dim} vectors needs about {} MiB ({detail}) but {} of the memory budget's {} MiB are free",
                need.max(after) >> 20,
                self.budget.saturating_sub(in_use) >> 20,
                self.budget >> 20
            )));
        }
        let op_id = format!("build-{}-{}", name, self.next_op.fetch_add(1, Ordering::Relaxed));
        let generation;
        {
            let mut m = entry.meta.write().expect("lock");
            if m.state == State::Building {
                return Err(ServiceError::FailedPrecondition(format!(
                    "collection {name:?} is already building (operation {})",
                    m.operation_id
                )));
            }
            m.state = State::Building;
            m.generation += 1;
            generation = m.generation;
            m.operation_id = op_id.clone();
            m.error.clear();
            self.persist(&m)?;
        }
        let op = Arc::new(Mutex::new(Operation {
            id: op_id.clone(),
            collection: name.into(),
            state: OpState::Running,
            stage: "reading".into(),
            progress: 0.0,
            started: Instant::now(),
            finished: None,
            error: String::new(),
            vector_count: n as u64,
        }));
        self.ops.lock().expect("lock").insert(op_id.clone(), op.clone());
        self.reserved.fetch_add(need, Ordering::Relaxed);
        let cat = self.clone();
        let name = name.to_string();
        let source = source.to_path_buf();
        let op_thread = op.clone();
        std::thread::Builder::new()
            .name(format!("build-{name}"))
            .spawn(move || {
                let op = op_thread;
                let res = cat.run_build(&entry, &name, &source, file, &ids, &o, generation, &op);
                cat.reserved.fetch_sub(need, Ordering::Relaxed);
                let mut m = entry.meta.write().expect("lock");
                let mut g = op.lock().expect("lock");
                g.finished = Some(Instant::now());
                match res {
                    Ok(()) => {
                        g.state = OpState::Done;
                        g.progress = 1.0;
                        g.stage = "done".into();
                        tracing::info!(collection = %name, seconds = g.started.elapsed().as_secs_f64(), "build done");
                    }
                    Err(e) => {
                        g.state = OpState::Failed;
                        g.error = e.to_string();
                        m.state = if entry.open.read().expect("lock").is_some() {
                            State::Ready
                        } else {
                            State::Failed
                        };
                        m.error = e.to_string();
                        tracing::error!(collection = %name, error = %e, "build failed");
                        if !entry.dropped.load(Ordering::SeqCst) {
                            let _ = cat.persist(&m);
                        }
                    }
                }
            })
            .map_err(|e| ServiceError::Internal(format!("cannot start the build thread: {e}")))?;
        let snapshot = op.lock().expect("lock").clone();
        Ok(snapshot)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_build(
        &self,
        entry: &Entry,
        name: &str,
        source: &Path,
        file: VectorFile,
        ids: &[u64],
        o: &IndexBuildOptions,
        generation: u64,
        op: &Mutex<Operation>,
    ) -> Result<(), ServiceError> {
        let dir = self.dir(name);
        let final_name = format!("index-{generation}");
        let tmp = dir.join(format!("{final_name}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        file.check_finite()
            .map_err(|e| ServiceError::InvalidArgument(format!("source_path {}: {e}", source.display())))?;
        let data = file.f32_data();
        let dim = file.dim();
        // Stage weights for one overall progress figure.
        let weight = |stage: &str| -> (f64, f64) {
            match stage {
                "pq" => (0.0, 0.1),
                "graph" => (0.1, 0.85),
                "nav" => (0.85, 0.9),
                _ => (0.9, 0.99),
            }
        };
        build_index(data, dim, ids, &tmp, o, &mut |stage, done, total| {
            let (a, b) = weight(stage);
            let f = if total > 0 { done as f64 / total as f64 } else { 0.0 };
            let mut g = op.lock().expect("lock");
            g.stage = stage.to_string();
            g.progress = g.progress.max(a + (b - a) * f);
        })
        .map_err(|e| ServiceError::Internal(format!("build failed: {e}")))?;
        if entry.dropped.load(Ordering::SeqCst) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(ServiceError::NotFound(format!(
                "collection {name:?} was dropped during the build"
            )));
        }
        let final_dir = dir.join(&final_name);
        std::fs::rename(&tmp, &final_dir).map_err(|e| ServiceError::Internal(format!("{}: {e}", tmp.display())))?;
        op.lock().expect("lock").stage = "opening".into();
        let replacing = entry.open.read().expect("lock").as_ref().map_or(0, |o| o.ram().total());
        let open = self.open_index(&final_dir, replacing)?;
        let n = open.index.len() as u64;
        let old_dir;
        {
            let mut m = entry.meta.write().expect("lock");
            old_dir = m.index_dir.replace(final_name);
            m.state = State::Ready;
            m.vector_count = n;
            m.error.clear();
            self.persist(&m)?;
            *entry.open.write().expect("lock") = Some(Arc::new(open));
        }
        if let Some(old) = old_dir {
            // Searches still holding the old index keep reading the
            // unlinked files until they finish.
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
        Ok(())
    }

    fn persist(&self, m: &CollectionMeta) -> Result<(), ServiceError> {
        let path = self.dir(&m.name).join("collection.json");
        write_atomic(self.fs.as_ref(), &path, &serde_json::to_vec_pretty(m).expect("json"))
            .map_err(|e| ServiceError::Internal(format!("{}: {e}", path.display())))
    }
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
    fn in_use(&self) -> u64 {
        self.ram_in_use()
    }
    fn budget(&self) -> u64 {
        self.budget
    }
    fn reserve(&self, bytes: i64) {
        if bytes >= 0 {
            self.reserved.fetch_add(bytes as u64, Ordering::Relaxed);
        } else {
            self.reserved.fetch_sub(bytes.unsigned_abs(), Ordering::Relaxed);
        }
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
            let c = Catalog::open(d.path(), IoBackend::Auto, 0, 1 << 30, 1, WriteSettings::default()).unwrap();
            c.create("a", 8, Metric::L2, z, None, false).unwrap();
            assert!(matches!(
                c.create("a", 8, Metric::L2, z, None, false),
                Err(ServiceError::AlreadyExists(_))
            ));
        }
        let c = Catalog::open(d.path(), IoBackend::Auto, 0, 1 << 30, 1, WriteSettings::default()).unwrap();
        let e = c.get("a").unwrap();
        assert_eq!(e.meta.read().unwrap().state, State::Empty);
        c.drop_collection("a").unwrap();
        assert!(matches!(c.get("a"), Err(ServiceError::NotFound(_))));
    }
}
