//! Loading many vectors at once: a file's vectors built into a segment at
//! batch-build speed (the Vamana build, not one insert at a time), and an
//! index built before collections took writes adopted as a segment.
//!
//! Owns: [`Collection::bulk_load`] and [`Collection::adopt_index`]. Does
//! not own: reading the source file (the caller's), the segment files
//! (`super::segment`) or recovery (`super::recovery` replays the
//! `AddSegment` record this logs).
//!
//! **Order.** A bulk load builds `bulk-<n>/` (temporary name, every file
//! fsynced, renamed, directory fsynced) while searches and writes go on,
//! then logs one `AddSegment` WAL record (made durable whatever the sync
//! policy) and applies it in LSN order like any write: each id in the
//! segment replaces the version live before that LSN, and writes after it
//! replace the segment's. Recovery replays the record by opening the same
//! directory, so the segment counts at its LSN until a flush lists it in
//! the manifest. A load cut short before its record leaves a directory
//! nobody names, removed at the next open.
//!
//! **Slots.** Row r of bulk load n has slot `2^63 | n << 32 | r`
//! ([`super::segment::bulk_slot`]): never an LSN, and unique because n is
//! one more than any bulk number in the segments or the log.

use super::apply::Pending;
use super::segment::{bulk_slot, load_segment};
use super::{apply_segment, broken, Collection, CollectionError, Op, Result};
use crate::cancel::CancelToken;
use crate::storage::write_atomic;
use crate::wal::Lsn;
use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a bulk load did.
#[derive(Clone, Debug, Default)]
pub struct BulkReport {
    /// Vectors loaded.
    pub vectors: usize,
    /// Of them, ids that had a live version when the load was logged.
    pub replaced: usize,
    /// The segment's directory name.
    pub segment: String,
    /// The LSN of its `AddSegment` record.
    pub lsn: Lsn,
}

impl Collection {
    /// Add `ids.len()` vectors (`data`: row-major, `dim` values each) as one
    /// new segment built at batch speed; each id replaces any earlier
    /// version. Durable and visible to every later search and get when
    /// this returns. Ids must be unique; every value finite. `payloads`:
    /// one per id, or none at all (all empty). `threads`: build threads (0
    /// = the collection's build setting).
    pub fn bulk_load(
        &self,
        data: Cow<'_, [f32]>,
        ids: &[u64],
        payloads: Vec<Vec<u8>>,
        threads: usize,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<BulkReport> {
        self.bulk_load_within(data, ids, payloads, threads, None, &CancelToken::default(), progress)
    }

    /// [`Collection::bulk_load`] whose segment build keeps within
    /// `ram_budget` bytes (by its estimate): past it, the build is
    /// partitioned (`index::partition`), or refused with the figures if
    /// even that cannot fit. `None`: the collection's build setting. Once
    /// `cancel` is set the build stops at its next check, removes what it
    /// wrote, and returns the build's `Cancelled` error; the collection is
    /// as it was.
    #[allow(clippy::too_many_arguments)]
    pub fn bulk_load_within(
        &self,
        data: Cow<'_, [f32]>,
        ids: &[u64],
        payloads: Vec<Vec<u8>>,
        threads: usize,
        ram_budget: Option<u64>,
        cancel: &CancelToken,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<BulkReport> {
        let dim = self.opts.dim;
        let n = ids.len();
        if n == 0 || data.len() != n * dim {
            return Err(CollectionError::InvalidArgument(format!(
                "a bulk load needs at least one vector and {dim} values per id: {} values for {n} ids",
                data.len()
            )));
        }
        if n as u64 >= 1 << 32 {
            return Err(CollectionError::InvalidArgument(format!(
                "a bulk load takes at most 4294967295 vectors; split {n} into several"
            )));
        }
        if !payloads.is_empty() && payloads.len() != n {
            return Err(CollectionError::InvalidArgument(format!(
                "{} payloads for {n} ids: give one per id or none",
                payloads.len()
            )));
        }
        if let Some((i, p)) = payloads
            .iter()
            .enumerate()
            .find(|(_, p)| p.len() > self.opts.max_payload)
        {
            return Err(CollectionError::InvalidArgument(format!(
                "payload for id {} is {} bytes; the limit is {}",
                ids[i],
                p.len(),
                self.opts.max_payload
            )));
        }
        for (i, v) in data.chunks_exact(dim).enumerate() {
            crate::vector::check_vector(dim, v).map_err(|error| CollectionError::Vector {
                field: format!("vector {i} (id {})", ids[i]),
                error,
            })?;
        }
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(CollectionError::InvalidArgument(format!(
                "id {} appears more than once in the bulk load",
                w[0]
            )));
        }
        drop(sorted);
        if self.broken.load(Ordering::Acquire) {
            return Err(broken());
        }
        let bulk = self.next_bulk.fetch_add(1, Ordering::AcqRel);
        if bulk >= 1 << 31 {
            return Err(CollectionError::InvalidArgument(
                "this collection has used every bulk load number; compact it into a new collection".into(),
            ));
        }
        let name = format!("bulk-{bulk:010}");
        let slots: Vec<u64> = (0..n).map(|r| bulk_slot(bulk, r)).collect();
        let payloads: Vec<Arc<[u8]>> = if payloads.is_empty() {
            vec![Arc::from(&[][..]); n]
        } else {
            payloads.into_iter().map(Arc::from).collect()
        };
        // The build, with no lock held: searches, writes and flushes go on.
        let seg = self.write_segment(
            &name, &data, &slots, ids, &payloads, threads, ram_budget, cancel, progress,
        )?;
        drop(data);
        let records: Vec<(u64, u64, Vec<u8>)> = slots
            .iter()
            .zip(ids)
            .zip(&payloads)
            .map(|((&s, &id), p)| (s, id, p.to_vec()))
            .collect();
        drop(payloads);
        // The switch: no flush may change the segment list from here until
        // the segment is in it.
        let _switch = self.flush_lock.lock().expect("lock");
        let body = Op::AddSegment { name: name.clone() }.encode();
        let replaced = {
            let st = self.state.read().expect("lock");
            records.iter().filter(|r| st.ids.contains_key(&r.1)).count()
        };
        // Perhaps logged when this fails (a failed sync): the directory
        // stays, and the next open keeps it if the record survived, or
        // removes it.
        let lsn = self.log(
            std::slice::from_ref(&body),
            None,
            std::iter::once(Pending::Segment(Arc::new(seg), records)),
        )?;
        if let Err(e) = self.wal.sync() {
            self.broken.store(true, Ordering::Release);
            self.applied_cv.notify_all();
            return Err(e.into());
        }
        self.pass_gate(lsn, None)?;
        self.apply_through(lsn)?;
        tracing::info!(dir = %self.dir.display(), segment = %name, vectors = n, replaced, lsn, "bulk load applied");
        Ok(BulkReport {
            vectors: n,
            replaced,
            segment: name,
            lsn,
        })
    }

    /// Adopt the index directory `rel` (relative to the collection
    /// directory, `../index-<gen>` in quarryd's layout: an index built from a
    /// file before every collection took writes) as this collection's first
    /// segment, with no change to its files. Its rows keep their ids, with
    /// empty payloads. The collection must hold nothing else; adopting the
    /// index it already holds does nothing.
    pub fn adopt_index(&self, rel: &str) -> Result<usize> {
        if !rel.starts_with("../") {
            return Err(CollectionError::InvalidArgument(format!(
                "{rel:?}: an adopted index is named relative to the collection directory, starting with ../"
            )));
        }
        let mut generation = self.flush_lock.lock().expect("lock");
        let _writers = self.applied.lock().expect("lock");
        let mpath = self.dir.join(super::MANIFEST_FILE);
        let bytes = self.fs.read(&mpath).map_err(super::io_err(&mpath, "read"))?;
        let mut m = super::Manifest::decode(&bytes)
            .map_err(|e| CollectionError::Corrupt(format!("{}: {e}", mpath.display())))?;
        if m.segments.iter().any(|s| s == rel) {
            return Ok(0);
        }
        {
            let st = self.state.read().expect("lock");
            if !st.segments.is_empty()
                || !st.slots.is_empty()
                || !st.active.is_empty()
                || self.wal.last_lsn() > m.checkpoint_lsn
            {
                return Err(CollectionError::InvalidArgument(format!(
                    "{}: only an empty collection can adopt an index",
                    self.dir.display()
                )));
            }
        }
        let (seg, records) = load_segment(&self.fs, &self.dir, rel, &self.opts)?;
        let n = records.len();
        m.segments = vec![rel.to_string()];
        m.generation = *generation + 1;
        write_atomic(self.fs.as_ref(), &mpath, &m.encode()).map_err(super::io_err(&mpath, "switch the manifest"))?;
        *generation += 1;
        apply_segment(&mut self.state.write().expect("lock"), Arc::new(seg), records);
        if self.next_bulk.load(Ordering::Acquire) == 0 {
            self.next_bulk.store(1, Ordering::Release);
        }
        tracing::info!(dir = %self.dir.display(), index = rel, vectors = n, "adopted an index built before writes");
        Ok(n)
    }
}
