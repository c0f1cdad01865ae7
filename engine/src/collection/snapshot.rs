//! Snapshots: a collection's segments as of its checkpoint, for a standby
//! that cannot catch up from the log (behind the primary's retention, or
//! diverged past its own checkpoint).
//!
//! Owns: [`Collection::snapshot`] (the primary's side: what to send, with
//! the log after the checkpoint and the segment files held for the whole
//! transfer), [`install_snapshot`] (the standby's side: every file
//! received, checked and fsynced under a temporary name, then swapped in),
//! and finishing or undoing an install a crash cut short. Does not own:
//! the transfer (the server's replication), the WAL records after the
//! checkpoint (streamed as usual).
//!
//! **The primary's order.** Under the flush lock (no flush or merge may
//! change the segment list meanwhile): read the manifest (checkpoint C),
//! register the follower at C + 1 so retention keeps every record after
//! C for the whole transfer, hold every segment (a retired segment's files
//! are deleted only when its last holder lets go) and read the tombstone
//! file into memory (the next flush deletes it). Writes go on meanwhile;
//! they are streamed after C once the standby has installed.
//!
//! **The standby's order.** A `NEEDS_SNAPSHOT` marker is written (durably)
//! into the old collection directory first: if the install is cut short,
//! the old collection reports that it needs a snapshot and never its
//! durable LSN. The files go to `<dir>.snapshot.tmp/`, each checked
//! against its length and crc32c and fsynced; then the log directory
//! (empty, starting at C + 1, with the primary's epoch history), and the
//! manifest last. Then the old directory is renamed to
//! `<dir>.snapshot.old`, the new one to `<dir>`, the parent fsynced, and
//! the old one deleted. [`finish_install`] (run by [`Collection::open`])
//! completes a swap cut short after the first rename, and deletes
//! leftovers.

use super::manifest::{Manifest, MANIFEST_FILE};
use super::segment::Segment;
use super::{io_err, Collection, CollectionError, Result};
use crate::storage::{write_atomic, Vfs};
use crate::wal::{encode_epochs, EpochHistory, Lsn, EPOCHS_FILE};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The marker of a collection whose replacement by a snapshot began.
pub const NEEDS_SNAPSHOT: &str = "NEEDS_SNAPSHOT";

/// One file of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Path relative to the collection directory (`/`-separated).
    pub path: String,
    /// Bytes.
    pub len: u64,
    /// crc32c of its bytes.
    pub crc: u32,
}

/// What a standby needs to install a collection as of its checkpoint.
pub struct Snapshot {
    /// Records up to this LSN are in the files; the log from the next one
    /// is kept for the follower and streamed after the install.
    pub checkpoint: Lsn,
    /// The manifest as of the snapshot.
    pub manifest: Vec<u8>,
    /// The primary's epoch history (encoded `epochs.bin`).
    pub epochs: Vec<u8>,
    /// The segment files, then the tombstone file (its bytes are held in
    /// memory: the next flush deletes the file).
    pub files: Vec<SnapshotFile>,
    tombstones: Option<(String, Vec<u8>)>,
    dir: PathBuf,
    /// Held so retired segments' files outlive the transfer.
    _pins: Vec<Arc<Segment>>,
}

impl Snapshot {
    /// Bytes of the files in all.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }

    /// Up to `len` bytes of file `path` from `offset`.
    pub fn read(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let f = self
            .files
            .iter()
            .find(|f| f.path == path)
            .ok_or_else(|| CollectionError::InvalidArgument(format!("{path:?} is not a file of this snapshot")))?;
        if let Some((name, bytes)) = &self.tombstones {
            if *name == f.path {
                let start = (offset as usize).min(bytes.len());
                return Ok(bytes[start..(start + len).min(bytes.len())].to_vec());
            }
        }
        read_at(&self.dir.join(&f.path), offset, len)
    }
}

pub(super) fn read_at(p: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p).map_err(io_err(p, "open"))?;
    f.seek(SeekFrom::Start(offset)).map_err(io_err(p, "seek"))?;
    let mut b = Vec::with_capacity(len);
    f.take(len as u64).read_to_end(&mut b).map_err(io_err(p, "read"))?;
    Ok(b)
}

/// Every file under `root/rel`, as (relative path, length), sorted.
pub(super) fn walk(root: &Path, rel: &str, out: &mut Vec<(String, u64)>) -> Result<()> {
    let p = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&p)
        .map_err(io_err(&p, "list"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .map_err(io_err(&p, "list"))?;
    names.sort();
    for n in names {
        let child = format!("{rel}/{n}");
        let cp = root.join(&child);
        let m = std::fs::metadata(&cp).map_err(io_err(&cp, "stat"))?;
        if m.is_dir() {
            walk(root, &child, out)?;
        } else {
            out.push((child, m.len()));
        }
    }
    Ok(())
}

pub(super) fn crc_of(p: &Path) -> Result<u32> {
    crate::format::crc32c_of_file(p)
        .map(|(_, crc)| crc)
        .map_err(io_err(p, "read"))
}

/// What a snapshot and a backup both take under the flush lock: one
/// consistent state of the collection's files.
pub(super) struct View {
    /// `manifest.json` as read (checkpoint C).
    pub(super) manifest: Vec<u8>,
    /// It, decoded.
    pub(super) m: Manifest,
    /// The tombstone file's name and bytes (the next flush deletes it).
    pub(super) tombstones: Option<(String, Vec<u8>)>,
    /// Every segment in the state (the manifest's, and bulk segments
    /// logged after C), held so their files outlive a merge.
    pub(super) pins: Vec<Arc<Segment>>,
    /// The applied LSN, read after C: every record up to it is in the
    /// segments or the log after C.
    pub(super) applied: Lsn,
}

impl Collection {
    /// Under the flush lock (no flush, merge or bulk load switch changes
    /// the segment list meanwhile): read the manifest, call `keep` with
    /// its checkpoint C (which must keep the log after C before anything
    /// else is read), hold every segment, read the tombstone file and the
    /// applied LSN. A collection still holding an index adopted from an
    /// earlier release is refused: compact it first.
    pub(super) fn view<K>(&self, keep: impl FnOnce(Lsn) -> Result<K>) -> Result<(View, K)> {
        let _no_flush = self.flush_lock.lock().expect("lock");
        let mpath = self.dir.join(MANIFEST_FILE);
        let manifest = self.fs.read(&mpath).map_err(io_err(&mpath, "read"))?;
        let m =
            Manifest::decode(&manifest).map_err(|e| CollectionError::Corrupt(format!("{}: {e}", mpath.display())))?;
        if let Some(s) = m.segments.iter().find(|s| s.starts_with("../")) {
            return Err(CollectionError::InvalidArgument(format!(
                "{}: segment {s} is an index adopted from an earlier release; compact the collection before taking a snapshot or a backup",
                self.dir.display()
            )));
        }
        let kept = keep(m.checkpoint_lsn)?;
        let (applied, pins) = {
            // The applied LSN first: a segment applied after it is held
            // too, harmlessly; one applied before it is never missed.
            let applied = self.applied.lock().expect("lock");
            let st = self.state.read().expect("lock");
            (applied.applied, st.segments.clone())
        };
        let tombstones = match &m.tombstones {
            Some(t) => {
                let p = self.dir.join(t);
                let b = self.fs.read(&p).map_err(io_err(&p, "read"))?;
                Some((t.clone(), b))
            }
            None => None,
        };
        Ok((
            View {
                manifest,
                m,
                tombstones,
                pins,
                applied,
            },
            kept,
        ))
    }

    /// Take a snapshot for follower `follower` (see the module doc for the
    /// order). The follower is registered in the log at checkpoint + 1
    /// before anything is read. A collection still holding an index
    /// adopted from an earlier release is refused: compact it first.
    pub fn snapshot(&self, follower: &str) -> Result<Snapshot> {
        let (v, ()) = self.view(|c| Ok(self.wal.register_follower(follower, c + 1)?))?;
        let View {
            manifest,
            m,
            tombstones,
            pins,
            ..
        } = v;
        let pins: Vec<Arc<Segment>> = pins.into_iter().filter(|s| m.segments.contains(&s.name)).collect();
        let mut listed = Vec::new();
        for s in &m.segments {
            walk(&self.dir, s, &mut listed)?;
        }
        let mut files = Vec::with_capacity(listed.len() + 1);
        for (path, len) in listed {
            let crc = crc_of(&self.dir.join(&path))?;
            files.push(SnapshotFile { path, len, crc });
        }
        if let Some((t, b)) = &tombstones {
            files.push(SnapshotFile {
                path: t.clone(),
                len: b.len() as u64,
                crc: crc32c::crc32c(b),
            });
        }
        Ok(Snapshot {
            checkpoint: m.checkpoint_lsn,
            manifest,
            epochs: encode_epochs(&self.wal.epochs()),
            files,
            tombstones,
            dir: self.dir.clone(),
            _pins: pins,
        })
    }
}

/// Whether the collection at `dir` began to be replaced by a snapshot
/// that did not finish (it must not report a durable LSN).
pub fn needs_snapshot(fs: &dyn Vfs, dir: &Path) -> bool {
    fs.exists(&dir.join(NEEDS_SNAPSHOT))
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir
        .file_name()
        .expect("a collection directory has a name")
        .to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Complete or undo an install a crash cut short at `dir`: a finished new
/// directory (its manifest written) whose swap was cut short is moved in;
/// leftovers are deleted. Returns whether anything was done.
pub fn finish_install(fs: &dyn Vfs, dir: &Path) -> Result<bool> {
    let tmp = sibling(dir, ".snapshot.tmp");
    let old = sibling(dir, ".snapshot.old");
    let parent = dir.parent().expect("a collection directory has a parent");
    let mut did = false;
    if !fs.exists(dir) {
        if fs.exists(&tmp.join(MANIFEST_FILE)) {
            fs.rename(&tmp, dir).map_err(io_err(&tmp, "rename"))?;
            did = true;
        } else if fs.exists(&old) {
            fs.rename(&old, dir).map_err(io_err(&old, "rename"))?;
            did = true;
        }
        if did {
            fs.sync_dir(parent).map_err(io_err(parent, "sync"))?;
        }
    }
    for p in [&tmp, &old] {
        if fs.exists(p) {
            fs.remove_dir_all(p).map_err(io_err(p, "remove"))?;
            did = true;
        }
    }
    if did {
        fs.sync_dir(parent).map_err(io_err(parent, "sync"))?;
        tracing::info!(dir = %dir.display(), "finished a snapshot install cut short");
    }
    Ok(did)
}

/// Reads `len` bytes of a snapshot file at an offset (from the primary,
/// over the replication stream).
pub type FetchFn<'a> = dyn FnMut(&str, u64, usize) -> Result<Vec<u8>> + 'a;

/// Write `files` under `root` (created), each read through `fetch` in
/// pieces of at most `chunk` bytes, checked against its length and crc32c
/// and fsynced. Returns the bytes written and every directory made (root
/// first), for the caller to fsync. `what` names the transfer in errors.
pub(super) fn fetch_files(
    fs: &dyn Vfs,
    root: &Path,
    files: &[SnapshotFile],
    chunk: usize,
    fetch: &mut FetchFn<'_>,
    what: &str,
) -> Result<(u64, Vec<PathBuf>)> {
    let mut total = 0u64;
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
    for f in files {
        let p = root.join(&f.path);
        let pdir = p.parent().expect("inside root").to_path_buf();
        if !fs.exists(&pdir) {
            fs.create_dir_all(&pdir).map_err(io_err(&pdir, "create"))?;
            let mut d = pdir.clone();
            while d != root && !dirs.contains(&d) {
                dirs.push(d.clone());
                d = d.parent().expect("inside root").to_path_buf();
            }
        }
        let mut out = fs.create(&p).map_err(io_err(&p, "create"))?;
        let (mut off, mut crc) = (0u64, 0u32);
        while off < f.len {
            let want = chunk.min((f.len - off) as usize);
            let b = fetch(&f.path, off, want)?;
            if b.is_empty() || b.len() > want {
                return Err(CollectionError::Corrupt(format!(
                    "{what} file {}: {} bytes arrived at offset {off} where {want} were asked for",
                    f.path,
                    b.len()
                )));
            }
            crc = crc32c::crc32c_append(crc, &b);
            out.append(&b).map_err(io_err(&p, "write"))?;
            off += b.len() as u64;
        }
        if crc != f.crc {
            return Err(CollectionError::Corrupt(format!(
                "{what} file {}: crc32c {crc:#010x}, the primary sent {:#010x}; refusing it",
                f.path, f.crc
            )));
        }
        out.sync().map_err(io_err(&p, "sync"))?;
        total += f.len;
    }
    Ok((total, dirs))
}

/// Whether `path` (`/`-separated, relative) is a plain path: no empty,
/// `.` or `..` component, not absolute.
pub(super) fn plain_path(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Replace the collection at `dir` (closed; it may not exist) with a
/// snapshot: `manifest` and `epochs` as the primary sent them, `files`
/// with their lengths and checksums, each read through `fetch(path,
/// offset, len)` in pieces of at most `chunk` bytes. A file whose bytes do
/// not match its length or checksum fails the install (with nothing
/// swapped in). Returns the bytes written.
pub fn install_snapshot(
    fs: &dyn Vfs,
    dir: &Path,
    manifest: &[u8],
    epochs: &[u8],
    files: &[SnapshotFile],
    chunk: usize,
    fetch: &mut FetchFn<'_>,
) -> Result<u64> {
    let m = Manifest::decode(manifest).map_err(|e| CollectionError::Corrupt(format!("snapshot manifest: {e}")))?;
    let history = crate::wal::decode_epochs(epochs)
        .map_err(|(off, why)| CollectionError::Corrupt(format!("snapshot epoch history at byte {off}: {why}")))?;
    for f in files {
        let ok = plain_path(&f.path)
            && (m.segments.iter().any(|s| f.path.starts_with(&format!("{s}/")))
                || m.tombstones.as_deref() == Some(f.path.as_str()));
        if !ok {
            return Err(CollectionError::Corrupt(format!(
                "snapshot file {:?} is not inside a segment or the tombstone file its manifest names",
                f.path
            )));
        }
    }
    finish_install(fs, dir)?;
    let parent = dir.parent().expect("a collection directory has a parent");
    if fs.exists(dir) {
        let marker = dir.join(NEEDS_SNAPSHOT);
        write_atomic(
            fs,
            &marker,
            b"a snapshot install began; this collection's state is not to be reported\n",
        )
        .map_err(io_err(&marker, "write"))?;
    }
    let tmp = sibling(dir, ".snapshot.tmp");
    fs.create_dir_all(&tmp).map_err(io_err(&tmp, "create"))?;
    let (total, mut dirs) = fetch_files(fs, &tmp, files, chunk, fetch, "snapshot")?;
    // The log: empty, starting after the checkpoint, with the primary's
    // epoch history (entries that begin later come with their records).
    let wal = tmp.join("wal");
    fs.create_dir_all(&wal).map_err(io_err(&wal, "create"))?;
    dirs.push(wal.clone());
    let mut h: EpochHistory = history;
    h.forget_after(m.checkpoint_lsn);
    write_atomic(fs, &wal.join(EPOCHS_FILE), &encode_epochs(&h)).map_err(io_err(&wal, "write the epoch history"))?;
    // Directories deepest first, then the manifest, which marks the new
    // directory complete.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in &dirs {
        fs.sync_dir(d).map_err(io_err(d, "sync"))?;
    }
    write_atomic(fs, &tmp.join(MANIFEST_FILE), manifest).map_err(io_err(&tmp, "write the manifest"))?;
    fs.sync_dir(parent).map_err(io_err(parent, "sync"))?;
    let old = sibling(dir, ".snapshot.old");
    if fs.exists(dir) {
        fs.rename(dir, &old).map_err(io_err(dir, "rename"))?;
    }
    fs.rename(&tmp, dir).map_err(io_err(&tmp, "rename"))?;
    fs.sync_dir(parent).map_err(io_err(parent, "sync"))?;
    if fs.exists(&old) {
        fs.remove_dir_all(&old).map_err(io_err(&old, "remove"))?;
        fs.sync_dir(parent).map_err(io_err(parent, "sync"))?;
    }
    tracing::info!(dir = %dir.display(), checkpoint = m.checkpoint_lsn, bytes = total, files = files.len(), "snapshot installed");
    Ok(total)
}
