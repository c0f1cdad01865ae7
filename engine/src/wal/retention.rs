//! Retention: which whole segments of the log may go, given the first LSN
//! the caller still needs, the registered followers, and the retention cap
//! (see the `wal` module doc, "Retention").
//!
//! Owns: [`Wal::retain`] and [`Wal::retain_from`], dropping the
//! followers the cap leaves behind, and [`WalHold`]: a hold on the log
//! from an LSN, kept in memory only (a backup copying records while
//! flushes go on). Does not own: the follower registry's file
//! (`super::followers`) or appending (`super`).
//!
//! **Holds are not followers.** A hold is never written to
//! `followers.bin`, so a process that dies holding one leaves nothing
//! behind that would keep the log after a restart, that a sync primary
//! would take for a standby's acknowledgement (`hold_unacked`), or that
//! replication would list. The retention cap never deletes what a hold
//! needs: a hold lives as long as the copy that took it (seconds to
//! minutes), and the cap exists for standbys that died.

use super::followers::Follower;
use super::{io_err, FollowerInfo, Inner, Lsn, Wal, WalError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every record from [`WalHold::from`] on stays in the log while this
/// lives (see the module doc); dropping it lets retention have them.
pub struct WalHold {
    inner: Arc<Inner>,
    id: u64,
    from: Lsn,
}

impl WalHold {
    /// The first LSN held.
    pub fn from(&self) -> Lsn {
        self.from
    }
}

impl Drop for WalHold {
    fn drop(&mut self) {
        self.inner.followers.lock().expect("lock").holds.remove(&self.id);
    }
}

/// What [`Wal::retain`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetainReport {
    /// Segment files deleted.
    pub segments_deleted: usize,
    /// Their bytes.
    pub bytes_deleted: u64,
    /// Segments the caller's LSN alone would have let go that are kept
    /// for registered followers or holds.
    pub segments_held: usize,
    /// Followers dropped by the retention cap (as they were just before).
    pub followers_dropped: Vec<FollowerInfo>,
}

impl Wal {
    /// Hold every record from `from` on in the log until the hold is
    /// dropped. [`WalError::Gone`] if `from` is older than the log's first
    /// record.
    pub fn hold(&self, from: Lsn) -> Result<WalHold, WalError> {
        // Under the registry lock, which retention holds throughout: no
        // segment goes between the check and the hold.
        let mut reg = self.inner.followers.lock().expect("lock");
        let oldest = self.first_lsn();
        if from < oldest {
            return Err(WalError::Gone { want: from, oldest });
        }
        reg.last_hold += 1;
        let id = reg.last_hold;
        reg.holds.insert(id, from);
        Ok(WalHold {
            inner: self.inner.clone(),
            id,
            from,
        })
    }

    /// The first LSN of the oldest hold, if any.
    pub fn held_from(&self) -> Option<Lsn> {
        self.inner.followers.lock().expect("lock").holds.values().min().copied()
    }

    /// [`Wal::retain`], returning only the number of segments deleted.
    pub fn retain_from(&self, keep_from: Lsn) -> Result<usize, WalError> {
        self.retain(keep_from).map(|r| r.segments_deleted)
    }

    /// Delete whole segments from the oldest end (never the active one)
    /// while every record in them is below `keep_from` (the first LSN the
    /// caller still needs) and below every registered follower's
    /// `acked + 1`. If the log is then still over
    /// [`WalOptions::max_retained_bytes`] and segments below `keep_from`
    /// are kept only for followers, the oldest of them are deleted until it
    /// fits, and every follower that needed one is dropped (written to the
    /// registry before anything is deleted, with a warning). Nothing at or
    /// above `keep_from`, or at or above a [`WalHold`]'s first LSN, is ever
    /// deleted.
    pub fn retain(&self, keep_from: Lsn) -> Result<RetainReport, WalError> {
        // The registry lock is held throughout: no follower moves, and no
        // other retention removes segments, until this is done.
        let mut reg = self.inner.followers.lock().expect("lock");
        let follower_keep = |map: &BTreeMap<String, Follower>| {
            map.values()
                .filter(|f| !f.dropped)
                .map(Follower::needs)
                .min()
                .unwrap_or(Lsn::MAX)
        };
        let hold_keep = reg.holds.values().min().copied().unwrap_or(Lsn::MAX);
        let keep_from_held = keep_from.min(hold_keep);
        let mut map = reg.map.clone();
        let mut dropped = Vec::new();
        let (n, by_merge, total) = {
            let w = self.inner.w.lock().expect("lock");
            let segs = &w.segs;
            // Segments all of whose records are below `lsn`, the active
            // one excepted.
            let deletable = |lsn: Lsn| segs[1..].partition_point(|s| s.first <= lsn);
            let by_merge = deletable(keep_from);
            // What the cap may delete: never a record a hold needs.
            let by_cap = deletable(keep_from_held);
            let mut n = deletable(keep_from_held.min(follower_keep(&map)));
            let total: u64 = segs.iter().map(|s| s.end).sum();
            if let Some(cap) = self.inner.opts.max_retained_bytes {
                let mut left = total - segs[..n].iter().map(|s| s.end).sum::<u64>();
                if left > cap && n < by_cap {
                    while left > cap && n < by_cap {
                        left -= segs[n].end;
                        n += 1;
                    }
                    let new_first = segs[n].first;
                    for (name, f) in map.iter_mut().filter(|(_, f)| !f.dropped && f.needs() < new_first) {
                        dropped.push(f.info(name));
                        f.dropped = true;
                    }
                    // The followers left may let more go.
                    n = n.max(deletable(keep_from_held.min(follower_keep(&map))));
                }
            }
            (n, by_merge, total)
        };
        let mut report = RetainReport {
            segments_held: by_merge - n,
            ..RetainReport::default()
        };
        if n == 0 {
            return Ok(report);
        }
        // Every follower position on disk must stay readable: write the
        // registry first if memory is ahead of it or followers are dropped
        // (appends go on meanwhile; only this removes segments).
        if reg.dirty || !dropped.is_empty() {
            self.inner.save_followers(&mut reg, map)?;
        }
        for f in &dropped {
            tracing::warn!(
                follower = %f.name, acked = f.acked,
                cap_bytes = self.inner.opts.max_retained_bytes.unwrap_or(0), wal_bytes = total,
                "dropped a lagging WAL follower: the write-ahead log is over its retention cap; \
                 the follower must re-sync from a snapshot"
            );
        }
        report.followers_dropped = dropped;
        let mut w = self.inner.w.lock().expect("lock");
        for _ in 0..n {
            let s = w.segs.remove(0);
            self.inner.fs.remove_file(&s.path).map_err(io_err(&s.path, "remove"))?;
            report.segments_deleted += 1;
            report.bytes_deleted += s.end;
        }
        self.inner
            .fs
            .sync_dir(&self.inner.dir)
            .map_err(io_err(&self.inner.dir, "sync"))?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::super::WalOptions;
    use super::*;
    use crate::storage::RealFs;

    #[test]
    fn a_hold_keeps_its_records_past_the_cap_and_leaves_nothing_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_bytes: 4096,
            max_retained_bytes: Some(1),
            ..WalOptions::default()
        };
        let (w, _) = Wal::open(Arc::new(RealFs), d.path(), opts.clone(), 1).unwrap();
        let body = [7u8; 200];
        for _ in 0..100 {
            w.append(&[&body]).unwrap();
        }
        assert!(matches!(w.hold(0), Err(WalError::Gone { want: 0, oldest: 1 })));
        let h = w.hold(30).unwrap();
        let h2 = w.hold(60).unwrap();
        assert_eq!((h.from(), w.held_from()), (30, Some(30)));
        // The caller needs nothing below 90; the cap is 1 byte; the hold wins.
        w.retain(90).unwrap();
        assert!(w.first_lsn() <= 30, "first LSN {}", w.first_lsn());
        assert!(w.followers().is_empty() && !d.path().join(super::super::FOLLOWERS_FILE).exists());
        drop(h);
        assert_eq!(w.held_from(), Some(60));
        w.retain(90).unwrap();
        assert!(w.first_lsn() > 30 && w.first_lsn() <= 60, "first LSN {}", w.first_lsn());
        drop(h2);
        let r = w.retain(90).unwrap();
        assert!(r.segments_deleted > 0 && w.first_lsn() > 60);
        drop(w);
        // A reopened log knows of no hold.
        let (w, _) = Wal::open(Arc::new(RealFs), d.path(), opts, 1).unwrap();
        assert_eq!(w.held_from(), None);
    }
}
