//! Opening a collection: manifest, segments, tombstones, then the WAL
//! replayed from the checkpoint on.
//!
//! Owns: recovery, and the removal of what an interrupted flush left.
//! Does not own: the WAL's own torn-tail recovery (`crate::wal`).

use super::apply::Pending;
use super::manifest::{Manifest, MANIFEST_FILE};
use super::segment::{bulk_of, decode_tombstones, load_segment};
use super::{
    apply, apply_segment, io_err, Collection, CollectionError, CollectionOptions, Entry, Loc, Op, Result, State,
};
use crate::graph::FreshIndex;
use crate::storage::{write_atomic, Vfs};
use crate::wal::{Lsn, Wal};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, RwLock};

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

impl Collection {
    /// Open (or create) the collection in `dir`, recovering it.
    pub fn open(fs: Arc<dyn Vfs>, dir: &Path, opts: CollectionOptions) -> Result<(Collection, OpenReport)> {
        if opts.build.metric != opts.metric {
            return Err(CollectionError::InvalidArgument(
                "build.metric differs from metric".into(),
            ));
        }
        super::snapshot::finish_install(fs.as_ref(), dir)?;
        if !fs.exists(dir) {
            fs.create_dir_all(dir).map_err(io_err(dir, "create"))?;
            if let Some(p) = dir.parent() {
                fs.sync_dir(p).map_err(io_err(p, "sync"))?;
            }
        }
        let mpath = dir.join(MANIFEST_FILE);
        let manifest = if fs.exists(&mpath) {
            let b = fs.read(&mpath).map_err(io_err(&mpath, "read"))?;
            Manifest::decode(&b).map_err(|e| CollectionError::Corrupt(format!("{}: {e}", mpath.display())))?
        } else {
            let m = Manifest::new(opts.dim, opts.metric);
            write_atomic(fs.as_ref(), &mpath, &m.encode()).map_err(io_err(&mpath, "write"))?;
            m
        };
        manifest.check(mpath.clone(), opts.dim, opts.metric)?;
        // Leftovers of an interrupted flush.
        let mut removed = false;
        for name in fs.list(dir).map_err(io_err(dir, "list"))? {
            let p = dir.join(&name);
            // Bulk segments the manifest does not list may be named by a
            // WAL record after the checkpoint: decided after the replay.
            let stale_seg = name.starts_with("seg-") && !manifest.segments.contains(&name);
            let stale_tomb = name.starts_with("tomb-") && manifest.tombstones.as_deref() != Some(name.as_str());
            if stale_seg || stale_tomb || name.ends_with(".tmp") {
                tracing::info!(path = %p.display(), "removing a leftover of an interrupted flush");
                if name.starts_with("seg-") || name.starts_with("bulk-") {
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
                decode_tombstones(&b)
                    .map_err(|why| CollectionError::Corrupt(format!("{}: {why}", p.display())))?
                    .into_iter()
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
                    return Err(CollectionError::Corrupt(format!(
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
            return Err(CollectionError::Corrupt(format!(
                "{}: the checkpoint is LSN {} but the write-ahead log starts at {}",
                dir.display(),
                manifest.checkpoint_lsn,
                wal.first_lsn()
            )));
        }
        // The log must reach the checkpoint: if it ends before it, records
        // the segments hold are gone from it, and the next write would get
        // an LSN (and so a slot) that a segment already uses.
        if wal.last_lsn() < manifest.checkpoint_lsn {
            return Err(CollectionError::WalBehindCheckpoint {
                path: wal.newest_file(),
                last_lsn: wal.last_lsn(),
                checkpoint: manifest.checkpoint_lsn,
            });
        }
        let mut replayed = 0u64;
        let mut logged_segments: Vec<String> = Vec::new();
        // A sync primary's records after its standby's last ack were never
        // acknowledged: they stay pending (invisible) until the standby
        // confirms them or this node follows another and cuts them.
        let hold_after: Option<Lsn> = if opts.hold_unacked {
            wal.followers()
                .iter()
                .map(|f| f.acked)
                .min()
                .map(|a| a.max(manifest.checkpoint_lsn))
        } else {
            None
        };
        let mut pending = std::collections::BTreeMap::new();
        let mut cur = wal.cursor(from)?;
        loop {
            let recs = wal.read(&mut cur, 4 << 20)?;
            if recs.is_empty() {
                break;
            }
            for (lsn, body) in recs {
                let op = Op::decode(&body, opts.dim)
                    .map_err(|e| CollectionError::Corrupt(format!("{}: WAL record {lsn}: {e}", dir.display())))?;
                match op {
                    Op::AddSegment { name } => {
                        if !fs.exists(&dir.join(&name)) {
                            return Err(CollectionError::Corrupt(format!(
                                "{}: WAL record {lsn} adds segment {name}, which is missing",
                                dir.display()
                            )));
                        }
                        let (seg, records) = load_segment(&fs, dir, &name, &opts)?;
                        if hold_after.is_some_and(|h| lsn > h) {
                            pending.insert(lsn, Pending::Segment(Arc::new(seg), records));
                        } else {
                            apply_segment(&mut st, Arc::new(seg), records);
                        }
                        logged_segments.push(name);
                    }
                    op if hold_after.is_some_and(|h| lsn > h) => {
                        pending.insert(lsn, Pending::Op(op));
                    }
                    op => apply(&mut st, lsn, op, None),
                }
                replayed += 1;
            }
        }
        // A bulk segment neither listed nor logged is what a bulk load cut
        // short before its WAL record left.
        let mut removed = false;
        for name in fs.list(dir).map_err(io_err(dir, "list"))? {
            if name.starts_with("bulk-")
                && !st.segments.iter().any(|s| s.name == name)
                && !logged_segments.contains(&name)
            {
                let p = dir.join(&name);
                tracing::info!(path = %p.display(), "removing a bulk segment whose load did not finish");
                fs.remove_dir_all(&p).map_err(io_err(&p, "remove"))?;
                removed = true;
            }
        }
        if removed {
            fs.sync_dir(dir).map_err(io_err(dir, "sync"))?;
        }
        let held_slots = pending.values().flat_map(|p| match p {
            Pending::Segment(_, records) => records.iter().map(|r| r.0).collect(),
            Pending::Op(_) => Vec::new(),
        });
        let next_bulk = st
            .segments
            .iter()
            .flat_map(|s| s.rows.keys().copied())
            .chain(held_slots)
            .filter_map(bulk_of)
            .max()
            .map_or(1, |b| b + 1);
        let applied = hold_after.map_or(wal.last_lsn(), |h| h.min(wal.last_lsn()));
        if !pending.is_empty() {
            tracing::warn!(
                dir = %dir.display(), applied, held = pending.len(),
                "records after the standby's last acknowledgement are held back until it confirms them"
            );
        }
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
            Collection {
                fs,
                dir: dir.to_path_buf(),
                opts,
                wal,
                state: RwLock::new(st),
                applied: Mutex::new(super::apply::Applier { applied, pending }),
                applied_cv: Condvar::new(),
                broken: AtomicBool::new(false),
                flush_lock: Mutex::new(manifest.generation),
                next_bulk: std::sync::atomic::AtomicU64::new(next_bulk),
                gate: RwLock::new(None),
            },
            report,
        ))
    }
}
