//! Checking a backup and restoring it as a new collection directory.
//!
//! Owns: [`verify_backup`] (every file present, listed, of the right
//! length and crc32c; the manifest, tombstones and the log's copy sound
//! and covering exactly C + 1..=S) and [`restore_backup`] (check, then a
//! new collection directory built under a temporary name and renamed into
//! place). Does not own: the backup's layout and descriptor
//! (`super::backup`, `super::backup_desc`), opening the restored
//! collection (its recovery replays the log's copy), or where a restore
//! may go (the server's catalog).
//!
//! **What is shared.** A restored collection must never share a file that
//! it, the backup or the original could later change. Segment files are
//! never changed once renamed into place (a merge writes new ones and
//! unlinks the old), so they are hard-linked from the backup where the
//! file system allows; the log's copy (appended to and cut by recovery),
//! the manifest and the tombstones are copied.

use super::backup::{copy_file, io, link_or_copy, sibling, BackupError, Dirs, Placed, Placement};
use super::backup_desc::{backup_path_kind, BackupDescriptor, PathKind, DESCRIPTOR_FILE};
use super::manifest::{Manifest, MANIFEST_FILE};
use super::op::Op;
use super::segment::decode_tombstones;
use super::snapshot::walk;
use crate::storage::Vfs;
use crate::wal::{decode_record, parse_seg_name, Lsn, HEADER, MAGIC, VERSION};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, BackupError>;

/// Largest WAL record body the check accepts (the log's default limit).
const MAX_RECORD: usize = 16 << 20;

/// What a sound backup holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackupReport {
    /// The backup directory.
    pub dir: PathBuf,
    /// The collection it was taken from.
    pub collection: String,
    /// Vector dimension.
    pub dim: u32,
    /// Metric name.
    pub metric: String,
    /// The checkpoint C.
    pub checkpoint_lsn: Lsn,
    /// S: it holds exactly the records up to it.
    pub lsn: Lsn,
    /// When it was taken, Unix milliseconds.
    pub created_unix_ms: u64,
    /// Files checked (the descriptor aside).
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Records C + 1..=S in the log's copy.
    pub log_records: u64,
    /// Segment directories (the manifest's, then those the log adds).
    pub segments: Vec<String>,
    /// Bytes of the caller's metadata it carries.
    pub meta_bytes: usize,
}

/// What a restore placed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreReport {
    /// The new collection directory.
    pub dir: PathBuf,
    /// The collection the backup was taken from.
    pub source: String,
    /// Vector dimension.
    pub dim: u32,
    /// Metric name.
    pub metric: String,
    /// The checkpoint C.
    pub checkpoint_lsn: Lsn,
    /// S: the restored collection holds exactly the writes up to it (its
    /// recovery replays C + 1..=S), and its next write gets S + 1.
    pub lsn: Lsn,
    /// Its files and how they were placed.
    #[serde(flatten)]
    pub placed: Placement,
    /// The caller's metadata the backup carries (quarryd's
    /// `collection.json` of the source).
    #[serde(skip)]
    pub meta: Vec<u8>,
}

/// Check the backup in `dir`; every problem names the file (see the
/// module doc).
pub fn verify_backup(fs: &dyn Vfs, dir: &Path) -> Result<BackupReport> {
    check(fs, dir).map(|(_, r)| r)
}

fn damaged(dir: &Path, file: &str, what: String) -> BackupError {
    BackupError::Damaged {
        dir: dir.to_path_buf(),
        file: file.to_string(),
        what,
    }
}

/// Read and decode `dir`'s descriptor.
pub fn read_descriptor(fs: &dyn Vfs, dir: &Path) -> Result<BackupDescriptor> {
    if !dir.is_dir() {
        return Err(BackupError::NotFound {
            path: dir.to_path_buf(),
        });
    }
    let p = dir.join(DESCRIPTOR_FILE);
    if !fs.exists(&p) {
        return Err(damaged(
            dir,
            DESCRIPTOR_FILE,
            "missing: not a backup, or one that never finished".into(),
        ));
    }
    let b = fs.read(&p).map_err(io(&p, "read"))?;
    BackupDescriptor::decode(&b).map_err(|(off, why)| damaged(dir, DESCRIPTOR_FILE, format!("byte {off}: {why}")))
}

fn check(fs: &dyn Vfs, dir: &Path) -> Result<(BackupDescriptor, BackupReport)> {
    let d = read_descriptor(fs, dir)?;
    // Every file on disk listed, every listed file there, whole.
    let mut found = Vec::new();
    for name in fs.list(dir).map_err(io(dir, "list"))? {
        let p = dir.join(&name);
        if name == DESCRIPTOR_FILE {
            continue;
        }
        if p.is_dir() {
            walk(dir, &name, &mut found)?;
        } else {
            found.push((name, fs.file_len(&p).map_err(io(&p, "stat"))?));
        }
    }
    let listed: BTreeMap<&str, (u64, u32)> = d.files.iter().map(|f| (f.path.as_str(), (f.len, f.crc))).collect();
    if let Some((p, _)) = found.iter().find(|(p, _)| !listed.contains_key(p.as_str())) {
        return Err(damaged(
            dir,
            p,
            "not listed in SNAPSHOT (not part of this backup)".into(),
        ));
    }
    for f in &d.files {
        let p = dir.join(&f.path);
        let Some(&(_, len)) = found.iter().find(|(q, _)| q == &f.path) else {
            return Err(damaged(dir, &f.path, "missing".into()));
        };
        if len != f.len {
            return Err(damaged(
                dir,
                &f.path,
                format!("{len} bytes; SNAPSHOT says {} (cut short or grown)", f.len),
            ));
        }
        let (_, crc) = crate::format::crc32c_of_file(&p).map_err(io(&p, "read"))?;
        if crc != f.crc {
            return Err(damaged(
                dir,
                &f.path,
                format!("crc32c {crc:#010x}; SNAPSHOT says {:#010x} (damaged)", f.crc),
            ));
        }
    }
    // The manifest: this collection's shape, checkpoint C.
    let mpath = dir.join(MANIFEST_FILE);
    if !listed.contains_key(MANIFEST_FILE) {
        return Err(damaged(dir, MANIFEST_FILE, "missing".into()));
    }
    let m = Manifest::decode(&fs.read(&mpath).map_err(io(&mpath, "read"))?)
        .map_err(|e| damaged(dir, MANIFEST_FILE, e.to_string()))?;
    m.check(mpath.clone(), d.dim as usize, d.metric)
        .map_err(|e| damaged(dir, MANIFEST_FILE, e.to_string()))?;
    if m.checkpoint_lsn != d.checkpoint {
        return Err(damaged(
            dir,
            MANIFEST_FILE,
            format!("checkpoint LSN {}; SNAPSHOT says {}", m.checkpoint_lsn, d.checkpoint),
        ));
    }
    if let Some(t) = &m.tombstones {
        if !listed.contains_key(t.as_str()) {
            return Err(damaged(dir, t, "named by the manifest, missing".into()));
        }
        decode_tombstones(&fs.read(&dir.join(t)).map_err(io(&dir.join(t), "read"))?)
            .map_err(|why| damaged(dir, t, why))?;
    }
    let logged = check_log(fs, dir, &d)?;
    // Segments: every one named has files; every file's segment is named.
    let segments: Vec<String> = m.segments.iter().chain(&logged).cloned().collect();
    for s in &segments {
        if !d.files.iter().any(|f| f.path.starts_with(&format!("{s}/"))) {
            return Err(damaged(dir, s, "named by the manifest or the log, has no files".into()));
        }
    }
    for f in &d.files {
        if backup_path_kind(&f.path) == Ok(PathKind::Segment) {
            let top = f.path.split('/').next().unwrap_or_default();
            if !segments.iter().any(|s| s == top) {
                return Err(damaged(
                    dir,
                    &f.path,
                    format!("segment {top} is named by neither the manifest nor the log"),
                ));
            }
        } else if f.path.starts_with("tomb-") && m.tombstones.as_deref() != Some(f.path.as_str()) {
            return Err(damaged(dir, &f.path, "not the manifest's tombstone file".into()));
        }
    }
    let report = BackupReport {
        dir: dir.to_path_buf(),
        collection: d.collection.clone(),
        dim: d.dim,
        metric: d.metric.name().into(),
        checkpoint_lsn: d.checkpoint,
        lsn: d.lsn,
        created_unix_ms: d.created_unix_ms,
        files: d.files.len(),
        bytes: d.bytes(),
        log_records: d.lsn - d.checkpoint,
        segments,
        meta_bytes: d.meta.len(),
    };
    Ok((d, report))
}

/// The log's copy: segment files whose records are exactly C + 1..=S,
/// each body a valid operation. Returns the bulk segments it adds.
fn check_log(fs: &dyn Vfs, dir: &Path, d: &BackupDescriptor) -> Result<Vec<String>> {
    let mut segs: Vec<(Lsn, &str)> = Vec::new();
    for f in d.files.iter().filter(|f| f.path.starts_with("wal/")) {
        let first = parse_seg_name(&f.path["wal/".len()..])
            .ok_or_else(|| damaged(dir, &f.path, "not a log segment name (wal-<20 digits>.log)".into()))?;
        segs.push((first, &f.path));
    }
    segs.sort_unstable();
    if segs.first().map(|s| s.0) != Some(d.checkpoint + 1) {
        return Err(damaged(
            dir,
            "wal/",
            format!(
                "the log's copy must start at LSN {} (the checkpoint + 1)",
                d.checkpoint + 1
            ),
        ));
    }
    let mut next = d.checkpoint + 1;
    let mut logged = Vec::new();
    for (first, path) in segs {
        let b = fs.read(&dir.join(path)).map_err(io(&dir.join(path), "read"))?;
        if b.len() < HEADER
            || &b[..4] != MAGIC
            || u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")) != VERSION
            || u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")) != first
        {
            return Err(damaged(dir, path, "bad segment header".into()));
        }
        if first != next {
            return Err(damaged(
                dir,
                path,
                format!("starts at LSN {first}; LSN {next} was expected"),
            ));
        }
        let mut off = HEADER;
        while off < b.len() {
            let (h, body, end) =
                decode_record(&b, off, MAX_RECORD).map_err(|why| damaged(dir, path, format!("byte {off}: {why}")))?;
            if h.lsn != next || h.lsn > d.lsn {
                return Err(damaged(
                    dir,
                    path,
                    format!(
                        "byte {off}: LSN {} where {next} (at most {}) was expected",
                        h.lsn, d.lsn
                    ),
                ));
            }
            match Op::decode(&b[body], d.dim as usize) {
                Ok(Op::AddSegment { name }) => logged.push(name),
                Ok(_) => {}
                Err(e) => return Err(damaged(dir, path, format!("record {}: {e}", h.lsn))),
            }
            next += 1;
            off = end;
        }
    }
    if next != d.lsn + 1 {
        return Err(damaged(
            dir,
            "wal/",
            format!("the log's copy ends at LSN {}; SNAPSHOT says {}", next - 1, d.lsn),
        ));
    }
    Ok(logged)
}

/// Check the backup in `dir`, then make `target` (which must not exist; its
/// parent must) a collection directory holding exactly its writes up to
/// S: built as `<target>.restore.tmp` (a leftover of that name is
/// removed first: one restore per target at a time), fsynced, renamed into
/// place, the parent fsynced. Open it to use it.
pub fn restore_backup(fs: &dyn Vfs, dir: &Path, target: &Path) -> Result<RestoreReport> {
    let (d, _) = check(fs, dir)?;
    if target.symlink_metadata().is_ok() {
        return Err(BackupError::Exists {
            path: target.to_path_buf(),
        });
    }
    let parent = target
        .parent()
        .filter(|p| p.is_dir())
        .ok_or_else(|| BackupError::NotFound {
            path: target.parent().unwrap_or(target).to_path_buf(),
        })?;
    let tmp = sibling(target, ".restore.tmp");
    if fs.exists(&tmp) {
        tracing::warn!(path = %tmp.display(), "removing the leftover of a restore cut short");
        fs.remove_dir_all(&tmp).map_err(io(&tmp, "remove"))?;
    }
    fs.create_dir_all(&tmp).map_err(io(&tmp, "create"))?;
    let placed = place(fs, dir, &tmp, &d).and_then(|p| {
        fs.rename(&tmp, target).map_err(io(&tmp, "rename"))?;
        fs.sync_dir(parent).map_err(io(parent, "sync"))?;
        Ok(p)
    });
    let placed = match placed {
        Ok(p) => p,
        Err(e) => {
            if let Err(r) = fs.remove_dir_all(&tmp) {
                tracing::warn!(path = %tmp.display(), error = %r, "cannot remove a failed restore's directory");
            }
            return Err(e);
        }
    };
    tracing::info!(
        backup = %dir.display(), dir = %target.display(), lsn = d.lsn, linked = placed.linked_files,
        copied = placed.copied_files, "backup restored"
    );
    Ok(RestoreReport {
        dir: target.to_path_buf(),
        source: d.collection.clone(),
        dim: d.dim,
        metric: d.metric.name().into(),
        checkpoint_lsn: d.checkpoint,
        lsn: d.lsn,
        placed,
        meta: d.meta,
    })
}

/// Every file of `d` from `dir` into `tmp`, all fsynced.
fn place(fs: &dyn Vfs, dir: &Path, tmp: &Path, d: &BackupDescriptor) -> Result<Placement> {
    let mut dirs = Dirs::new(tmp);
    let mut placed = Placement {
        files: d.files.len(),
        bytes: d.bytes(),
        ..Placement::default()
    };
    for f in &d.files {
        let (src, dst) = (dir.join(&f.path), dirs.parent_of(fs, &f.path)?);
        let how = match backup_path_kind(&f.path) {
            Ok(PathKind::Segment) => link_or_copy(fs, &src, &dst, &mut placed.copy_reason)?,
            _ => Placed::Copied(copy_file(fs, &src, &dst)?.1),
        };
        if let Placed::Copied(crc) = how {
            if crc != f.crc {
                return Err(damaged(
                    dir,
                    &f.path,
                    format!(
                        "changed while it was restored (crc32c {crc:#010x}; SNAPSHOT says {:#010x})",
                        f.crc
                    ),
                ));
            }
        }
        placed.count(how);
    }
    dirs.sync(fs)?;
    Ok(placed)
}
