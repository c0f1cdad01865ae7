//! Snapshots of the catalog's collections: one written while the
//! collection serves (the engine's backup, carrying its
//! `collection.json`), and one restored as a new collection, into the
//! running catalog or, offline, into a stopped server's data directory.
//!
//! Owns: the staging directory of a restore
//! (`collections/.restore-<name>-<n>/`, removed at start when a crash
//! left it), the name held while a restore runs, the metadata a restored
//! collection gets (its new name, a new incarnation), the memory budget
//! check of a restored collection, and the mapping of the engine's
//! [`BackupError`] to statuses. Does not own: the snapshot's files and
//! their checks (`quarry_engine::collection::{backup, restore}`), the
//! rules for the paths a client may name and the replication policy
//! (`crate::service`), the data directory's lock (`crate::datadir`).
//!
//! **Crash safety of a restore.** The collection is built whole under the
//! staging name (`collection.json` last), then renamed to
//! `collections/<name>` and `collections/` fsynced: a crash before the
//! rename leaves a staging directory that the next start deletes, after it
//! a collection that the next start opens (its recovery replays the
//! snapshot's log).

use super::*;
use quarry_engine::collection::{restore_backup, verify_backup};
pub use quarry_engine::collection::{BackupError, BackupInfo, BackupReport, RestoreReport};

/// Prefix of a restore's staging directory under `collections/`.
pub(crate) const RESTORE_PREFIX: &str = ".restore-";

/// The status of a snapshot failure.
pub fn backup_error(e: BackupError) -> ServiceError {
    let m = e.to_string();
    match e {
        BackupError::Exists { .. } => ServiceError::AlreadyExists(m),
        BackupError::NotFound { .. } => ServiceError::NotFound(m),
        BackupError::InvalidArgument(_) => ServiceError::InvalidArgument(m),
        BackupError::Busy { .. } | BackupError::FailedPrecondition(_) | BackupError::Damaged { .. } => {
            ServiceError::FailedPrecondition(m)
        }
        BackupError::Collection(c) => crate::live::live_error(c),
        BackupError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            ServiceError::ResourceExhausted(format!("the disk is full: {m}"))
        }
        BackupError::Wal(_) | BackupError::Io { .. } => ServiceError::Internal(m),
    }
}

/// A name held by a running restore (released on drop).
struct Held<'a>(&'a Catalog, String);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.restoring.lock().expect("lock").remove(&self.1);
    }
}

impl Catalog {
    /// Whether a restore holds `name` (a create of it is refused).
    pub(crate) fn restoring(&self, name: &str) -> bool {
        self.restoring.lock().expect("lock").contains(name)
    }

    /// Write a snapshot of collection `name` into the new directory `out`
    /// (see `Collection::backup`), at background priority, on its own
    /// thread.
    pub fn snapshot_collection(&self, name: &str, out: &Path) -> Result<BackupInfo, ServiceError> {
        let entry = self.get(name)?;
        let meta = serde_json::to_vec_pretty(&*entry.meta.read().expect("lock")).expect("json");
        let live = entry.live.clone();
        drop(entry);
        let out = out.to_path_buf();
        let name = name.to_string();
        std::thread::Builder::new()
            .name(format!("snapshot-{name}"))
            .spawn(move || {
                let _background = quarry_engine::runtime::BackgroundPriority::enter();
                live.coll
                    .backup(&out, &name, &meta, &mut |_, _, _| {})
                    .map_err(backup_error)
            })
            .map_err(|e| ServiceError::Internal(format!("cannot start the snapshot thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(ServiceError::Internal("the snapshot thread panicked".into())))
    }

    /// Create collection `name` from the snapshot in `dir` (checked first)
    /// and put it in service: staged, renamed into place, opened (its
    /// recovery replays the snapshot's log), checked against the memory
    /// budget. On any failure nothing of it is left.
    pub fn restore_collection(&self, dir: &Path, name: &str) -> Result<Arc<Entry>, ServiceError> {
        check_name(name)?;
        let _held = {
            let entries = self.entries.write().expect("lock");
            if entries.contains_key(name) || !self.restoring.lock().expect("lock").insert(name.to_string()) {
                return Err(ServiceError::AlreadyExists(format!(
                    "collection {name:?} already exists"
                )));
            }
            Held(self, name.to_string())
        };
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (mut meta, report) = stage(self.fs.as_ref(), &self.root, dir, name, key)?;
        let undo = |e: ServiceError| {
            if let Err(r) = self.remove_collection_dir(name) {
                tracing::error!(collection = name, error = %r, "cannot remove a restore that failed");
            }
            e
        };
        let live = self.open_live(&meta).map_err(undo)?;
        let ram = live.coll.ram().total() as u64;
        meta.vector_count = live.coll.len() as u64;
        let reservation = self
            .reserve(ram, &format!("restoring collection {name:?} from {}", dir.display()))
            .and_then(|r| self.persist(&meta).map(|()| r));
        let reservation = match reservation {
            Ok(r) => r,
            Err(e) => {
                drop(live);
                return Err(undo(e));
            }
        };
        let entry = Arc::new(Entry {
            meta: RwLock::new(meta),
            dropped: Default::default(),
            live: Arc::new(live),
        });
        self.entries
            .write()
            .expect("lock")
            .insert(name.to_string(), entry.clone());
        drop(reservation);
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.kick_flush(&entry.live);
        tracing::info!(
            collection = name, snapshot = %dir.display(), source = %report.source, lsn = report.lsn,
            vectors = entry.live.coll.len(), linked = report.placed.linked_files, copied = report.placed.copied_files,
            "restored from a snapshot"
        );
        Ok(entry)
    }
}

/// Check the snapshot in `dir` (every file, the log's copy).
pub fn verify_snapshot(dir: &Path) -> Result<BackupReport, ServiceError> {
    verify_backup(&RealFs, dir).map_err(backup_error)
}

/// Restore the snapshot in `dir` as collection `name` into the data
/// directory of a stopped quarryd (it opens it at its next start). Holds
/// the data directory's lock throughout, so a quarryd running on it (or
/// starting meanwhile) makes this fail. Refused in a data directory that
/// belongs to a replication pair (it holds `node.json`). The memory
/// budget is checked when quarryd opens the collection.
pub fn restore_offline(
    data_dir: &Path,
    dir: &Path,
    name: &str,
) -> Result<(CollectionMeta, RestoreReport), ServiceError> {
    check_name(name)?;
    if !data_dir.is_dir() {
        return Err(ServiceError::NotFound(format!(
            "data directory {} does not exist",
            data_dir.display()
        )));
    }
    let _lock =
        crate::datadir::DataDirLock::acquire(data_dir).map_err(|e| ServiceError::FailedPrecondition(e.to_string()))?;
    let node = data_dir.join(crate::replication::identity::NODE_FILE);
    if node.exists() {
        return Err(ServiceError::FailedPrecondition(format!(
            "{} belongs to a replication pair ({} exists): a restored collection is not replicated correctly; restore on a lone node",
            data_dir.display(),
            node.display()
        )));
    }
    let fs = RealFs;
    let root = data_dir.join("collections");
    if !root.is_dir() {
        fs.create_dir_all(&root)
            .and_then(|_| fs.sync_dir(data_dir))
            .map_err(|e| ServiceError::Internal(format!("{}: {e}", root.display())))?;
    }
    stage(&fs, &root, dir, name, std::process::id() as u64)
}

/// The collection `name` from the snapshot in `dir`, placed at
/// `root/<name>` (see the module doc); its metadata as written.
fn stage(
    fs: &dyn Vfs,
    root: &Path,
    dir: &Path,
    name: &str,
    key: u64,
) -> Result<(CollectionMeta, RestoreReport), ServiceError> {
    let staging = root.join(format!("{RESTORE_PREFIX}{name}-{key}"));
    let internal = |p: &Path, e: std::io::Error| ServiceError::Internal(format!("{}: {e}", p.display()));
    if fs.exists(&staging) {
        fs.remove_dir_all(&staging).map_err(|e| internal(&staging, e))?;
    }
    fs.create_dir_all(&staging).map_err(|e| internal(&staging, e))?;
    let placed = (|| {
        let report = restore_backup(fs, dir, &staging.join("live")).map_err(backup_error)?;
        let meta = restored_meta(&report, dir, name)?;
        write_atomic(
            fs,
            &staging.join("collection.json"),
            &serde_json::to_vec_pretty(&meta).expect("json"),
        )
        .map_err(|e| internal(&staging, e))?;
        let target = root.join(name);
        if fs.exists(&target.join("collection.json")) {
            return Err(ServiceError::AlreadyExists(format!(
                "collection {name:?} already exists ({})",
                target.display()
            )));
        }
        if fs.exists(&target) {
            tracing::warn!(path = %target.display(), "removing the leftover of an interrupted create or drop");
            fs.remove_dir_all(&target).map_err(|e| internal(&target, e))?;
        }
        fs.rename(&staging, &target).map_err(|e| internal(&staging, e))?;
        fs.sync_dir(root).map_err(|e| internal(root, e))?;
        Ok((meta, report))
    })();
    if placed.is_err() && fs.exists(&staging) {
        if let Err(e) = fs.remove_dir_all(&staging) {
            tracing::warn!(path = %staging.display(), error = %e, "cannot remove a failed restore's staging directory; the next start removes it");
        }
    }
    placed
}

/// The restored collection's metadata: the source's `collection.json`
/// from the snapshot, renamed, a new incarnation, ready.
fn restored_meta(r: &RestoreReport, dir: &Path, name: &str) -> Result<CollectionMeta, ServiceError> {
    let bad = |why: String| {
        ServiceError::FailedPrecondition(format!("snapshot {}: its collection.json {why}", dir.display()))
    };
    if r.meta.is_empty() {
        return Err(bad("is missing (the snapshot was not written by quarryd)".into()));
    }
    let mut m: CollectionMeta = serde_json::from_slice(&r.meta).map_err(|e| bad(format!("does not parse: {e}")))?;
    if m.version != META_VERSION {
        return Err(bad(format!(
            "is version {}; this build reads {META_VERSION}",
            m.version
        )));
    }
    if m.dim != r.dim || m.metric != r.metric {
        return Err(bad(format!(
            "says {}-d {}; the snapshot's files are {}-d {}",
            m.dim, m.metric, r.dim, r.metric
        )));
    }
    m.name = name.to_string();
    m.incarnation = crate::meta::new_incarnation();
    m.state = State::Ready;
    m.index_dir = None;
    m.mutable = true;
    m.operation_id.clear();
    m.error.clear();
    Ok(m)
}

/// Remove what a restore cut short left at start: staging directories.
pub(crate) fn is_staging(name: &str) -> bool {
    name.starts_with(RESTORE_PREFIX)
}
