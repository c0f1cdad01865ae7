//! Backups of one collection, taken while it serves: the files of one
//! consistent state at LSN S, in a directory that is whole or absent.
//!
//! Owns: [`Collection::backup`], the backup directory's layout
//! (docs/format.md, "Backup directory"), its temporary directory and the
//! leftovers a crash leaves of one, [`BackupError`], and placing a file by
//! hard link or copy ([`link_or_copy`], shared with `super::restore`).
//! Does not own: the descriptor's bytes (`super::backup_desc`), checking
//! or restoring a backup (`super::restore`), the consistent view of the
//! files (`super::snapshot`, shared with a standby's snapshot), or where a
//! backup may go (the server checks its paths).
//!
//! **The order.** Under the flush lock, for only as long as a standby's
//! snapshot takes it: the manifest (checkpoint C), a hold on the log from
//! C + 1 ([`crate::wal::WalHold`], in memory: a crash leaves nothing that
//! keeps the log), every segment held (a merge's deletion waits), the
//! tombstone file's bytes, and S = the applied LSN (every write
//! acknowledged before the backup began is at or below it; a record logged
//! but still waiting at a sync primary's commit gate is not). Then, with
//! no lock: the log is synced to S, records C + 1..=S are copied into
//! `wal/` as WAL segment files (the engine's own recovery replays them),
//! every segment file (immutable) is hard-linked (copied when the link
//! fails: another file system), the manifest and tombstones are written,
//! everything is fsynced, the `SNAPSHOT` descriptor is written last, the
//! directory is renamed from `<out>.tmp-<pid>-<n>` to `<out>` and the
//! parent fsynced. Searches and writes go on throughout; writes after S
//! are not in the backup.
//!
//! **A crash** at any moment leaves `<out>` whole or absent. A leftover
//! `<out>.tmp-<pid>-<n>` whose process is gone is removed by the next
//! backup to `<out>` (and reported in its [`BackupInfo`]); one whose
//! process still runs makes that backup fail with [`BackupError::Busy`].

use super::backup_desc::{BackupDescriptor, DESCRIPTOR_FILE, MAX_META, MAX_NAME};
use super::manifest::MANIFEST_FILE;
use super::op::Op;
use super::snapshot::{needs_snapshot, walk, SnapshotFile, View};
use super::{Collection, CollectionError};
use crate::storage::{VFile, Vfs};
use crate::wal::{encode_record, segment_header, Lsn, WalError};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Errors of a backup, a check of one, or a restore.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The output directory, or a restore's target, exists.
    #[error("{path}: already exists; a backup or restore never writes over anything")]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// Another backup into the same directory is running.
    #[error("{path}: a backup into it is running ({who}); if none is, remove this directory")]
    Busy {
        /// Its temporary directory.
        path: PathBuf,
        /// Who runs it.
        who: String,
    },
    /// No backup directory there.
    #[error("{path}: no such directory")]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The caller's input is wrong (names the field).
    #[error("{0}")]
    InvalidArgument(String),
    /// The collection cannot be backed up as it is.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A backup directory is not whole or not sound: names the file and
    /// what is wrong with it.
    #[error("backup {dir}: {file}: {what}")]
    Damaged {
        /// The backup directory.
        dir: PathBuf,
        /// The file, relative to it.
        file: String,
        /// What is wrong.
        what: String,
    },
    /// The collection failed.
    #[error(transparent)]
    Collection(#[from] CollectionError),
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A file operation failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// OS error.
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, BackupError>;

pub(super) fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// What a backup did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackupInfo {
    /// The backup directory.
    pub dir: PathBuf,
    /// The collection's name as recorded.
    pub collection: String,
    /// The manifest's checkpoint C.
    pub checkpoint_lsn: Lsn,
    /// S: the backup holds exactly the records up to it.
    pub lsn: Lsn,
    /// Its files and how they were placed.
    #[serde(flatten)]
    pub placed: Placement,
    /// Records C + 1..=S copied.
    pub log_records: u64,
    /// Wall time.
    pub seconds: f64,
    /// Temporary directories of backups a crash cut short, removed.
    pub leftovers_removed: Vec<PathBuf>,
}

/// The files of a backup, or of a restore, and how they were placed.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Placement {
    /// Files listed in the descriptor.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Segment files hard-linked (sharing blocks with their source).
    pub linked_files: usize,
    /// Files written: the log's copy, the manifest, the tombstones, and
    /// segment files whose link was refused.
    pub copied_files: usize,
    /// Why segment files were copied rather than linked, if any was.
    pub copy_reason: Option<String>,
}

impl Placement {
    /// Count one placed file.
    pub(super) fn count(&mut self, how: Placed) {
        match how {
            Placed::Linked => self.linked_files += 1,
            Placed::Copied(_) => self.copied_files += 1,
        }
    }
}

/// How a file was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Placed {
    /// Hard-linked.
    Linked,
    /// Copied (its crc32c computed on the way).
    Copied(u32),
}

/// Whether a failed hard link should be replaced by a copy: another file
/// system (EXDEV), too many links (EMLINK), or a file system without
/// hard links (EPERM).
fn link_refused(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EXDEV | libc::EMLINK | libc::EPERM))
}

/// Place `src` at `dst` by a hard link, or, where the link is refused
/// (see [`link_refused`]), a copy: `why` gets the first refusal.
pub(super) fn link_or_copy(fs: &dyn Vfs, src: &Path, dst: &Path, why: &mut Option<String>) -> Result<Placed> {
    match fs.hard_link(src, dst) {
        Ok(()) => Ok(Placed::Linked),
        Err(e) if link_refused(&e) => {
            if why.is_none() {
                *why = Some(format!(
                    "hard links from {} to {} failed ({e}); files were copied",
                    src.parent().unwrap_or(src).display(),
                    dst.parent().unwrap_or(dst).display()
                ));
            }
            copy_file(fs, src, dst).map(|(_, crc)| Placed::Copied(crc))
        }
        Err(e) => Err(io(dst, "link")(e)),
    }
}

/// Copy `src` to a new file `dst`, fsynced; its length and crc32c.
pub(super) fn copy_file(fs: &dyn Vfs, src: &Path, dst: &Path) -> Result<(u64, u32)> {
    const CHUNK: usize = 4 << 20;
    let mut out = fs.create(dst).map_err(io(dst, "create"))?;
    let (mut off, mut crc) = (0u64, 0u32);
    loop {
        let b = fs.read_at(src, off, CHUNK).map_err(io(src, "read"))?;
        if b.is_empty() {
            break;
        }
        crc = crc32c::crc32c_append(crc, &b);
        out.append(&b).map_err(io(dst, "write"))?;
        off += b.len() as u64;
    }
    out.sync().map_err(io(dst, "sync"))?;
    Ok((off, crc))
}

/// Write `bytes` as the new file `dst`, fsynced.
pub(super) fn write_new(fs: &dyn Vfs, dst: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = fs.create(dst).map_err(io(dst, "create"))?;
    out.append(bytes).map_err(io(dst, "write"))?;
    out.sync().map_err(io(dst, "sync"))
}

/// The directories made under one root, to be fsynced before the
/// directory is renamed into place.
pub(super) struct Dirs {
    root: PathBuf,
    made: BTreeSet<PathBuf>,
}

impl Dirs {
    pub(super) fn new(root: &Path) -> Dirs {
        Dirs {
            root: root.to_path_buf(),
            made: BTreeSet::new(),
        }
    }

    /// Make the directory of `rel` (a `/`-separated path under the root).
    pub(super) fn parent_of(&mut self, fs: &dyn Vfs, rel: &str) -> Result<PathBuf> {
        let p = self.root.join(rel);
        let mut d = p.parent().expect("under the root").to_path_buf();
        if !self.made.contains(&d) && d != self.root {
            fs.create_dir_all(&d).map_err(io(&d, "create"))?;
            while d != self.root && self.made.insert(d.clone()) {
                d = d.parent().expect("under the root").to_path_buf();
            }
        }
        Ok(p)
    }

    /// fsync every directory made, deepest first, then the root.
    pub(super) fn sync(&self, fs: &dyn Vfs) -> Result<()> {
        let mut all: Vec<&PathBuf> = self.made.iter().collect();
        all.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in all.into_iter().chain(std::iter::once(&self.root)) {
            fs.sync_dir(d).map_err(io(d, "sync"))?;
        }
        Ok(())
    }
}

/// `<dir><suffix>` beside `dir`.
pub(super) fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Backups running in this process, by output directory.
static RUNNING: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// This process's claim on an output directory (released on drop).
struct Claim(PathBuf);

impl Claim {
    fn take(out: &Path) -> Result<Claim> {
        if !RUNNING.lock().expect("lock").insert(out.to_path_buf()) {
            return Err(BackupError::Busy {
                path: out.to_path_buf(),
                who: "this process".into(),
            });
        }
        Ok(Claim(out.to_path_buf()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        RUNNING.lock().expect("lock").remove(&self.0);
    }
}

/// Remove the temporary directories earlier backups to `out` left (their
/// process is gone, or it is this one and no backup to `out` runs in it:
/// the claim is held). One of a live process fails with `Busy`.
fn clear_leftovers(fs: &dyn Vfs, out: &Path) -> Result<Vec<PathBuf>> {
    let parent = out.parent().expect("checked");
    let prefix = format!("{}.tmp-", out.file_name().expect("checked").to_string_lossy());
    let mut removed = Vec::new();
    for name in fs.list(parent).map_err(io(parent, "list"))? {
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, n)| n.parse::<u64>().ok().and(pid.parse::<u32>().ok()))
        else {
            continue;
        };
        let p = parent.join(&name);
        if pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists() {
            return Err(BackupError::Busy {
                path: p,
                who: format!("process {pid}"),
            });
        }
        tracing::warn!(path = %p.display(), "removing the leftover of a backup cut short");
        fs.remove_dir_all(&p).map_err(io(&p, "remove"))?;
        removed.push(p);
    }
    if !removed.is_empty() {
        fs.sync_dir(parent).map_err(io(parent, "sync"))?;
    }
    Ok(removed)
}

/// What the work inside the temporary directory produced.
struct Written {
    desc: BackupDescriptor,
    placed: Placement,
}

impl Collection {
    /// Back this collection up into the new directory `out` (see the
    /// module doc), recording `name` and the caller's `meta` (opaque
    /// here; quarryd passes `collection.json`) in the descriptor.
    /// `progress(stage, done, total)`: stage `log` counts records, `files`
    /// bytes.
    pub fn backup(
        &self,
        out: &Path,
        name: &str,
        meta: &[u8],
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<BackupInfo> {
        let t0 = Instant::now();
        let fs = self.fs.as_ref();
        let bad = |m: String| Err(BackupError::InvalidArgument(m));
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return bad(format!("name {name:?} must be 1..=64 characters from [A-Za-z0-9_-]"));
        }
        if meta.len() > MAX_META {
            return bad(format!("meta is {} bytes; the limit is {MAX_META}", meta.len()));
        }
        let parent = match (out.parent(), out.file_name()) {
            (Some(p), Some(_)) if !p.as_os_str().is_empty() => p,
            _ => return bad(format!("out {} must name a directory inside another", out.display())),
        };
        if !parent.is_dir() {
            return Err(BackupError::NotFound {
                path: parent.to_path_buf(),
            });
        }
        if out.symlink_metadata().is_ok() {
            return Err(BackupError::Exists {
                path: out.to_path_buf(),
            });
        }
        let _claim = Claim::take(out)?;
        let leftovers_removed = clear_leftovers(fs, out)?;
        if needs_snapshot(fs, &self.dir) {
            return Err(BackupError::FailedPrecondition(format!(
                "{}: this collection's replacement by a snapshot from its primary did not finish; back up the primary",
                self.dir.display()
            )));
        }
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = sibling(
            out,
            &format!(
                ".tmp-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        );
        fs.create_dir_all(&tmp).map_err(io(&tmp, "create"))?;
        let created_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let finished = self
            .backup_into(&tmp, name, meta, created_unix_ms, progress)
            .and_then(|w| {
                if out.symlink_metadata().is_ok() {
                    return Err(BackupError::Exists {
                        path: out.to_path_buf(),
                    });
                }
                fs.rename(&tmp, out).map_err(io(&tmp, "rename"))?;
                fs.sync_dir(parent).map_err(io(parent, "sync"))?;
                Ok(w)
            });
        let w = match finished {
            Ok(w) => w,
            Err(e) => {
                if let Err(r) = fs.remove_dir_all(&tmp) {
                    tracing::warn!(path = %tmp.display(), error = %r, "cannot remove a failed backup's directory; the next backup to this place removes it");
                }
                return Err(e);
            }
        };
        let info = BackupInfo {
            dir: out.to_path_buf(),
            collection: name.to_string(),
            checkpoint_lsn: w.desc.checkpoint,
            lsn: w.desc.lsn,
            placed: w.placed,
            log_records: w.desc.lsn - w.desc.checkpoint,
            seconds: t0.elapsed().as_secs_f64(),
            leftovers_removed,
        };
        let p = &info.placed;
        tracing::info!(
            dir = %out.display(), checkpoint = info.checkpoint_lsn, lsn = info.lsn, files = p.files,
            bytes = p.bytes, linked = p.linked_files, copied = p.copied_files,
            seconds = info.seconds, "backup written"
        );
        Ok(info)
    }

    /// Everything but the final rename: the files and the descriptor in
    /// `tmp`, all fsynced.
    fn backup_into(
        &self,
        tmp: &Path,
        name: &str,
        meta: &[u8],
        created_unix_ms: u64,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<Written> {
        let fs = self.fs.as_ref();
        let (view, hold) = self.view(|c| Ok(self.wal.hold(c + 1)?)).map_err(|e| match e {
            CollectionError::InvalidArgument(m) => BackupError::FailedPrecondition(m),
            e => e.into(),
        })?;
        let View {
            manifest,
            m,
            tombstones,
            pins,
            applied,
        } = view;
        let (c, s) = (m.checkpoint_lsn, applied);
        let cuts = self.wal.cuts();
        // Under the interval policy an applied record may not be durable
        // yet: the copy reads durable records only.
        self.wal.sync()?;
        let mut dirs = Dirs::new(tmp);
        let (mut files, logged) = self.copy_log(&mut dirs, c, s, progress)?;
        drop(hold);
        if self.wal.cuts() != cuts {
            return Err(BackupError::FailedPrecondition(format!(
                "{}: the log's tail was cut while it was copied (a standby re-joining its primary); take the backup again",
                self.dir.display()
            )));
        }
        let mut listed = Vec::new();
        for seg in m.segments.iter().chain(&logged) {
            if !pins.iter().any(|p| &p.name == seg) {
                return Err(CollectionError::Corrupt(format!(
                    "{}: segment {seg} is not in the collection's state",
                    self.dir.display()
                ))
                .into());
            }
            walk(&self.dir, seg, &mut listed).map_err(BackupError::from)?;
        }
        let total: u64 = listed.iter().map(|f| f.1).sum();
        let mut placed = Placement {
            copied_files: files.len(),
            ..Placement::default()
        };
        let mut done = 0u64;
        for (path, len) in listed {
            let (src, dst) = (self.dir.join(&path), dirs.parent_of(fs, &path)?);
            let how = link_or_copy(fs, &src, &dst, &mut placed.copy_reason)?;
            placed.count(how);
            let crc = match how {
                Placed::Linked => super::snapshot::crc_of(&dst)?,
                Placed::Copied(crc) => crc,
            };
            let got = fs.file_len(&dst).map_err(io(&dst, "stat"))?;
            if got != len {
                return Err(self.corrupt(format!("{}: {got} bytes where the segment had {len}", dst.display())));
            }
            done += len;
            progress("files", done, total);
            files.push(SnapshotFile { path, len, crc });
        }
        let mut small = vec![(MANIFEST_FILE.to_string(), manifest)];
        small.extend(tombstones);
        for (path, bytes) in small {
            write_new(fs, &dirs.parent_of(fs, &path)?, &bytes)?;
            placed.copied_files += 1;
            files.push(SnapshotFile {
                path,
                len: bytes.len() as u64,
                crc: crc32c::crc32c(&bytes),
            });
        }
        drop(pins);
        let desc = BackupDescriptor {
            checkpoint: c,
            lsn: s,
            created_unix_ms,
            dim: self.opts.dim as u32,
            metric: self.opts.metric,
            collection: name.to_string(),
            meta: meta.to_vec(),
            files,
        };
        // Every name durable, then the descriptor, which marks the
        // directory whole.
        dirs.sync(fs)?;
        write_new(fs, &tmp.join(DESCRIPTOR_FILE), &desc.encode())?;
        fs.sync_dir(tmp).map_err(io(tmp, "sync"))?;
        placed.files = desc.files.len();
        placed.bytes = desc.bytes();
        Ok(Written { desc, placed })
    }

    /// Copy records `c + 1..=s` into `wal/` under the root of `dirs` as
    /// WAL segment files of at most the log's segment size (a segment
    /// holds at least one record; with no record, one empty segment
    /// starting at `c + 1`), each record's `synced` set to `s` (all of
    /// them were durable when copied). Returns the files and the bulk
    /// segments the records add.
    fn copy_log(
        &self,
        dirs: &mut Dirs,
        c: Lsn,
        s: Lsn,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<(Vec<SnapshotFile>, Vec<String>)> {
        let fs = self.fs.as_ref();
        let mut files = Vec::new();
        let mut logged = Vec::new();
        let mut cur = self.wal.cursor(c + 1)?;
        let mut seg = LogSeg::create(fs, dirs, c + 1)?;
        let mut next = c + 1;
        let mut buf = Vec::new();
        while next <= s {
            let recs = self.wal.read(&mut cur, 1 << 20)?;
            if recs.is_empty() {
                return Err(self.corrupt(format!("the log ends at LSN {} before the backup's LSN {s}", next - 1)));
            }
            for (lsn, body) in recs.into_iter().take_while(|r| r.0 <= s) {
                if lsn != next {
                    return Err(self.corrupt(format!("the log gave LSN {lsn} where {next} was expected")));
                }
                match Op::decode(&body, self.opts.dim) {
                    Ok(Op::AddSegment { name }) => logged.push(name),
                    Ok(_) => {}
                    Err(e) => return Err(self.corrupt(format!("WAL record {lsn}: {e}"))),
                }
                buf.clear();
                encode_record(lsn, s, &body, &mut buf);
                if seg.records > 0 && seg.len + buf.len() as u64 > self.opts.wal.segment_bytes {
                    files.push(seg.seal()?);
                    seg = LogSeg::create(fs, dirs, lsn)?;
                }
                seg.append(&buf)?;
                next += 1;
            }
            progress("log", next - 1 - c, s - c);
        }
        files.push(seg.seal()?);
        Ok((files, logged))
    }

    fn corrupt(&self, why: String) -> BackupError {
        CollectionError::Corrupt(format!("{}: {why}", self.dir.display())).into()
    }
}

/// A segment file of the log's copy being written.
struct LogSeg {
    path: String,
    full: PathBuf,
    f: Box<dyn VFile>,
    len: u64,
    crc: u32,
    records: u64,
}

impl LogSeg {
    /// `wal/wal-<first>.log` with its header.
    fn create(fs: &dyn Vfs, dirs: &mut Dirs, first: Lsn) -> Result<LogSeg> {
        let path = format!("wal/wal-{first:020}.log");
        let full = dirs.parent_of(fs, &path)?;
        let f = fs.create(&full).map_err(io(&full, "create"))?;
        let mut seg = LogSeg {
            path,
            full,
            f,
            len: 0,
            crc: 0,
            records: 0,
        };
        seg.append(&segment_header(first))?;
        seg.records = 0;
        Ok(seg)
    }

    fn append(&mut self, b: &[u8]) -> Result<()> {
        self.f.append(b).map_err(io(&self.full, "write"))?;
        self.len += b.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.records += 1;
        Ok(())
    }

    /// fsynced; its entry.
    fn seal(mut self) -> Result<SnapshotFile> {
        self.f.sync().map_err(io(&self.full, "sync"))?;
        Ok(SnapshotFile {
            path: self.path,
            len: self.len,
            crc: self.crc,
        })
    }
}
