//! Flushes and merges: the fresh index (and, past `max_segments`, every
//! segment) folded into a new disk segment, then the manifest switched.
//!
//! Owns: freezing the fresh index, building the segment, the tombstones,
//! the manifest switch, undoing a failed one, and WAL retention after it.
//! Does not own: when a flush runs (the server's flusher) or its memory
//! budget (the caller reserves it before calling).
//!
//! Locks: the state lock is held only for work in RAM (the freeze, the
//! snapshots of what to write, and the final swap). Every file read,
//! build, write and fsync happens with no state lock held, so searches
//! and writes go on while a flush waits for the disk. `flush_lock` keeps
//! flushes one at a time, so the segment list cannot change under a
//! flush between its snapshot and its swap.

use super::manifest::{Manifest, MANIFEST_FILE, MANIFEST_VERSION};
use super::segment::{encode_tombstones, seg_name, Segment};
use super::{io_err, Collection, Loc, Result, State};
use crate::cancel::CancelToken;
use crate::graph::FreshIndex;
use crate::storage::write_atomic;
use crate::wal::Lsn;
use std::sync::atomic::Ordering;
use std::sync::Arc;

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

/// The vectors a flush writes, with their slots, ids and payloads.
#[derive(Default)]
struct Batch {
    data: Vec<f32>,
    slots: Vec<u64>,
    ids: Vec<u64>,
    payloads: Vec<Arc<[u8]>>,
}

impl Collection {
    /// Fold the fresh index (and, past `max_segments`, every segment) into
    /// a new disk segment and switch the manifest; see the module doc.
    pub fn flush(&self, progress: &mut dyn FnMut(&str, usize, usize)) -> Result<super::FlushReport> {
        self.flush_with(false, &CancelToken::default(), progress)
    }

    /// Merge the fresh index and every segment into one new segment now,
    /// dropping every dead vector (`quarryctl compact`). Once `cancel` is
    /// set the merge stops at its next check and the collection is left as
    /// it was (nothing of the new segment kept).
    pub fn compact(&self, cancel: &CancelToken, progress: &mut dyn FnMut(&str, usize, usize)) -> Result<FlushReport> {
        self.flush_with(true, cancel, progress)
    }

    /// What the next flush would do: whether it merges every segment
    /// (`compact`, or the segment count at `max_segments`), and how many
    /// vectors it would write (an upper bound: dead ones are skipped). The
    /// one place the merge decision is made.
    pub fn flush_plan(&self, compact: bool) -> (bool, usize) {
        let st = self.state.read().expect("lock");
        let merge = self.merges(st.segments.len(), compact);
        let fresh = st.active.len() + st.frozen.as_ref().map_or(0, |f| f.len());
        (merge, if merge { st.slots.len() } else { fresh })
    }

    fn merges(&self, segments: usize, compact: bool) -> bool {
        compact || segments >= self.opts.max_segments.max(1)
    }

    /// Whether a flush or compaction is running.
    pub fn flushing(&self) -> bool {
        self.flush_lock.try_lock().is_err()
    }

    fn flush_with(
        &self,
        force_merge: bool,
        cancel: &CancelToken,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<FlushReport> {
        let mut generation = self.flush_lock.lock().expect("lock");
        let dim = self.opts.dim;
        // Freeze: new writes go to a new fresh index from here on. In RAM
        // only; the segments to merge are snapshotted (as Arcs, with their
        // live rows) under the same lock, and read after it is released.
        let (checkpoint, merged, mut batch, old_rows) = {
            let applied = self.applied.lock().expect("lock");
            let mut st = self.state.write().expect("lock");
            let checkpoint = applied.applied;
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
            let mut batch = Batch::default();
            for i in 0..fresh.len() {
                let s = fresh.slot(i);
                if let Some(e) = st.slots.get(&s) {
                    batch.data.extend_from_slice(fresh.vector(i));
                    batch.slots.push(s);
                    batch.ids.push(e.id);
                    batch.payloads.push(e.payload.clone());
                }
            }
            st.frozen = Some(fresh);
            let merged = self.merges(st.segments.len(), force_merge);
            let mut old_rows = Vec::new();
            if merged {
                for (k, seg) in st.segments.iter().enumerate() {
                    // Row order, not the map's (per-process random) order,
                    // so a merge of the same state builds the same segment.
                    let mut rows: Vec<(u32, u64)> = seg.rows.iter().map(|(&slot, &row)| (row, slot)).collect();
                    rows.sort_unstable();
                    let live: Vec<(u32, u64, u64, Arc<[u8]>)> = rows
                        .into_iter()
                        .filter_map(|(row, slot)| {
                            let e = st.slots.get(&slot)?;
                            (e.loc == Loc::Segment(k as u32)).then(|| (row, slot, e.id, e.payload.clone()))
                        })
                        .collect();
                    old_rows.push((seg.clone(), live));
                }
            }
            (checkpoint, merged, batch, old_rows)
        };
        // A write after the freeze that deletes or overwrites one of these
        // has an LSN past the checkpoint: it is replayed from the WAL after
        // a restart, and the tombstones below catch it now.
        for (seg, live) in &old_rows {
            let all = match seg.all_vectors(dim) {
                Ok(v) => v,
                Err(e) => {
                    self.unfreeze();
                    return Err(e);
                }
            };
            for (row, slot, id, payload) in live {
                batch
                    .data
                    .extend_from_slice(&all[*row as usize * dim..(*row as usize + 1) * dim]);
                batch.slots.push(*slot);
                batch.ids.push(*id);
                batch.payloads.push(payload.clone());
            }
        }
        drop(old_rows);
        let name = seg_name(checkpoint, *generation + 1);
        let n = batch.slots.len();
        let built = if n > 0 {
            self.write_segment(
                &name,
                &batch.data,
                &batch.slots,
                &batch.ids,
                &batch.payloads,
                0,
                None,
                cancel,
                progress,
            )
            .map(Some)
        } else {
            Ok(None)
        };
        let seg = match built {
            Ok(s) => s.map(Arc::new),
            Err(e) => {
                self.unfreeze();
                return Err(e);
            }
        };
        drop(batch);
        // The segment list after the switch, and the tombstones: dead
        // slots still present in the segments it lists (RAM only, under a
        // read lock). Kills applied after this point have LSNs past the
        // checkpoint and are replayed from the WAL.
        let (old, keep, tomb) = {
            let st = self.state.read().expect("lock");
            let old: Vec<Arc<Segment>> = st.segments.clone();
            let mut keep: Vec<Arc<Segment>> = if merged { Vec::new() } else { old.clone() };
            keep.extend(seg.iter().cloned());
            let mut dead: Vec<u64> = keep
                .iter()
                .flat_map(|s| s.rows.keys().copied())
                .filter(|s| !st.slots.contains_key(s))
                .collect();
            dead.sort_unstable();
            (old, keep, dead)
        };
        let retire_new = |seg: &Option<Arc<Segment>>| {
            if let Some(s) = seg {
                s.retired.store(true, Ordering::Release);
            }
        };
        let tomb_name = format!("tomb-{checkpoint:020}-{:08}.bin", *generation + 1);
        let prepared = (|| -> Result<Option<String>> {
            if tomb.is_empty() {
                return Ok(None);
            }
            let p = self.dir.join(&tomb_name);
            write_atomic(self.fs.as_ref(), &p, &encode_tombstones(&tomb)).map_err(io_err(&p, "write"))?;
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
                retire_new(&seg);
                drop((seg, keep));
                self.unfreeze();
                return Err(e);
            }
        };
        // The manifest switch, with no state lock held: searches go on
        // reading the frozen index and the old segments meanwhile.
        let m = Manifest {
            version: MANIFEST_VERSION,
            dim,
            metric: self.opts.metric.name().into(),
            checkpoint_lsn: checkpoint,
            generation: *generation + 1,
            segments: keep.iter().map(|s| s.name.clone()).collect(),
            tombstones: tomb,
        };
        let mpath = self.dir.join(MANIFEST_FILE);
        let bytes = m.encode();
        if let Err(e) = write_atomic(self.fs.as_ref(), &mpath, &bytes) {
            let err = super::CollectionError::Io {
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
                self.install(keep, merged);
                *generation += 1;
                return Err(err);
            }
            // The old manifest is current: the frozen index becomes active
            // again, and the new segment's files go.
            retire_new(&seg);
            drop((seg, keep));
            self.unfreeze();
            return Err(err);
        }
        *generation += 1;
        let segments = keep.len();
        self.install(keep, merged);
        drop(seg);
        if merged {
            for s in &old {
                s.retired.store(true, Ordering::Release);
            }
        }
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

    /// The switch in RAM: `keep` (whose last entry is the new segment, if
    /// the flush wrote one) replaces the frozen index and, merged, every
    /// old segment, in one step under the write lock.
    fn install(&self, keep: Vec<Arc<Segment>>, merged: bool) {
        let mut st = self.state.write().expect("lock");
        let newk = if merged { 0 } else { st.segments.len() as u32 };
        for e in st.slots.values_mut() {
            e.loc = match e.loc {
                Loc::Frozen(_) => Loc::Segment(newk),
                Loc::Segment(_) if merged => Loc::Segment(newk),
                a => a,
            };
        }
        st.segments = keep;
        st.frozen = None;
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
}
