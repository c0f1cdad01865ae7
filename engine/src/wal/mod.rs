//! The write-ahead log: segmented, checksummed, group-committed, readable
//! from any LSN while it is appended to.
//!
//! Owns: the WAL's byte format (docs/format.md, "Write-ahead log"), LSN
//! assignment, group commit, the sync policy, recovery of a torn tail,
//! detection of corruption before it, cursors for readers (replay at
//! start, and the replication stream), retention, the registry of
//! followers that retention must wait for, and the retention cap.
//!
//! Layout: `wal-<first LSN, 20 digits>.log` files in one directory. Each
//! starts with a 16-byte header (`QWAL`, version u32, first LSN u64) and
//! holds records `[len u32][crc32c u32][lsn u64][synced u64][body; len]`,
//! little endian, the crc over everything but itself. LSNs are contiguous
//! from 1. `synced` is the last LSN known durable when the record was
//! written: it is what tells a torn tail from corruption (below).
//!
//! Durability: [`SyncPolicy::Always`] (the default) returns from
//! [`Wal::append`] only once an fdatasync covers the records; concurrent
//! appenders share one sync (group commit: the first waiter syncs
//! everything written so far, the others wait for it). With
//! [`SyncPolicy::Interval`] `append` returns once the records are written
//! to the file (they survive a killed process, in the page cache) and a
//! background thread syncs every interval: a power cut or kernel crash
//! loses at most the writes acknowledged in the last interval plus the one
//! sync in progress. A failed sync poisons the log (Linux may have dropped
//! the dirty pages, so nothing after it can be trusted to be durable):
//! every later append fails until the log is reopened, which re-reads what
//! really is on disk. A failed write (ENOSPC) is cut back and fails only
//! that batch.
//!
//! Recovery ([`Wal::open`]): a bad record at LSN x in the last segment is a
//! torn tail, cut there with a warning, unless a valid record after it
//! says x had already been synced when it was written (then x was durable
//! and is damaged). Unsynced pages may reach the disk out of order, so
//! valid records after a hole are normal in a torn tail; none of them was
//! acknowledged, since acknowledging needs a sync that covers x. A bad
//! record in an earlier segment (sealed by a sync before the next one was
//! created), a durable one, or a gap in the LSNs is
//! [`WalError::Corrupt`], naming the file and offset; it is never skipped.
//!
//! Followers: a warm standby reads this log with [`Wal::cursor`] and
//! [`Wal::read`] and registers itself ([`Wal::register_follower`]) so the
//! records it has not received are kept. It reports what it has durably
//! received with [`Wal::ack_follower`]. The registry is the file
//! `followers.bin` in the log's directory (docs/format.md, "Followers
//! file"), replaced whole with [`write_atomic`](crate::storage::write_atomic) through the [`Vfs`], loaded
//! by [`Wal::open`] (missing = no followers, damaged =
//! [`WalError::Corrupt`] naming it). Registering and unregistering write it
//! before returning. An ack writes it only when it moves the follower's
//! next record (`acked + 1`) into another segment, or when
//! [`ACK_PERSIST_EVERY`] acks have gone unwritten; other acks stay in
//! memory. Before retention deletes a segment the registry is written if
//! memory is ahead of the file, so every follower position on disk is
//! always readable. After a crash a recorded position can thus only be
//! behind the follower's true one (it re-reads a little; more is kept),
//! never ahead of it.
//!
//! Retention ([`Wal::retain`], [`Wal::retain_from`]): the caller passes the
//! first LSN it still needs (its checkpoint + 1: everything below is
//! merged). Whole segments are deleted from the oldest end while every
//! record in them is below both that LSN and every registered follower's
//! `acked + 1`; the active segment is never deleted. The cap
//! ([`WalOptions::max_retained_bytes`], 16 GiB by default) bounds what
//! followers alone may hold: when the log is over it and segments below
//! the caller's LSN are kept only for followers, the oldest of those
//! segments are deleted until the log fits (or nothing more is merged), and
//! each follower that needed one of them is dropped, with a warning: its
//! next ack fails with [`WalError::FollowerDropped`] and it must re-sync
//! from a snapshot. Records at or above the caller's LSN are never deleted,
//! whatever the cap, nor are those a [`WalHold`] ([`Wal::hold`]: in memory
//! only, for a backup's copy of the log) needs.

use crate::storage::{SyncHandle, VFile, Vfs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

mod epochs;
mod error;
mod followers;
mod record;
mod replica;
#[cfg(test)]
mod replica_tests;
mod retention;
#[cfg(test)]
mod tests;

pub use epochs::{
    common_prefix, decode_epochs, encode_epochs, Epoch, EpochHistory, EPOCHS_FILE, EPOCHS_MAGIC, EPOCHS_VERSION,
    MAX_EPOCHS,
};
use error::io_err;
pub use error::WalError;
pub use followers::{
    decode_followers, encode_followers, Follower, FollowerInfo, ACK_PERSIST_EVERY, FOLLOWERS_FILE, FOLLOWERS_MAGIC,
    FOLLOWERS_VERSION, MAX_FOLLOWER_NAME,
};
use followers::{load_followers, Registry};
pub use record::{decode_record, encode_record, RecordHead, HEADER, MAGIC, RECORD_HEADER, VERSION};
use record::{durable_record_after, header, seg_name};
pub(crate) use record::{header as segment_header, magic_and_crc, parse_seg_name};
pub use replica::TruncateReport;
pub use retention::{RetainReport, WalHold};

/// Log sequence number: 1 for the first record ever, contiguous.
pub type Lsn = u64;

/// The largest first LSN recovery accepts in a segment header. No log gets
/// near it (2^63 appends); a header past it is damaged, and would make the
/// LSN arithmetic of recovery and appends overflow.
const MAX_FIRST_LSN: Lsn = 1 << 63;

/// When an append counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fdatasync before acknowledging (group commit). Nothing acknowledged
    /// is ever lost.
    Always,
    /// Sync in the background every interval; a power cut loses up to one
    /// interval of acknowledged writes.
    Interval(Duration),
}

/// WAL settings.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Start a new segment when the active one would pass this size.
    pub segment_bytes: u64,
    /// Durability policy.
    pub sync: SyncPolicy,
    /// Largest record body accepted.
    pub max_record: usize,
    /// The retention cap: when the log is larger than this and segments
    /// the caller no longer needs are kept only for registered followers,
    /// the followers lagging furthest are dropped and those segments
    /// deleted (see [`Wal::retain`]). `None`: followers may hold any
    /// amount. Records the caller still needs are kept regardless.
    ///
    /// Default `Some(16 GiB)`: a standby that died without unregistering
    /// must not fill the primary's disk (a full disk fails every write),
    /// and one 16 GiB behind (256 default segments) catches up faster from
    /// a snapshot than by replaying the log.
    pub max_retained_bytes: Option<u64>,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            sync: SyncPolicy::Always,
            max_record: 16 << 20,
            max_retained_bytes: Some(16 << 30),
        }
    }
}

/// What opening the log found.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Segments kept.
    pub segments: usize,
    /// First LSN in the log (0 = empty).
    pub first_lsn: Lsn,
    /// Last LSN in the log (first_lsn - 1 when empty).
    pub last_lsn: Lsn,
    /// A torn tail cut: (file, offset, bytes removed).
    pub cut: Option<(PathBuf, u64, u64)>,
    /// Registered followers found needing records no longer in the log
    /// (segments deleted by hand, say), dropped with a warning: each must
    /// re-sync from a snapshot.
    pub followers_dropped: Vec<FollowerInfo>,
}

/// Index of the segment holding LSN `x` (the count of segments starting
/// at or before it): two LSNs in different segments give different ones.
fn seg_of(segs: &[Seg], x: Lsn) -> usize {
    segs.partition_point(|s| s.first <= x)
}

#[derive(Clone, Debug)]
struct Seg {
    first: Lsn,
    path: PathBuf,
    /// Valid bytes (header + whole records).
    end: u64,
    /// Last LSN in it (first - 1 when empty).
    last: Lsn,
}

struct Writer {
    file: Box<dyn VFile>,
    syncer: Arc<dyn SyncHandle>,
    segs: Vec<Seg>,
}

#[derive(Default)]
struct SyncState {
    syncing: bool,
    poisoned: Option<String>,
}

struct Inner {
    fs: Arc<dyn Vfs>,
    dir: PathBuf,
    opts: WalOptions,
    w: Mutex<Writer>,
    /// Last LSN written to the file.
    written: AtomicU64,
    /// Last LSN known durable.
    durable: AtomicU64,
    sync: Mutex<SyncState>,
    cv: Condvar,
    stop: AtomicBool,
    /// Locked before `w` when both are needed.
    followers: Mutex<Registry>,
    /// The epoch history; locked after `w` when both are needed.
    epochs: Mutex<EpochHistory>,
    /// Cuts of the tail so far: an append that waited for a sync across
    /// one cannot know whether its records survived.
    cuts: AtomicU64,
}

/// The write-ahead log.
pub struct Wal {
    inner: Arc<Inner>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

/// A reader's position.
#[derive(Clone, Debug)]
pub struct WalCursor {
    next: Lsn,
    seg_first: Lsn,
    offset: u64,
    /// Records below this are skipped (the cursor starts at a segment's
    /// first record and walks to it).
    skip: Lsn,
}

impl WalCursor {
    /// The next LSN this cursor returns.
    pub fn next_lsn(&self) -> Lsn {
        self.next.max(self.skip)
    }
}

impl Wal {
    /// Open the log in `dir` (created if missing), recovering it. A new
    /// log starts at `start_lsn` (the LSN after the caller's checkpoint).
    pub fn open(
        fs: Arc<dyn Vfs>,
        dir: &Path,
        opts: WalOptions,
        start_lsn: Lsn,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        if !fs.exists(dir) {
            fs.create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
            if let Some(parent) = dir.parent() {
                fs.sync_dir(parent).map_err(io_err(parent, "sync"))?;
            }
        }
        let mut firsts: Vec<Lsn> = fs
            .list(dir)
            .map_err(io_err(dir, "list"))?
            .iter()
            .filter_map(|n| parse_seg_name(n))
            .collect();
        firsts.sort_unstable();
        let mut segs: Vec<Seg> = Vec::new();
        let mut report = RecoveryReport::default();
        for (i, &first) in firsts.iter().enumerate() {
            let path = dir.join(seg_name(first));
            let last_seg = i + 1 == firsts.len();
            let b = fs.read(&path).map_err(io_err(&path, "read"))?;
            if b.len() < HEADER || &b[..4] != MAGIC {
                if last_seg && b.len() < HEADER && b.iter().all(|&x| x == 0) {
                    // Created but its header never reached the disk.
                    tracing::warn!(file = %path.display(), "removing a WAL segment with no header (torn at creation)");
                    fs.remove_file(&path).map_err(io_err(&path, "remove"))?;
                    fs.sync_dir(dir).map_err(io_err(dir, "sync"))?;
                    continue;
                }
                return Err(WalError::Corrupt {
                    path,
                    offset: 0,
                    why: "bad segment header".into(),
                });
            }
            let version = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
            let hfirst = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
            if version != VERSION || hfirst != first {
                return Err(WalError::Corrupt {
                    path,
                    offset: 0,
                    why: format!("header says version {version}, first LSN {hfirst}; expected {VERSION}, {first}"),
                });
            }
            if first == 0 || first > MAX_FIRST_LSN {
                return Err(WalError::Corrupt {
                    path,
                    offset: 8,
                    why: format!("first LSN {first} is outside 1..=2^63"),
                });
            }
            if let Some(prev) = segs.last() {
                if prev.last + 1 != first {
                    return Err(WalError::Corrupt {
                        path,
                        offset: 0,
                        why: format!(
                            "LSN gap: the previous segment ends at {}, this one starts at {first}",
                            prev.last
                        ),
                    });
                }
            }
            let mut off = HEADER;
            let mut expect = first;
            while off < b.len() {
                match decode_record(&b, off, opts.max_record) {
                    Ok((h, _, next)) if h.lsn == expect => {
                        expect += 1;
                        off = next;
                    }
                    bad => {
                        let why = match bad {
                            Ok((h, _, _)) => format!("LSN {} where {expect} was expected", h.lsn),
                            Err(w) => w,
                        };
                        if !last_seg || durable_record_after(&b, off + 1, expect, opts.max_record) {
                            return Err(WalError::Corrupt {
                                path,
                                offset: off as u64,
                                why,
                            });
                        }
                        let cut = b.len() - off;
                        tracing::warn!(
                            file = %path.display(), offset = off, bytes = cut, reason = %why,
                            "write-ahead log tail is torn; cutting it at the last valid record"
                        );
                        let mut f = fs.open_append(&path).map_err(io_err(&path, "open"))?;
                        f.truncate(off as u64).map_err(io_err(&path, "truncate"))?;
                        f.sync().map_err(io_err(&path, "sync"))?;
                        report.cut = Some((path.clone(), off as u64, cut as u64));
                        break;
                    }
                }
            }
            segs.push(Seg {
                first,
                path,
                end: off as u64,
                last: expect - 1,
            });
        }
        let file = match segs.last() {
            Some(s) => fs.open_append(&s.path).map_err(io_err(&s.path, "open"))?,
            None => {
                let first = start_lsn.max(1);
                let path = dir.join(seg_name(first));
                let f = new_segment(fs.as_ref(), dir, &path, first)?;
                segs.push(Seg {
                    first,
                    path,
                    end: HEADER as u64,
                    last: first - 1,
                });
                f
            }
        };
        let last = segs.last().expect("at least one segment").last;
        let syncer: Arc<dyn SyncHandle> = Arc::from(file.sync_handle().map_err(io_err(dir, "dup"))?);
        report.segments = segs.len();
        report.first_lsn = segs[0].first;
        report.last_lsn = last;
        let registry = load_followers(fs.as_ref(), dir, segs[0].first, last, &mut report)?;
        let epochs = replica::load_epochs(fs.as_ref(), dir, last)?;
        let inner = Arc::new(Inner {
            fs,
            dir: dir.to_path_buf(),
            opts,
            w: Mutex::new(Writer { file, syncer, segs }),
            written: AtomicU64::new(last),
            durable: AtomicU64::new(last),
            sync: Mutex::new(SyncState::default()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            followers: Mutex::new(registry),
            epochs: Mutex::new(epochs),
            cuts: AtomicU64::new(0),
        });
        let flusher = match inner.opts.sync {
            SyncPolicy::Interval(every) => {
                let inner = inner.clone();
                Some(
                    std::thread::Builder::new()
                        .name("wal-flush".into())
                        .spawn(move || {
                            while !inner.stop.load(Ordering::Acquire) {
                                let g = inner.sync.lock().expect("lock");
                                let _ = inner.cv.wait_timeout(g, every).expect("lock");
                                let w = inner.written.load(Ordering::Acquire);
                                if w > inner.durable.load(Ordering::Acquire) && !inner.stop.load(Ordering::Acquire) {
                                    if let Err(e) = inner.wait_durable(w) {
                                        tracing::error!(error = %e, "background WAL sync failed");
                                    }
                                }
                            }
                        })
                        .map_err(io_err(dir, "spawn the WAL flusher"))?,
                )
            }
            SyncPolicy::Always => None,
        };
        Ok((Wal { inner, flusher }, report))
    }

    /// Append records (one body each); returns the LSN of the first. With
    /// the sync policy `Always` they are durable when this returns.
    pub fn append(&self, bodies: &[&[u8]]) -> Result<Lsn, WalError> {
        self.append_inner(bodies, None)
    }

    /// Append at the next LSN, which must be `at` when given.
    fn append_inner(&self, bodies: &[&[u8]], at: Option<Lsn>) -> Result<Lsn, WalError> {
        let (last, cuts) = self.inner.write(bodies, at)?;
        let first = last + 1 - bodies.len() as u64;
        if self.inner.opts.sync == SyncPolicy::Always {
            self.inner.wait_durable(last)?;
            if self.inner.cuts.load(Ordering::Acquire) != cuts {
                return Err(WalError::Truncated { first, last });
            }
        }
        Ok(first)
    }

    /// Make everything written so far durable (for `Interval`, on a clean
    /// shutdown or a checkpoint).
    pub fn sync(&self) -> Result<(), WalError> {
        self.inner.wait_durable(self.inner.written.load(Ordering::Acquire))
    }

    /// Last LSN written.
    pub fn last_lsn(&self) -> Lsn {
        self.inner.written.load(Ordering::Acquire)
    }

    /// Last LSN durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.durable.load(Ordering::Acquire)
    }

    /// Oldest LSN still in the log.
    pub fn first_lsn(&self) -> Lsn {
        self.inner.w.lock().expect("lock").segs[0].first
    }

    /// The newest segment file (the one appended to).
    pub fn newest_file(&self) -> PathBuf {
        self.inner
            .w
            .lock()
            .expect("lock")
            .segs
            .last()
            .expect("active segment")
            .path
            .clone()
    }

    /// Segment files and their total size in bytes.
    pub fn size(&self) -> (usize, u64) {
        let w = self.inner.w.lock().expect("lock");
        (w.segs.len(), w.segs.iter().map(|s| s.end).sum())
    }

    /// A cursor that starts at `lsn`.
    pub fn cursor(&self, lsn: Lsn) -> Result<WalCursor, WalError> {
        let w = self.inner.w.lock().expect("lock");
        let oldest = w.segs[0].first;
        if lsn < oldest {
            return Err(WalError::Gone { want: lsn, oldest });
        }
        let s = w.segs.iter().rev().find(|s| s.first <= lsn).expect("oldest <= lsn");
        Ok(WalCursor {
            next: s.first,
            seg_first: s.first,
            offset: HEADER as u64,
            skip: lsn,
        })
    }

    /// Durable records from the cursor on, up to about `max_bytes` (at least
    /// one if any is available), advancing it.
    pub fn read(&self, cur: &mut WalCursor, max_bytes: usize) -> Result<Vec<(Lsn, Vec<u8>)>, WalError> {
        let mut out = Vec::new();
        let mut got = 0usize;
        let durable = self.durable_lsn();
        let max_rec = self.inner.opts.max_record;
        while cur.next <= durable && (out.is_empty() || got < max_bytes) {
            let seg = {
                let w = self.inner.w.lock().expect("lock");
                if cur.seg_first < w.segs[0].first {
                    return Err(WalError::Gone {
                        want: cur.next,
                        oldest: w.segs[0].first,
                    });
                }
                let i = w
                    .segs
                    .iter()
                    .position(|s| s.first == cur.seg_first)
                    .expect("cursor's segment");
                if cur.offset >= w.segs[i].end {
                    match w.segs.get(i + 1) {
                        Some(n) => {
                            cur.seg_first = n.first;
                            cur.offset = HEADER as u64;
                            continue;
                        }
                        None => break,
                    }
                }
                w.segs[i].clone()
            };
            let fs = &self.inner.fs;
            let avail = seg.end - cur.offset;
            let mut b = fs
                .read_at(&seg.path, cur.offset, avail.min(max_bytes.max(1 << 16) as u64) as usize)
                .map_err(io_err(&seg.path, "read"))?;
            if b.len() >= 4 {
                // One record bigger than the window: read it whole.
                let need = RECORD_HEADER as u64 + u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as u64;
                if need > b.len() as u64 && need <= avail {
                    b = fs
                        .read_at(&seg.path, cur.offset, need as usize)
                        .map_err(io_err(&seg.path, "read"))?;
                }
            }
            let mut off = 0;
            while off < b.len() {
                let (lsn, body, next) = match decode_record(&b, off, max_rec) {
                    Ok((h, body, next)) => (h.lsn, body, next),
                    Err(_) if off > 0 => break, // split by the window: next round
                    Err(why) => {
                        return Err(WalError::Corrupt {
                            path: seg.path,
                            offset: cur.offset,
                            why,
                        })
                    }
                };
                if lsn > durable {
                    return Ok(out);
                }
                if lsn >= cur.skip {
                    got += body.len();
                    out.push((lsn, b[body].to_vec()));
                }
                cur.next = lsn + 1;
                cur.offset += (next - off) as u64;
                off = next;
                if got >= max_bytes {
                    break;
                }
            }
        }
        Ok(out)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.cv.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

/// Create a segment file with its header, durable by name and content.
fn new_segment(fs: &dyn Vfs, dir: &Path, path: &Path, first: Lsn) -> Result<Box<dyn VFile>, WalError> {
    let mut f = fs.create(path).map_err(io_err(path, "create"))?;
    let r = f
        .append(&header(first))
        .and_then(|_| f.sync())
        .and_then(|_| fs.sync_dir(dir));
    if let Err(e) = r {
        let _ = fs.remove_file(path);
        return Err(WalError::Io {
            path: path.to_path_buf(),
            op: "create segment",
            source: e,
        });
    }
    Ok(f)
}

impl Inner {
    fn poisoned(&self) -> Option<String> {
        self.sync.lock().expect("lock").poisoned.clone()
    }

    fn poison(&self, why: String) {
        tracing::error!(reason = %why, "write-ahead log poisoned");
        self.sync.lock().expect("lock").poisoned.get_or_insert(why);
        self.cv.notify_all();
    }

    /// Write records at the next LSN (which must be `at` when given);
    /// returns the last LSN written and the count of cuts at that moment.
    fn write(&self, bodies: &[&[u8]], at: Option<Lsn>) -> Result<(Lsn, u64), WalError> {
        if let Some(p) = self.poisoned() {
            return Err(WalError::Poisoned(p));
        }
        for b in bodies {
            if b.len() > self.opts.max_record {
                return Err(WalError::TooLarge {
                    len: b.len(),
                    max: self.opts.max_record,
                });
            }
        }
        let mut w = self.w.lock().expect("lock");
        let start = self.written.load(Ordering::Acquire) + 1;
        if let Some(got) = at.filter(|&a| a != start) {
            return Err(WalError::Position { got, next: start });
        }
        let cuts = self.cuts.load(Ordering::Acquire);
        let synced = self.durable.load(Ordering::Acquire);
        let mut buf = Vec::with_capacity(bodies.iter().map(|b| b.len() + RECORD_HEADER).sum());
        for (i, b) in bodies.iter().enumerate() {
            encode_record(start + i as u64, synced, b, &mut buf);
        }
        let active = w.segs.last().expect("active segment").clone();
        if active.last >= active.first && active.end + buf.len() as u64 > self.opts.segment_bytes {
            // Roll over: the old segment is synced whole first, so a
            // segment that is not the last is always complete on disk.
            if let Err(e) = w.syncer.sync() {
                let why = format!("sync of {} failed: {e}", active.path.display());
                self.poison(why.clone());
                return Err(WalError::Poisoned(why));
            }
            self.durable.fetch_max(active.last, Ordering::AcqRel);
            let path = self.dir.join(seg_name(start));
            let f = new_segment(self.fs.as_ref(), &self.dir, &path, start)?;
            let syncer: Arc<dyn SyncHandle> = Arc::from(f.sync_handle().map_err(io_err(&path, "dup"))?);
            w.file = f;
            w.syncer = syncer;
            w.segs.push(Seg {
                first: start,
                path,
                end: HEADER as u64,
                last: start - 1,
            });
        }
        let before = w.file.len();
        if let Err(e) = w.file.append(&buf) {
            let path = w.segs.last().expect("active").path.clone();
            // Cut back whatever part of the batch reached the file.
            if let Err(t) = w.file.truncate(before) {
                self.poison(format!("cannot cut back a failed write in {}: {t}", path.display()));
            }
            return Err(WalError::Io {
                path,
                op: "append",
                source: e,
            });
        }
        let last = start + bodies.len() as u64 - 1;
        let seg = w.segs.last_mut().expect("active");
        seg.end += buf.len() as u64;
        seg.last = last;
        self.written.store(last, Ordering::Release);
        Ok((last, cuts))
    }

    /// Wait until `target` is durable, syncing if nobody else is.
    fn wait_durable(&self, target: Lsn) -> Result<(), WalError> {
        let mut g = self.sync.lock().expect("lock");
        loop {
            if self.durable.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            if let Some(p) = &g.poisoned {
                return Err(WalError::Poisoned(p.clone()));
            }
            if g.syncing {
                g = self.cv.wait(g).expect("lock");
                continue;
            }
            g.syncing = true;
            drop(g);
            let (upto, syncer) = {
                let w = self.w.lock().expect("lock");
                (self.written.load(Ordering::Acquire), w.syncer.clone())
            };
            let r = syncer.sync();
            g = self.sync.lock().expect("lock");
            g.syncing = false;
            match r {
                Ok(()) => {
                    self.durable.fetch_max(upto, Ordering::AcqRel);
                }
                Err(e) => {
                    let why = format!("fdatasync failed: {e}");
                    tracing::error!(reason = %why, "write-ahead log poisoned");
                    g.poisoned.get_or_insert(why);
                }
            }
            self.cv.notify_all();
        }
    }
}
