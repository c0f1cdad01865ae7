//! What replication needs from the catalog: its change counter, a
//! collection's `collection.json` as bytes, and a standby's changes to
//! its collections (take one out to cut or replace it, put it back,
//! create one from its primary's metadata, drop one its primary lacks).
//!
//! Owns: those steps, each leaving the catalog as a restart would find
//! it. Does not own: deciding them (`crate::replication`).

use super::*;
use quarry_engine::collection::Collection;

/// How long taking a collection out waits for searches and flushes that
/// still hold it.
const TAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Catalog {
    /// Bumped by every create, drop and replacement.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Set what wakes the holders of a collection taken out of service.
    pub fn set_retire_hook(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.retire_hook.set(f);
    }

    /// `collection.json` of `name`, as written.
    pub fn meta_bytes(&self, name: &str) -> Result<Vec<u8>, ServiceError> {
        let e = self.get(name)?;
        let m = e.meta.read().expect("lock");
        Ok(serde_json::to_vec_pretty(&*m).expect("json"))
    }

    /// The data directory of collection `name`'s engine files.
    pub fn live_dir(&self, name: &str) -> PathBuf {
        self.dir(name).join("live")
    }

    /// The file system the catalog writes through.
    pub fn vfs(&self) -> Arc<dyn Vfs> {
        self.fs.clone()
    }

    /// The engine options collection `meta` opens with.
    pub fn options_of(&self, meta: &CollectionMeta) -> quarry_engine::collection::CollectionOptions {
        let mut build = self.build_options(meta, 0, 0);
        if meta.params.nav_sample == 0 {
            build.nav_sample = usize::MAX;
        }
        Live::options_for(meta.dim as usize, &build, &meta.write_settings(&self.writes))
    }

    /// Take collection `name` out of service (searches in flight finish
    /// first; new ones get NOT_FOUND meanwhile) and hand over its engine
    /// collection, closed to everyone else, with its metadata.
    pub fn take(&self, name: &str) -> Result<(CollectionMeta, Collection), ServiceError> {
        let entry = self
            .entries
            .write()
            .expect("lock")
            .remove(name)
            .ok_or_else(|| ServiceError::NotFound(format!("collection {name:?} does not exist")))?;
        self.changes.fetch_add(1, Ordering::SeqCst);
        let meta = entry.meta.read().expect("lock").clone();
        let mut live = entry.live.clone();
        live.retired.store(true, Ordering::SeqCst);
        drop(entry);
        let t = Instant::now();
        let mut nudged = None::<Instant>;
        let live = loop {
            match Arc::try_unwrap(live) {
                Ok(l) => break l,
                Err(back) if t.elapsed() < TAKE_WAIT => {
                    live = back;
                    if nudged.is_none_or(|n| n.elapsed() > std::time::Duration::from_millis(100)) {
                        if let Some(h) = self.retire_hook.get() {
                            h();
                        }
                        nudged = Some(Instant::now());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(back) => {
                    // Put it back rather than lose it.
                    back.retired.store(false, Ordering::SeqCst);
                    let entry = Arc::new(Entry {
                        meta: RwLock::new(meta.clone()),
                        dropped: Default::default(),
                        live: back,
                    });
                    self.entries.write().expect("lock").insert(name.to_string(), entry);
                    return Err(ServiceError::Unavailable(format!(
                        "collection {name:?} is still held by a search, flush or build after {TAKE_WAIT:?}; it stays as it was"
                    )));
                }
            }
        };
        Ok((meta, live.coll))
    }

    /// Put a collection (taken, cut or installed) back in service.
    pub fn put(&self, meta: CollectionMeta, coll: Collection) -> Arc<Entry> {
        let build = {
            let mut b = self.build_options(&meta, 0, 0);
            if meta.params.nav_sample == 0 {
                b.nav_sample = usize::MAX;
            }
            b
        };
        let live = Live::wrap(
            self.next_key.fetch_add(1, Ordering::Relaxed),
            &meta.name,
            coll,
            build,
            &meta.write_settings(&self.writes),
        );
        let entry = Arc::new(Entry {
            meta: RwLock::new(meta.clone()),
            dropped: Default::default(),
            live: Arc::new(live),
        });
        self.entries
            .write()
            .expect("lock")
            .insert(meta.name.clone(), entry.clone());
        self.changes.fetch_add(1, Ordering::SeqCst);
        if let Some(f) = self.flusher.get() {
            f.kick(&entry.live);
        }
        entry
    }

    /// On a standby: make collection `meta.name` the primary's incarnation
    /// `meta` (checked by [`CollectionMeta::from_peer`]), its engine files put in place by
    /// `install(fs, live_dir, options)`, which returns the opened
    /// collection. An existing collection of another incarnation is
    /// dropped first; one of the same incarnation is taken out and handed
    /// to the install (which replaces its files atomically).
    pub fn install_replica(
        &self,
        meta: CollectionMeta,
        install: impl FnOnce(
            Arc<dyn Vfs>,
            &Path,
            quarry_engine::collection::CollectionOptions,
        ) -> Result<Collection, ServiceError>,
    ) -> Result<Arc<Entry>, ServiceError> {
        let existing = self.get(&meta.name).ok();
        match existing {
            Some(e) if e.meta.read().expect("lock").incarnation == meta.incarnation => {
                drop(e);
                // Closed here; the install swaps its files.
                let _ = self.take(&meta.name)?;
            }
            Some(e) => {
                drop(e);
                self.drop_collection(&meta.name)?;
            }
            None => {}
        }
        let dir = self.dir(&meta.name);
        let fs = self.fs.as_ref();
        let internal = |e: std::io::Error| ServiceError::Internal(format!("{}: {e}", dir.display()));
        if !fs.exists(&dir.join("collection.json")) {
            if fs.exists(&dir) {
                fs.remove_dir_all(&dir).map_err(internal)?;
            }
            fs.create_dir_all(&dir).map_err(internal)?;
            fs.sync_dir(&self.root).map_err(internal)?;
        }
        let mut m = meta;
        m.state = State::Ready;
        m.mutable = true;
        m.index_dir = None;
        self.persist(&m)?;
        let coll = install(self.fs.clone(), &dir.join("live"), self.options_of(&m))?;
        Ok(self.put(m, coll))
    }
}
