//! A fault-injecting [`Vfs`] for tests: injected ENOSPC and EIO, and
//! simulated power loss.
//!
//! Owns: the crash model. `CrashFs` works on a real directory and keeps,
//! beside it, what a power cut would leave behind:
//! - per file, how many bytes are durable (`sync`, `sync_file`);
//! - which names are durable (`sync_dir` of their directory);
//! - an undo log of renames and removals not yet made durable (a replaced
//!   or removed file is moved aside, not deleted, until `sync_dir`).
//!
//! [`CrashFs::power_loss`] then rolls the directory back to exactly that:
//! unsynced renames and removals are undone, names never made durable
//! disappear, and every file is cut to its durable length. With `torn`, a
//! random prefix of the unsynced tail survives instead, sometimes with a
//! zeroed hole in it (pages written back out of order) — what a real disk
//! may show after a cut, and what the WAL's checksums must catch. This is
//! page-cache loss, which `kill -9` alone cannot show.
//!
//! [`CrashFs::crash`] first freezes the file system (every call fails with
//! EIO, as on a dead machine), so that objects dropped afterwards cannot
//! sync anything. Limits of the model: a file must not be renamed while it
//! is open for appending, renames stay within one directory, and metadata
//! of a synced file (its length) is durable with its data, as with
//! `fdatasync` after an append.

use super::vfs::{SyncHandle, VFile, Vfs};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{HashMap, HashSet};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// ENOSPC: the disk is full.
    NoSpace,
    /// EIO: the device failed.
    Io,
}

/// When to fail.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// Mutating operations allowed before the first failure.
    pub after_ops: u64,
    /// Which error.
    pub kind: FaultKind,
    /// Keep failing every later mutating operation (a full disk) rather
    /// than failing once.
    pub persistent: bool,
}

impl Fault {
    /// A persistent fault of a random kind (EIO or ENOSPC) after a random
    /// number of operations in `after`, for randomized trials.
    pub fn random(rng: &mut impl Rng, after: std::ops::Range<u64>) -> Fault {
        Fault {
            after_ops: rng.random_range(after),
            kind: if rng.random_bool(0.5) {
                FaultKind::Io
            } else {
                FaultKind::NoSpace
            },
            persistent: true,
        }
    }
}

enum Undo {
    Rename {
        from: PathBuf,
        to: PathBuf,
        from_durable: bool,
        /// What `to` was before (moved aside): (backup, was durable, synced).
        replaced: Option<(PathBuf, bool, Option<u64>)>,
    },
    Remove {
        path: PathBuf,
        backup: PathBuf,
        /// Durable names and synced lengths under `path` (itself included).
        durable: Vec<PathBuf>,
        synced: Vec<(PathBuf, u64)>,
    },
}

impl Undo {
    /// The directory `from` was renamed to `to`: pending undos of entries
    /// inside it now name them under `to` (a power cut can undo those
    /// inner changes, not move them back out of the renamed directory).
    fn moved(&mut self, from: &Path, to: &Path) {
        let re = |p: &mut PathBuf| {
            if let Ok(rest) = p.strip_prefix(from) {
                if !rest.as_os_str().is_empty() {
                    *p = to.join(rest);
                }
            }
        };
        match self {
            Undo::Rename { from: f, to: t, .. } => {
                re(f);
                re(t);
            }
            Undo::Remove {
                path, durable, synced, ..
            } => {
                re(path);
                durable.iter_mut().for_each(re);
                synced.iter_mut().for_each(|(p, _)| re(p));
            }
        }
    }

    fn dir(&self) -> Option<&Path> {
        match self {
            Undo::Rename { to, .. } => to.parent(),
            Undo::Remove { path, .. } => path.parent(),
        }
    }
}

#[derive(Default)]
struct State {
    durable: HashSet<PathBuf>,
    synced: HashMap<PathBuf, u64>,
    undo: Vec<Undo>,
    fault: Option<Fault>,
    ops: u64,
    frozen: bool,
    backups: u64,
    /// Hard links fail with EXDEV (as across file systems).
    cross_device: bool,
}

impl State {
    /// Count one mutating operation and fail it if a fault says so.
    fn op(&mut self) -> io::Result<()> {
        self.op_kind(false)
    }

    /// As `op`; `frees` marks operations that only release space
    /// (truncation), which a full disk does not refuse.
    fn op_kind(&mut self, frees: bool) -> io::Result<()> {
        if self.frozen {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.ops += 1;
        if let Some(f) = self.fault {
            if self.ops > f.after_ops && !(frees && f.kind == FaultKind::NoSpace) {
                if !f.persistent {
                    self.fault = None;
                }
                return Err(io::Error::from_raw_os_error(match f.kind {
                    FaultKind::NoSpace => libc::ENOSPC,
                    FaultKind::Io => libc::EIO,
                }));
            }
        }
        Ok(())
    }
    /// Move the state of `from` and everything under it (a renamed
    /// directory's children keep their durability) to `to`; the entry
    /// `from` itself is not made durable under `to`.
    fn rekey(&mut self, from: &Path, to: &Path) {
        let (durable, synced) = self.take_subtree(from);
        let re = |p: &Path| to.join(p.strip_prefix(from).expect("under from"));
        self.durable
            .extend(durable.iter().filter(|p| p.as_path() != from).map(|p| re(p)));
        self.synced.extend(synced.iter().map(|(p, n)| (re(p), *n)));
    }

    fn take_subtree(&mut self, p: &Path) -> (Vec<PathBuf>, Vec<(PathBuf, u64)>) {
        let durable: Vec<PathBuf> = self.durable.iter().filter(|q| q.starts_with(p)).cloned().collect();
        for q in &durable {
            self.durable.remove(q);
        }
        let synced: Vec<(PathBuf, u64)> = self
            .synced
            .iter()
            .filter(|(q, _)| q.starts_with(p))
            .map(|(q, n)| (q.clone(), *n))
            .collect();
        for (q, _) in &synced {
            self.synced.remove(q);
        }
        (durable, synced)
    }
}

/// The fault-injecting, power-cut-simulating file system.
#[derive(Clone)]
pub struct CrashFs {
    root: PathBuf,
    bak: PathBuf,
    st: Arc<Mutex<State>>,
}

impl CrashFs {
    /// Work on `root` (created if missing). Everything already there counts
    /// as durable.
    pub fn new(root: &Path) -> io::Result<CrashFs> {
        std::fs::create_dir_all(root)?;
        let bak = root.join(".crashfs");
        std::fs::create_dir_all(&bak)?;
        let fs = CrashFs {
            root: root.to_path_buf(),
            bak,
            st: Arc::new(Mutex::new(State::default())),
        };
        let mut st = fs.st.lock().expect("lock");
        for p in fs.walk()? {
            if p.is_file() {
                st.synced.insert(p.clone(), std::fs::metadata(&p)?.len());
            }
            st.durable.insert(p);
        }
        drop(st);
        Ok(fs)
    }

    /// Arm (or clear) an injected fault.
    pub fn set_fault(&self, f: Option<Fault>) {
        let mut st = self.st.lock().expect("lock");
        st.ops = 0;
        st.fault = f;
    }

    /// Make every later hard link fail with EXDEV, as between two file
    /// systems (or link again).
    pub fn set_cross_device(&self, on: bool) {
        self.st.lock().expect("lock").cross_device = on;
    }

    /// Mutating operations so far (since the last `set_fault`).
    pub fn ops(&self) -> u64 {
        self.st.lock().expect("lock").ops
    }

    /// The machine dies: every later call fails with EIO until
    /// [`CrashFs::power_loss`].
    pub fn crash(&self) {
        self.st.lock().expect("lock").frozen = true;
    }

    /// Roll the directory back to what a power cut leaves (see the module
    /// doc), and thaw. `torn`: keep a random prefix of unsynced tails.
    pub fn power_loss(&self, seed: u64, torn: bool) -> io::Result<()> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut st = self.st.lock().expect("lock");
        // Undo unsynced renames and removals, newest first.
        while let Some(u) = st.undo.pop() {
            match u {
                Undo::Rename {
                    from,
                    to,
                    from_durable,
                    replaced,
                } => {
                    std::fs::rename(&to, &from)?;
                    st.durable.remove(&to);
                    st.rekey(&to, &from);
                    if from_durable {
                        st.durable.insert(from);
                    }
                    if let Some((b, durable, synced)) = replaced {
                        std::fs::rename(&b, &to)?;
                        if durable {
                            st.durable.insert(to.clone());
                        }
                        if let Some(n) = synced {
                            st.synced.insert(to, n);
                        }
                    }
                }
                Undo::Remove {
                    path,
                    backup,
                    durable,
                    synced,
                } => {
                    if path.exists() {
                        remove_any(&path)?;
                    }
                    std::fs::rename(&backup, &path)?;
                    st.durable.extend(durable);
                    st.synced.extend(synced);
                }
            }
        }
        // Names never made durable vanish; files keep their durable bytes.
        for p in self.walk()? {
            if !p.exists() {
                continue; // inside a directory removed just before
            }
            if !st.durable.contains(&p) {
                remove_any(&p)?;
                st.take_subtree(&p);
                continue;
            }
            if p.is_file() {
                let len = std::fs::metadata(&p)?.len();
                let synced = st.synced.get(&p).copied().unwrap_or(0).min(len);
                let keep = if torn && len > synced {
                    synced + rng.random_range(0..=len - synced)
                } else {
                    synced
                };
                let f = std::fs::OpenOptions::new().write(true).open(&p)?;
                f.set_len(keep)?;
                if torn && keep > synced + 1 && rng.random_bool(0.5) {
                    // A page of the tail never reached the disk.
                    let a = rng.random_range(synced..keep);
                    let b = rng.random_range(a..=keep);
                    let mut f = f;
                    f.seek(SeekFrom::Start(a))?;
                    f.write_all(&vec![0u8; (b - a) as usize])?;
                }
                st.synced.insert(p, keep);
            }
        }
        std::fs::remove_dir_all(&self.bak)?;
        std::fs::create_dir_all(&self.bak)?;
        st.frozen = false;
        st.fault = None;
        Ok(())
    }

    /// Every path under the root (parents before children), the backup
    /// area excluded.
    fn walk(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(d) = stack.pop() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(&d)?
                .map(|e| e.map(|e| e.path()))
                .collect::<io::Result<_>>()?;
            names.sort();
            for p in names {
                if p == self.bak {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p.clone());
                }
                out.push(p);
            }
        }
        out.sort_by_key(|p| p.components().count());
        Ok(out)
    }

    fn backup_path(&self, st: &mut State) -> PathBuf {
        st.backups += 1;
        self.bak.join(format!("b{}", st.backups))
    }

    /// Move `p` aside (undoable until its directory is synced).
    fn move_aside(&self, st: &mut State, p: &Path) -> io::Result<()> {
        let backup = self.backup_path(st);
        std::fs::rename(p, &backup)?;
        let (durable, synced) = st.take_subtree(p);
        st.undo.push(Undo::Remove {
            path: p.to_path_buf(),
            backup,
            durable,
            synced,
        });
        Ok(())
    }
}

fn remove_any(p: &Path) -> io::Result<()> {
    if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
}

struct CrashFile {
    path: PathBuf,
    f: std::fs::File,
    len: u64,
    st: Arc<Mutex<State>>,
}

impl VFile for CrashFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.st.lock().expect("lock").op()?;
        self.f.write_all(buf)?;
        self.len += buf.len() as u64;
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        let mut st = self.st.lock().expect("lock");
        st.op()?;
        st.synced.insert(self.path.clone(), self.len);
        Ok(())
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut st = self.st.lock().expect("lock");
        st.op_kind(true)?;
        self.f.set_len(len)?;
        self.f.seek(SeekFrom::Start(len))?;
        self.len = len;
        if let Some(s) = st.synced.get_mut(&self.path) {
            *s = (*s).min(len);
        }
        Ok(())
    }
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(CrashSync {
            path: self.path.clone(),
            f: self.f.try_clone()?,
            st: self.st.clone(),
        }))
    }
}

struct CrashSync {
    path: PathBuf,
    f: std::fs::File,
    st: Arc<Mutex<State>>,
}

impl SyncHandle for CrashSync {
    fn sync(&self) -> io::Result<()> {
        let mut st = self.st.lock().expect("lock");
        st.op()?;
        // Every append that returned before this call is in the file.
        let len = self.f.metadata()?.len();
        st.synced.insert(self.path.clone(), len);
        Ok(())
    }
}

impl Vfs for CrashFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        let mut st = self.st.lock().expect("lock");
        st.op()?;
        if path.exists() {
            self.move_aside(&mut st, path)?;
        }
        let f = std::fs::OpenOptions::new().create_new(true).write(true).open(path)?;
        drop(st);
        Ok(Box::new(CrashFile {
            path: path.to_path_buf(),
            f,
            len: 0,
            st: self.st.clone(),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        if self.st.lock().expect("lock").frozen {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        let len = f.seek(SeekFrom::End(0))?;
        Ok(Box::new(CrashFile {
            path: path.to_path_buf(),
            f,
            len,
            st: self.st.clone(),
        }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        super::vfs::RealFs.read(path)
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        super::vfs::RealFs.read_at(path, offset, len)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        super::vfs::RealFs.file_len(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if from.parent() != to.parent() {
            return Err(io::Error::other("CrashFs renames only within one directory"));
        }
        let mut st = self.st.lock().expect("lock");
        st.op()?;
        if !from.exists() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let replaced = if to.exists() {
            let b = self.backup_path(&mut st);
            std::fs::rename(to, &b)?;
            let durable = st.durable.remove(to);
            let synced = st.synced.remove(to);
            Some((b, durable, synced))
        } else {
            None
        };
        std::fs::rename(from, to)?;
        let from_durable = st.durable.remove(from);
        st.rekey(from, to);
        for u in st.undo.iter_mut() {
            u.moved(from, to);
        }
        st.undo.push(Undo::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            from_durable,
            replaced,
        });
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st.lock().expect("lock");
        st.op()?;
        if !path.is_file() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        self.move_aside(&mut st, path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st.lock().expect("lock");
        st.op()?;
        if !path.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        self.move_aside(&mut st, path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.st.lock().expect("lock").op()?;
        std::fs::create_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.st.lock().expect("lock");
        st.op()?;
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p != self.bak {
                st.durable.insert(p);
            }
        }
        // Renames and removals in this directory are now durable: their
        // backups are no longer needed.
        let (done, keep): (Vec<Undo>, Vec<Undo>) = std::mem::take(&mut st.undo)
            .into_iter()
            .partition(|u| u.dir() == Some(dir));
        st.undo = keep;
        for u in done {
            match u {
                Undo::Rename {
                    replaced: Some((b, _, _)),
                    ..
                } => remove_any(&b)?,
                Undo::Remove { backup, .. } => remove_any(&backup)?,
                Undo::Rename { replaced: None, .. } => {}
            }
        }
        Ok(())
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st.lock().expect("lock");
        st.op()?;
        let len = std::fs::metadata(path)?.len();
        st.synced.insert(path.to_path_buf(), len);
        Ok(())
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.st.lock().expect("lock");
        st.op()?;
        if st.cross_device {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        std::fs::hard_link(from, to)?;
        // The same bytes: as durable as the other name's (the new name
        // itself is durable only after a sync of its directory).
        let synced = st.synced.get(from).copied().unwrap_or(0);
        st.synced.insert(to.to_path_buf(), synced);
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut v = super::vfs::RealFs.list(dir)?;
        if dir == self.root {
            v.retain(|n| n != ".crashfs");
        }
        Ok(v)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Trial-loop helpers for the power-loss tests (the engine's and the
/// server's).
impl CrashFs {
    /// A `CrashFs` over `root` emptied first (trial loops reuse a few
    /// directories), and the same one as a `Vfs`.
    pub fn fresh(root: &Path) -> (CrashFs, Arc<dyn Vfs>) {
        if root.exists() {
            std::fs::remove_dir_all(root).expect("remove the last trial's directory");
        }
        let cfs = CrashFs::new(root).expect("a CrashFs root");
        let fs: Arc<dyn Vfs> = Arc::new(cfs.clone());
        (cfs, fs)
    }

    /// Trials to run: the environment variable `var` if set to a number,
    /// else `default` (CI's count).
    pub fn trials(var: &str, default: u64) -> u64 {
        std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::vfs::write_atomic;

    #[test]
    fn power_loss_keeps_exactly_what_was_synced() {
        let d = tempfile::tempdir().unwrap();
        let fs = CrashFs::new(d.path()).unwrap();
        let a = d.path().join("a");
        let mut f = fs.create(&a).unwrap();
        f.append(b"durable").unwrap();
        f.sync().unwrap();
        fs.sync_dir(d.path()).unwrap();
        f.append(b" lost").unwrap();
        // An atomic replace completes; a rename without a directory sync
        // is undone.
        let m = d.path().join("m");
        write_atomic(&fs, &m, b"v1").unwrap();
        // A file whose name was never synced vanishes whatever its data.
        let b = d.path().join("b");
        let mut g = fs.create(&b).unwrap();
        g.append(b"x").unwrap();
        g.sync().unwrap();
        let t = d.path().join("m.next");
        let mut h = fs.create(&t).unwrap();
        h.append(b"v2").unwrap();
        h.sync().unwrap();
        drop(h);
        fs.rename(&t, &m).unwrap();
        fs.crash();
        assert!(f.append(b"after").is_err(), "a dead machine writes nothing");
        drop((f, g));
        fs.power_loss(1, false).unwrap();
        assert_eq!(fs.read(&a).unwrap(), b"durable");
        assert!(!b.exists());
        assert_eq!(fs.read(&m).unwrap(), b"v1");
        assert!(!t.exists(), "m.next was never durable by name");
        assert_eq!(fs.list(d.path()).unwrap(), vec!["a".to_string(), "m".to_string()]);
    }

    #[test]
    fn removals_come_back_until_the_directory_is_synced() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("seg")).unwrap();
        std::fs::write(d.path().join("seg/data"), b"0123").unwrap();
        std::fs::write(d.path().join("keep"), b"k").unwrap();
        let fs = CrashFs::new(d.path()).unwrap();
        fs.remove_dir_all(&d.path().join("seg")).unwrap();
        fs.remove_file(&d.path().join("keep")).unwrap();
        fs.crash();
        fs.power_loss(2, false).unwrap();
        assert_eq!(std::fs::read(d.path().join("seg/data")).unwrap(), b"0123");
        assert_eq!(std::fs::read(d.path().join("keep")).unwrap(), b"k");
        fs.remove_file(&d.path().join("keep")).unwrap();
        fs.sync_dir(d.path()).unwrap();
        fs.crash();
        fs.power_loss(3, false).unwrap();
        assert!(!d.path().join("keep").exists());
    }

    #[test]
    fn torn_tails_keep_a_prefix_and_faults_fire_on_schedule() {
        let d = tempfile::tempdir().unwrap();
        let fs = CrashFs::new(d.path()).unwrap();
        let a = d.path().join("a");
        let mut f = fs.create(&a).unwrap();
        fs.sync_dir(d.path()).unwrap();
        f.append(&[7u8; 100]).unwrap();
        f.sync().unwrap();
        f.append(&[9u8; 4000]).unwrap();
        drop(f);
        fs.crash();
        fs.power_loss(4, true).unwrap();
        let got = fs.read(&a).unwrap();
        assert!(got.len() >= 100 && got.len() <= 4100);
        assert!(got[..100].iter().all(|&b| b == 7));
        assert!(got[100..].iter().all(|&b| b == 9 || b == 0));

        fs.set_fault(Some(Fault {
            after_ops: 2,
            kind: FaultKind::NoSpace,
            persistent: true,
        }));
        let mut f = fs.open_append(&a).unwrap();
        f.append(b"1").unwrap();
        f.append(b"2").unwrap();
        let e = f.append(b"3").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(f.sync().is_err(), "a full disk stays full");
        fs.set_fault(Some(Fault {
            after_ops: 0,
            kind: FaultKind::Io,
            persistent: false,
        }));
        assert_eq!(f.sync().unwrap_err().raw_os_error(), Some(libc::EIO));
        f.sync().unwrap();
    }
}
