//! Retention: which whole segments of the log may go, given the first LSN
//! the caller still needs, the registered followers, and the retention cap
//! (see the `wal` module doc, "Retention").
//!
//! Owns: [`Wal::retain`] and [`Wal::retain_from`], and dropping the
//! followers the cap leaves behind. Does not own: the follower registry's
//! file (`super::followers`) or appending (`super`).

use super::followers::Follower;
use super::{io_err, FollowerInfo, Lsn, Wal, WalError};
use std::collections::BTreeMap;

/// What [`Wal::retain`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetainReport {
    /// Segment files deleted.
    pub segments_deleted: usize,
    /// Their bytes.
    pub bytes_deleted: u64,
    /// Segments the caller's LSN alone would have let go that are kept
    /// for registered followers.
    pub segments_held: usize,
    /// Followers dropped by the retention cap (as they were just before).
    pub followers_dropped: Vec<FollowerInfo>,
}

impl Wal {
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
    /// above `keep_from` is ever deleted.
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
        let mut map = reg.map.clone();
        let mut dropped = Vec::new();
        let (n, by_merge, total) = {
            let w = self.inner.w.lock().expect("lock");
            let segs = &w.segs;
            // Segments all of whose records are below `lsn`, the active
            // one excepted.
            let deletable = |lsn: Lsn| segs[1..].partition_point(|s| s.first <= lsn);
            let by_merge = deletable(keep_from);
            let mut n = deletable(keep_from.min(follower_keep(&map)));
            let total: u64 = segs.iter().map(|s| s.end).sum();
            if let Some(cap) = self.inner.opts.max_retained_bytes {
                let mut left = total - segs[..n].iter().map(|s| s.end).sum::<u64>();
                if left > cap && n < by_merge {
                    while left > cap && n < by_merge {
                        left -= segs[n].end;
                        n += 1;
                    }
                    let new_first = segs[n].first;
                    for (name, f) in map.iter_mut().filter(|(_, f)| !f.dropped && f.needs() < new_first) {
                        dropped.push(f.info(name));
                        f.dropped = true;
                    }
                    // The followers left may let more go.
                    n = n.max(deletable(keep_from.min(follower_keep(&map))));
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
