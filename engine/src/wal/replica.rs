//! What a warm standby needs from the log beyond appending: records
//! appended at the LSNs the primary gave them, a crash-safe cut of a
//! divergent tail, and the epoch history (`super::epochs`) kept beside the
//! segments.
//!
//! Owns: [`Wal::append_at`], [`Wal::truncate_after`], [`Wal::begin_epoch`],
//! [`Wal::begin_epoch_at`], [`Wal::epochs`] and loading `epochs.bin` when
//! the log opens. Does not own: the stream or the decision to cut (the
//! server's replication), record bytes (`super::record`).
//!
//! A cut after LSN x deletes the segments that start after x, newest
//! first, syncing the directory after each, so a crash leaves the log a
//! contiguous prefix of what it was; then it truncates the segment that
//! holds x after x's record and syncs it; then it drops the epochs that
//! began after x and lowers followers that acked past x. A crash at any
//! point leaves a log ending somewhere between x and its old end, which the
//! caller's next divergence check cuts again. Appends waiting for a sync
//! while a cut runs fail with [`WalError::Truncated`]: their outcome is
//! whatever the cut left.

use super::epochs::{decode_epochs, encode_epochs, Epoch, EpochHistory, EPOCHS_FILE};
use super::record::{decode_record, HEADER};
use super::{io_err, Inner, Lsn, Wal, WalError, Writer};
use crate::storage::{write_atomic, SyncHandle, Vfs};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What [`Wal::truncate_after`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TruncateReport {
    /// Records removed (0 when the log already ended at or before the LSN).
    pub records: u64,
    /// Whole segment files deleted.
    pub segments_deleted: usize,
    /// Epochs forgotten because they began after the cut.
    pub epochs_forgotten: usize,
}

impl Wal {
    /// Append records that the primary numbered `first..`: `first` must be
    /// the log's next LSN ([`WalError::Position`] otherwise, and nothing is
    /// written). Durable on return under [`super::SyncPolicy::Always`], as
    /// [`Wal::append`].
    pub fn append_at(&self, first: Lsn, bodies: &[&[u8]]) -> Result<(), WalError> {
        self.append_inner(bodies, Some(first)).map(|_| ())
    }

    /// How many times the tail was cut since the log was opened: a reader
    /// that sees it change knows the records it read may have been
    /// replaced.
    pub fn cuts(&self) -> u64 {
        self.inner.cuts.load(Ordering::Acquire)
    }

    /// The epoch history (a copy).
    pub fn epochs(&self) -> EpochHistory {
        self.inner.epochs.lock().expect("lock").clone()
    }

    /// Begin epoch `e` at the log's next LSN (a promotion): written to
    /// `epochs.bin` before it returns. `e` must be newer than every epoch
    /// in the history. Returns the epoch's first LSN.
    pub fn begin_epoch(&self, e: Epoch) -> Result<Lsn, WalError> {
        let w = self.inner.w.lock().expect("lock");
        let first = self.inner.written.load(Ordering::Acquire) + 1;
        self.inner.begin_epoch_locked(e, first)?;
        drop(w);
        Ok(first)
    }

    /// On a standby: the primary says epoch `e` began at `first`. Already
    /// recorded so: nothing to do. Otherwise `first` must be the log's next
    /// LSN (the standby records an epoch before appending its records).
    pub fn begin_epoch_at(&self, e: Epoch, first: Lsn) -> Result<(), WalError> {
        let _w = self.inner.w.lock().expect("lock");
        if self.inner.epochs.lock().expect("lock").first_of(e) == Some(first) {
            return Ok(());
        }
        let next = self.inner.written.load(Ordering::Acquire) + 1;
        if first != next {
            return Err(WalError::Epoch(format!(
                "epoch {e} cannot begin at LSN {first}: the log's next LSN is {next}"
            )));
        }
        self.inner.begin_epoch_locked(e, first)
    }

    /// Remove every record after `lsn` (a divergent tail), crash-safely
    /// (see the module doc). `lsn` may be below the log's first LSN by at
    /// most one (cut everything); lower is [`WalError::Gone`]. Refused on a
    /// poisoned log.
    pub fn truncate_after(&self, lsn: Lsn) -> Result<TruncateReport, WalError> {
        let mut reg = self.inner.followers.lock().expect("lock");
        let mut w = self.inner.w.lock().expect("lock");
        if let Some(p) = self.inner.poisoned() {
            return Err(WalError::Poisoned(p));
        }
        let written = self.inner.written.load(Ordering::Acquire);
        let mut report = TruncateReport::default();
        let oldest = w.segs[0].first;
        if lsn + 1 < oldest {
            return Err(WalError::Gone { want: lsn + 1, oldest });
        }
        if lsn < written {
            self.inner.cuts.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = self.inner.cut_locked(&mut w, lsn, &mut report) {
                // The files may no longer match the log in memory: nothing
                // more is trusted until the log is reopened.
                self.inner
                    .poison(format!("cutting the log after LSN {lsn} failed: {e}"));
                return Err(e);
            }
            report.records = written - lsn;
            self.inner.written.store(lsn, Ordering::Release);
            self.inner.durable.fetch_min(lsn, Ordering::AcqRel);
        }
        {
            let mut ep = self.inner.epochs.lock().expect("lock");
            let mut h = ep.clone();
            let before = h.entries().len();
            if h.cut_after(lsn) {
                self.inner.save_epochs(&h)?;
                report.epochs_forgotten = before - h.entries().len();
                *ep = h;
            }
        }
        drop(w);
        if reg.map.values().any(|f| f.acked > lsn) {
            let mut map = reg.map.clone();
            for f in map.values_mut() {
                f.acked = f.acked.min(lsn);
            }
            self.inner.save_followers(&mut reg, map)?;
        }
        if report.records > 0 {
            tracing::warn!(
                after = lsn,
                records = report.records,
                segments = report.segments_deleted,
                "write-ahead log cut after a divergent tail"
            );
        }
        Ok(report)
    }
}

/// Byte offset just past record `lsn` in the segment at `path` (the
/// header's end when `lsn` is before the segment's first record).
fn record_end(fs: &dyn Vfs, path: &Path, first: Lsn, lsn: Lsn, max: usize) -> Result<u64, WalError> {
    if lsn < first {
        return Ok(HEADER as u64);
    }
    let b = fs.read(path).map_err(io_err(path, "read"))?;
    let mut off = HEADER;
    loop {
        let (h, _, next) = decode_record(&b, off, max).map_err(|why| WalError::Corrupt {
            path: path.to_path_buf(),
            offset: off as u64,
            why,
        })?;
        if h.lsn == lsn {
            return Ok(next as u64);
        }
        off = next;
    }
}

impl Inner {
    /// With the writer locked: record that `e` begins at `first`.
    fn begin_epoch_locked(&self, e: Epoch, first: Lsn) -> Result<(), WalError> {
        let mut ep = self.epochs.lock().expect("lock");
        let mut h = ep.clone();
        if e <= h.current() {
            return Err(WalError::Epoch(format!(
                "epoch {e} is not newer than the log's current epoch {}",
                h.current()
            )));
        }
        h.begin(e, first).map_err(WalError::Epoch)?;
        self.save_epochs(&h)?;
        *ep = h;
        Ok(())
    }

    fn save_epochs(&self, h: &EpochHistory) -> Result<(), WalError> {
        let path = self.dir.join(EPOCHS_FILE);
        write_atomic(self.fs.as_ref(), &path, &encode_epochs(h)).map_err(|source| WalError::Io {
            path,
            op: "write the epoch history",
            source,
        })
    }

    /// With the registry and writer locked: delete the segments after
    /// `lsn` (newest first, the directory synced after each), then cut the
    /// one that holds it and sync it.
    fn cut_locked(&self, w: &mut Writer, lsn: Lsn, report: &mut TruncateReport) -> Result<(), WalError> {
        let fs = self.fs.as_ref();
        let dir = &self.dir;
        while w.segs.len() > 1 && w.segs.last().expect("segment").first > lsn {
            let path = w.segs.last().expect("segment").path.clone();
            fs.remove_file(&path).map_err(io_err(&path, "remove"))?;
            fs.sync_dir(dir).map_err(io_err(dir, "sync"))?;
            w.segs.pop();
            report.segments_deleted += 1;
        }
        let seg = w.segs.last().expect("segment").clone();
        let end = record_end(fs, &seg.path, seg.first, lsn, self.opts.max_record)?;
        let mut f = fs.open_append(&seg.path).map_err(io_err(&seg.path, "open"))?;
        f.truncate(end).map_err(io_err(&seg.path, "truncate"))?;
        f.sync().map_err(io_err(&seg.path, "sync"))?;
        let syncer: Arc<dyn SyncHandle> = Arc::from(f.sync_handle().map_err(io_err(&seg.path, "dup"))?);
        w.file = f;
        w.syncer = syncer;
        let s = w.segs.last_mut().expect("segment");
        s.end = end;
        s.last = lsn.max(s.first - 1);
        Ok(())
    }
}

/// Load `epochs.bin` for a log that ends at `last` (missing: empty
/// history; damaged: [`WalError::Corrupt`] naming it). Entries that begin
/// past `last + 1` (left by a crash between a cut and the history write)
/// are dropped in memory.
pub(crate) fn load_epochs(fs: &dyn Vfs, dir: &Path, last: Lsn) -> Result<EpochHistory, WalError> {
    let path = dir.join(EPOCHS_FILE);
    if !fs.exists(&path) {
        return Ok(EpochHistory::default());
    }
    let b = fs.read(&path).map_err(io_err(&path, "read"))?;
    let mut h = decode_epochs(&b).map_err(|(offset, why)| WalError::Corrupt {
        path: path.clone(),
        offset,
        why,
    })?;
    if h.forget_after(last) {
        tracing::warn!(
            last_lsn = last,
            "dropping epochs that begin past the end of the write-ahead log"
        );
    }
    Ok(h)
}
