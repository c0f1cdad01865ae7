//! The follower registry: which readers of the log (a warm standby) must
//! have their records kept, and how far each has durably received.
//!
//! Owns: the `followers.bin` codec (docs/format.md, "Followers file"),
//! registering, acking and unregistering followers, and loading the
//! registry when the log opens. Does not own: which segments retention
//! deletes (`super::Wal::retain` asks the registry) or the stream that
//! ships records (the server's replication).

use super::{io_err, seg_of, Inner, Lsn, RecoveryReport, Wal, WalError};
use crate::storage::{write_atomic, Vfs};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The follower registry's file name, in the log's directory.
pub const FOLLOWERS_FILE: &str = "followers.bin";
/// The registry file magic.
pub const FOLLOWERS_MAGIC: &[u8; 4] = b"QWFL";
/// The registry format version.
pub const FOLLOWERS_VERSION: u32 = 1;
/// Longest follower name, in bytes (names are ASCII).
pub const MAX_FOLLOWER_NAME: usize = 64;
/// An ack is written to the registry file at the latest once this many
/// acks (of all followers together) have been kept in memory only.
pub const ACK_PERSIST_EVERY: u32 = 64;

/// A registered follower, as [`Wal::followers`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowerInfo {
    /// Its name (1..=64 of `A-Z a-z 0-9 _ -`).
    pub name: String,
    /// It has durably received every record up to this LSN; the log keeps
    /// everything after it.
    pub acked: Lsn,
    /// When it was (last) registered, Unix seconds.
    pub registered_at: u64,
    /// When it last acked, Unix seconds (its registration time if it has
    /// not acked since). Acks are written to disk in batches, so after a
    /// restart this, like `acked`, may be older than the last ack.
    pub last_ack: u64,
}

/// One registry entry (its fields are the log's own; [`FollowerInfo`] is the
/// public view).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Follower {
    pub(crate) acked: Lsn,
    registered_at: u64,
    last_ack: u64,
    /// Dropped by the retention cap: holds nothing, and its acks fail
    /// until it registers again.
    pub(crate) dropped: bool,
}

impl Follower {
    pub(crate) fn info(&self, name: &str) -> FollowerInfo {
        FollowerInfo {
            name: name.to_string(),
            acked: self.acked,
            registered_at: self.registered_at,
            last_ack: self.last_ack,
        }
    }

    /// The first LSN it needs.
    pub(crate) fn needs(&self) -> Lsn {
        self.acked.saturating_add(1)
    }
}

/// The follower registry in memory.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) map: BTreeMap<String, Follower>,
    /// Acks kept in memory only since the file was last written.
    unwritten: u32,
    /// The file may differ from `map` (acks not written, or a failed
    /// write whose rename may still become durable): it is rewritten
    /// before any segment is deleted.
    pub(crate) dirty: bool,
    /// In-memory holds (`super::retention`, [`super::WalHold`]): the first
    /// LSN each needs, by hold number. Never written to the file.
    pub(crate) holds: BTreeMap<u64, Lsn>,
    /// The last hold number given.
    pub(crate) last_hold: u64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Why `name` is not a valid follower name, if it is not.
fn bad_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_FOLLOWER_NAME {
        return Some(format!("{} bytes, not 1 to {MAX_FOLLOWER_NAME}", name.len()));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        .map(|c| format!("{c:?} is not one of A-Z, a-z, 0-9, '_', '-'"))
}

fn check_name(name: &str) -> Result<(), WalError> {
    match bad_name(name) {
        None => Ok(()),
        Some(why) => {
            let shown: String = name.chars().take(80).collect();
            Err(WalError::InvalidArgument(format!("follower name {shown:?}: {why}")))
        }
    }
}

/// The registry file's bytes (docs/format.md, "Followers file").
pub fn encode_followers(map: &BTreeMap<String, Follower>) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + map.keys().map(|n| 26 + n.len()).sum::<usize>());
    b.extend_from_slice(FOLLOWERS_MAGIC);
    b.extend_from_slice(&FOLLOWERS_VERSION.to_le_bytes());
    b.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (name, f) in map {
        b.push(f.dropped as u8);
        b.push(name.len() as u8);
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&f.acked.to_le_bytes());
        b.extend_from_slice(&f.registered_at.to_le_bytes());
        b.extend_from_slice(&f.last_ack.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Parse the registry file: Err((offset, why)) if it is damaged.
pub fn decode_followers(b: &[u8]) -> Result<BTreeMap<String, Follower>, (u64, String)> {
    let (count, body) = super::record::small_file(b, FOLLOWERS_MAGIC, FOLLOWERS_VERSION, "registry")?;
    let mut map = BTreeMap::new();
    let mut off = 12;
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    for i in 0..count {
        if off + 2 > body {
            return Err((off as u64, format!("entry {i} of {count} runs past the end")));
        }
        let state = b[off];
        let n = b[off + 1] as usize;
        if off + 26 + n > body {
            return Err((off as u64, format!("entry {i} of {count} runs past the end")));
        }
        if state > 1 {
            return Err((off as u64, format!("entry {i}: state {state} is not 0 or 1")));
        }
        let name = std::str::from_utf8(&b[off + 2..off + 2 + n])
            .ok()
            .filter(|n| bad_name(n).is_none())
            .ok_or_else(|| (off as u64, format!("entry {i}: invalid follower name")))?;
        let p = off + 2 + n;
        let f = Follower {
            acked: u64_at(p),
            registered_at: u64_at(p + 8),
            last_ack: u64_at(p + 16),
            dropped: state == 1,
        };
        if map.insert(name.to_string(), f).is_some() {
            return Err((off as u64, format!("entry {i}: follower {name:?} appears twice")));
        }
        off = p + 24;
    }
    if off != body {
        return Err((off as u64, format!("{} bytes after the last entry", body - off)));
    }
    Ok(map)
}

impl Wal {
    /// Register a follower (or move an existing one) that needs every
    /// record from `from` on: it counts as having acked `from - 1`.
    /// `from` must still be in the log (else [`WalError::FollowerGone`]:
    /// the follower needs a snapshot) and at most one past its durable end.
    /// Written to disk before it returns. A follower the cap dropped is
    /// registered anew.
    pub fn register_follower(&self, name: &str, from: Lsn) -> Result<(), WalError> {
        check_name(name)?;
        let mut reg = self.inner.followers.lock().expect("lock");
        let oldest = self.first_lsn();
        if from < oldest {
            return Err(WalError::FollowerGone {
                name: name.to_string(),
                from,
                oldest,
            });
        }
        let durable = self.durable_lsn();
        if from > durable + 1 {
            return Err(WalError::InvalidArgument(format!(
                "cannot register follower {name:?} from LSN {from}: the log is durable only up to LSN {durable} \
                 (a follower can only have received durable records)"
            )));
        }
        let now = now_secs();
        let mut map = reg.map.clone();
        map.insert(
            name.to_string(),
            Follower {
                acked: from - 1,
                registered_at: now,
                last_ack: now,
                dropped: false,
            },
        );
        self.inner.save_followers(&mut reg, map)
    }

    /// Record that follower `name` has durably received every record up
    /// to `lsn`, so retention may let them go. An ack below the last one is
    /// ignored; one above [`Wal::durable_lsn`] is an error. Written to disk
    /// only when `acked + 1` moves into another segment or after
    /// [`ACK_PERSIST_EVERY`] acks (see the module doc); a failed write
    /// fails the ack and leaves the follower where it was.
    pub fn ack_follower(&self, name: &str, lsn: Lsn) -> Result<(), WalError> {
        let mut reg = self.inner.followers.lock().expect("lock");
        let f = match reg.map.get(name) {
            None => return Err(WalError::UnknownFollower(name.to_string())),
            Some(f) if f.dropped => {
                return Err(WalError::FollowerDropped {
                    name: name.to_string(),
                    acked: f.acked,
                })
            }
            Some(f) => f.clone(),
        };
        let durable = self.durable_lsn();
        if lsn > durable {
            return Err(WalError::InvalidArgument(format!(
                "follower {name:?} acked LSN {lsn}, past the durable end of the log (LSN {durable})"
            )));
        }
        if lsn < f.acked {
            return Ok(());
        }
        let now = now_secs();
        if lsn == f.acked {
            // Nothing new received: only the time moves (memory only).
            reg.map.get_mut(name).expect("present").last_ack = now;
            return Ok(());
        }
        let moved = {
            let w = self.inner.w.lock().expect("lock");
            seg_of(&w.segs, f.needs()) != seg_of(&w.segs, lsn + 1)
        };
        let updated = Follower {
            acked: lsn,
            last_ack: now,
            ..f
        };
        if moved || reg.unwritten + 1 >= ACK_PERSIST_EVERY {
            let mut map = reg.map.clone();
            map.insert(name.to_string(), updated);
            self.inner.save_followers(&mut reg, map)
        } else {
            reg.map.insert(name.to_string(), updated);
            reg.unwritten += 1;
            reg.dirty = true;
            Ok(())
        }
    }

    /// Forget follower `name` (registered or dropped); written to disk
    /// before it returns.
    pub fn unregister_follower(&self, name: &str) -> Result<(), WalError> {
        let mut reg = self.inner.followers.lock().expect("lock");
        if !reg.map.contains_key(name) {
            return Err(WalError::UnknownFollower(name.to_string()));
        }
        let mut map = reg.map.clone();
        map.remove(name);
        self.inner.save_followers(&mut reg, map)
    }

    /// The registered followers, by name (dropped ones are not listed).
    pub fn followers(&self) -> Vec<FollowerInfo> {
        let reg = self.inner.followers.lock().expect("lock");
        reg.map
            .iter()
            .filter(|(_, f)| !f.dropped)
            .map(|(name, f)| f.info(name))
            .collect()
    }
}

/// Load the follower registry of the log in `dir`, whose records are
/// `first..=last`. A follower whose next record is gone (the segments were
/// deleted by hand, say) is marked dropped, with a warning, and reported.
pub(crate) fn load_followers(
    fs: &dyn Vfs,
    dir: &Path,
    first: Lsn,
    last: Lsn,
    report: &mut RecoveryReport,
) -> Result<Registry, WalError> {
    let path = dir.join(FOLLOWERS_FILE);
    if !fs.exists(&path) {
        return Ok(Registry::default());
    }
    let b = fs.read(&path).map_err(io_err(&path, "read"))?;
    let map = decode_followers(&b).map_err(|(offset, why)| WalError::Corrupt {
        path: path.clone(),
        offset,
        why,
    })?;
    let mut reg = Registry {
        map,
        ..Registry::default()
    };
    for (name, f) in reg.map.iter_mut().filter(|(_, f)| !f.dropped) {
        if f.needs() < first {
            tracing::warn!(
                follower = %name, acked = f.acked, first_lsn = first,
                "dropping a WAL follower whose next record is no longer in the log; it must re-sync from a snapshot"
            );
            report.followers_dropped.push(f.info(name));
            f.dropped = true;
            reg.dirty = true;
        } else if f.acked > last {
            tracing::warn!(
                follower = %name, acked = f.acked, last_lsn = last,
                "a WAL follower acked records past the end of the recovered log"
            );
        }
    }
    Ok(reg)
}

impl Inner {
    /// Write `map` as the registry file; on success it becomes the
    /// registry in memory, on failure memory is left as it was (and marked
    /// as possibly differing from the file).
    pub(crate) fn save_followers(&self, reg: &mut Registry, map: BTreeMap<String, Follower>) -> Result<(), WalError> {
        let path = self.dir.join(FOLLOWERS_FILE);
        match write_atomic(self.fs.as_ref(), &path, &encode_followers(&map)) {
            Ok(()) => {
                reg.map = map;
                reg.unwritten = 0;
                reg.dirty = false;
                Ok(())
            }
            Err(source) => {
                reg.dirty = true;
                Err(WalError::Io {
                    path,
                    op: "write the follower registry",
                    source,
                })
            }
        }
    }
}
